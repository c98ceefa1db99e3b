"""Hot swap on promotion, in-process model: a real uvicorn server under concurrent streaming load while the alias
moves to another release (another index). Zero failed requests; new requests use the new release within seconds;
the old release is retired once its requests finished. The same scenario against a real vLLM server (with LoRA
adapters) is in test_vllm_e2e.py."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from tests.helpers import CORPUS
from tests.serving.conftest import CORPUS_B, check_swap, running_api, stream_load

QUESTIONS = ["Which volcano is active?", "What is matcha?", "When are certificates rotated?", "What is SEV1?"]

# A hang fails the test with every thread's stack instead of stalling the run.
pytestmark = pytest.mark.timeout(300)


def test_promotion_swaps_under_streaming_load_without_failures(world):
    alias = "swap-fast"
    world.registry.promote(world.release_a.release, alias)
    cfg = world.serving_config(alias=alias, watch_interval_s=0.2, adapter_unload_grace_s=0.5)
    with running_api(cfg) as (url, app):
        assert httpx.get(url + "/readyz").json()["release"] == world.release_a.release
        stop = threading.Event()
        result: list = []
        load = threading.Thread(target=lambda: result.extend(stream_load(url, 4, stop, QUESTIONS)))
        load.start()
        time.sleep(3)
        promoted_at = time.monotonic()
        world.registry.promote(world.release_b.release, alias)
        time.sleep(6)
        stop.set()
        load.join(300)
        swap_s = check_swap(
            result, world.release_a.release, world.release_b.release, promoted_at, set(CORPUS), set(CORPUS_B)
        )
        assert swap_s < 5, f"new requests reached the new release {swap_s:.1f} s after the promotion"
        assert len(result) >= 8
        print(f"hot swap (in-process): {len(result)} streams, 0 failed, new release {swap_s:.2f} s after promotion")
        manager = app.state.manager
        deadline = time.monotonic() + 10
        while manager.retiring and time.monotonic() < deadline:  # old release retired after its requests
            time.sleep(0.1)
        assert not manager.retiring
        metrics = httpx.get(url + "/metrics").text
        assert f'release="{world.release_b.release}"' in metrics
        assert f'release="{world.release_a.release}"' not in metrics
        assert 'llmops_release_reloads_total{result="swapped"} 2.0' in metrics  # start-up + promotion


def test_a_release_that_fails_to_load_leaves_the_current_one_serving(world, tmp_path, monkeypatch):
    alias = "swap-bad"
    world.registry.promote(world.release_a.release, alias)
    # A release whose index lies outside the artifact store: refused, never loaded.
    outside = world.registry.register(**{
        **world.release_b.model_dump(exclude={"release", "created_at"}),
        "index_uri": str(tmp_path / "elsewhere"),
    })
    cfg = world.serving_config(alias=alias, watch_interval_s=0, admin_token_env="LLMOPS_TEST_ADMIN_SWAP")
    with running_api(cfg) as (url, app):
        world.registry.promote(outside.release, alias)
        monkeypatch.setenv("LLMOPS_TEST_ADMIN_SWAP", "t")
        r = httpx.post(url + "/admin/reload", headers={"Authorization": "Bearer t"})
        error = r.json()["error"]  # the operator's endpoint: the reason in full
        assert r.status_code == 500 and error["code"] == "reload_failed"
        assert "outside the artifact and registry roots" in error["message"]
        ready = httpx.get(url + "/readyz").json()  # public: which part, not why
        assert ready["release"] == world.release_a.release and ready["reload_failed"] is True
        assert str(tmp_path) not in json.dumps(ready)
        chat = httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "model": "rag", "messages": [{"role": "user", "content": "What is matcha?"}]})
        assert chat.status_code == 200 and chat.json()["system_fingerprint"] == world.release_a.release
        assert 'llmops_release_reloads_total{result="failed"} 1.0' in httpx.get(url + "/metrics").text
