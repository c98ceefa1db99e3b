"""The RAG API in front of a real vLLM CPU server (slow): the official `openai` client, streaming and not; hot swap
of index and LoRA adapter under streaming load; the backend killed (503) and restarted (recovers, adapter
re-registered); `llmops serve` started as a command and stopped with SIGTERM mid-stream (the stream finishes).

One vLLM server serves the first three tests, in file order (each start costs ~30 s on a small CPU machine).
Needs a vLLM interpreter ($LLMOPS_VLLM_PYTHON or .venv-vllm); skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from llmops.llm.vllm_server import list_models
from serving.launcher import vllm_server_for
from serving.release import served_adapter_name
from tests.helpers import CORPUS
from tests.llm_fixtures import CPU_VLLM_ARGS, make_lora_adapter
from tests.serving.conftest import (
    CORPUS_B,
    check_swap,
    free_port,
    release_for,
    running_api,
    seal_adapter,
    stream_load,
)

pytestmark = pytest.mark.slow

QUESTIONS = ["Which volcano is active?", "What is matcha?", "When are certificates rotated?", "What is SEV1?"]


@pytest.fixture(scope="module")
def vllm_env(vllm_python):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LLMOPS_VLLM_PYTHON", vllm_python)
        yield vllm_python


@pytest.fixture(scope="module")
def setup(world, vllm_env, tmp_path_factory):
    """Two releases, each an index plus its own LoRA adapter, and a config for the vLLM backend."""
    adapters = Path(world.config.artifacts.root) / "adapters"
    a1 = seal_adapter(make_lora_adapter(world.tiny_llm, adapters / "a1", seed=1), "lora-a1", str(world.tiny_llm))
    a2 = seal_adapter(make_lora_adapter(world.tiny_llm, adapters / "a2", seed=2), "lora-a2", str(world.tiny_llm))
    cfg = world.with_llm(
        backend="vllm", max_model_len=512, max_lora_rank=8, dtype="float32", vllm_args=CPU_VLLM_ARGS
    )
    cfg = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={
        "alias": "vllm", "vllm_port": free_port(), "watch_interval_s": 0.3, "adapter_unload_grace_s": 1.0,
    })})
    r1 = release_for(world.registry, cfg, world.release_a.index_uri, world.release_a.index_version,
                     adapter_version="lora-a1", adapter_uri=str(a1))
    r2 = release_for(world.registry, cfg, world.release_b.index_uri, world.release_b.index_version,
                     adapter_version="lora-a2", adapter_uri=str(a2))
    world.registry.promote(r1.release, "vllm")
    return cfg, r1, r2, tmp_path_factory.mktemp("vllm-serving")


@pytest.fixture(scope="module")
def stack(setup):
    """vLLM started as `llmops serve` starts it (the alias's adapter preloaded), and the RAG API in front."""
    cfg, r1, _, workdir = setup
    server = vllm_server_for(cfg, r1, workdir / "first")
    state = {"server": server}
    started = time.monotonic()
    server.start()
    try:
        server.wait_ready(300)
        print(f"vLLM start-up: {time.monotonic() - started:.1f} s")
        with running_api(cfg, backend_url=server.base_url) as (url, app):
            state.update(url=url, app=app)
            yield state
    finally:
        server.stop()
        state["server"].stop()  # the one a test restarted, if any


def test_openai_client_gets_answers_with_sources_streaming_and_not(stack, setup):
    cfg, r1, _, _ = setup
    assert served_adapter_name(r1) in list_models(stack["server"].base_url)  # --lora-modules from the release
    oa = openai.OpenAI(base_url=stack["url"] + "/v1", api_key="unused")
    assert [m.id for m in oa.models.list()] == ["rag"]
    started = time.perf_counter()
    reply = oa.chat.completions.create(
        model="rag", messages=[{"role": "user", "content": "Which volcano in Sicily is active?"}],
        extra_body={"k": 2},
    )
    print(f"non-streaming answer: {time.perf_counter() - started:.3f} s")
    assert reply.system_fingerprint == r1.release
    assert reply.usage.completion_tokens <= 8 and reply.usage.prompt_tokens > 0
    sources = reply.model_extra["sources"]
    assert 1 <= len(sources) <= 2 and sources[0]["source"].endswith("volcano.md")

    chunks = list(oa.chat.completions.create(
        model="rag", messages=[{"role": "user", "content": "What is matcha?"}], stream=True,
        stream_options={"include_usage": True},
    ))
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].model_extra["sources"][0]["source"].endswith("tea.txt")
    assert chunks[-1].usage.completion_tokens <= 8
    assert {c.system_fingerprint for c in chunks} == {r1.release}


def test_hot_swap_of_index_and_adapter_under_streaming_load(stack, setup, world):
    cfg, r1, r2, _ = setup
    stop = threading.Event()
    result: list = []
    load = threading.Thread(target=lambda: result.extend(stream_load(stack["url"], 8, stop, QUESTIONS)))
    load.start()
    time.sleep(4)
    promoted_at = time.monotonic()
    world.registry.promote(r2.release, "vllm")
    time.sleep(8)
    stop.set()
    load.join(300)
    swap_s = check_swap(result, r1.release, r2.release, promoted_at, set(CORPUS), set(CORPUS_B))
    print(f"hot swap (vLLM): {len(result)} streams by 8 clients, 0 failed; new release {swap_s:.2f} s after promotion")
    assert swap_s < 10
    # The old adapter is unloaded once its requests finished and the grace period passed; the new one stays.
    base = stack["server"].base_url
    deadline = time.monotonic() + 15
    while served_adapter_name(r1) in list_models(base) and time.monotonic() < deadline:
        time.sleep(0.2)
    models = list_models(base)
    assert served_adapter_name(r1) not in models and served_adapter_name(r2) in models


def test_backend_down_gives_503_and_recovers_when_it_returns(stack, setup):
    cfg, r1, r2, workdir = setup
    url = stack["url"]
    body = {"model": "rag", "messages": [{"role": "user", "content": "What is SEV1?"}]}
    assert httpx.post(url + "/v1/chat/completions", json=body, timeout=60).json()["system_fingerprint"] == r2.release

    stack["server"].stop()
    down = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
    assert down.status_code == 503 and down.json()["error"]["code"] == "backend_unavailable"
    streamed = httpx.post(url + "/v1/chat/completions", json=body | {"stream": True}, timeout=60)
    assert streamed.status_code == 503  # before any byte of the stream: a status, not a broken stream
    assert httpx.post(url + "/v1/search", json={"query": "SEV1"}).status_code == 200  # retrieval needs no LLM
    ready = httpx.get(url + "/readyz")
    assert ready.status_code == 503 and ready.json()["release"] == r2.release

    # Restarted as after a crash: with the adapter it was started with, not the one registered at run time since.
    restarted = vllm_server_for(cfg, r1, workdir / "restarted")
    stack["server"] = restarted
    restarted.start()
    restarted.wait_ready(300)
    assert served_adapter_name(r2) not in list_models(restarted.base_url)
    back = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
    assert back.status_code == 200, back.text
    assert back.json()["system_fingerprint"] == r2.release  # its adapter registered again on demand
    assert served_adapter_name(r2) in list_models(restarted.base_url)
    assert httpx.get(url + "/readyz").status_code == 200
    metrics = httpx.get(url + "/metrics").text
    assert 'llmops_requests_total{method="POST",route="/v1/chat/completions",status="503"}' in metrics
    assert 'llmops_backend_errors_total{kind="adapter_missing"}' in metrics


def test_llmops_serve_drains_a_stream_on_sigterm(setup, tmp_path, world):
    """`llmops serve` as a user runs it: vLLM and the API come up, a SIGTERM mid-stream lets the stream finish,
    then both stop."""
    cfg, r1, _, _ = setup
    world.registry.promote(r1.release, "serve-cmd")
    api_port, vllm_port = free_port(), free_port()
    data = cfg.model_dump(mode="json")
    data["serving"].update(alias="serve-cmd", port=api_port, vllm_port=vllm_port, watch_interval_s=0)
    config_file = tmp_path / "serve.yaml"
    config_file.write_text(json.dumps(data), encoding="utf-8")
    command = [str(Path(sys.executable).with_name("llmops")), "serve", "--config", str(config_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "COLUMNS": "400"})
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 300
        while not any("RAG API ready" in line for line in lines):
            assert process.poll() is None, "".join(lines[-40:])
            assert time.monotonic() < deadline, "".join(lines[-40:])
            time.sleep(0.2)
        url = f"http://127.0.0.1:{api_port}"
        body = {"model": "rag", "stream": True, "max_tokens": 300,
                "messages": [{"role": "user", "content": "Tell me about volcanoes."}]}
        events_after_signal = 0
        events: list[str] = []
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(line[6:])
                if len(events) == 2:
                    process.send_signal(signal.SIGTERM)
                elif len(events) > 2:
                    events_after_signal += 1
        assert events[-1] == "[DONE]" and all("error" not in e for e in events[:-1])
        assert events_after_signal > 1  # the stream went on after the signal, to its end
        print(f"llmops serve: SIGTERM after 2 of {len(events)} events; the stream finished")
        assert process.wait(120) == 0, "".join(lines[-40:])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    output = "".join(lines)
    assert "vLLM ready" in output and "stopped" in output
    for port in (api_port, vllm_port):  # both servers are gone
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5)


def test_llmops_serve_restarts_a_vllm_that_died(setup, tmp_path, world):
    """vLLM killed under `llmops serve`: the supervisor restarts it with the alias's current adapter (one that was
    registered at run time, after a hot swap), /healthz stays 200 meanwhile, and after recovery no request gets a
    503 and the adapter is served without being registered on demand."""
    cfg, r1, r2, _ = setup
    world.registry.promote(r1.release, "supervised")
    api_port, vllm_port = free_port(), free_port()
    data = cfg.model_dump(mode="json")
    data["serving"].update(alias="supervised", port=api_port, vllm_port=vllm_port, watch_interval_s=0.3,
                           vllm_restart_backoff_s=0.5)
    config_file = tmp_path / "serve.yaml"
    config_file.write_text(json.dumps(data), encoding="utf-8")
    command = [str(Path(sys.executable).with_name("llmops")), "serve", "--config", str(config_file)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "COLUMNS": "400"})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True).start()

    def wait_for(text: str) -> str:
        deadline = time.monotonic() + 300
        while not any(text in line for line in lines):
            assert process.poll() is None, "".join(lines[-40:])
            assert time.monotonic() < deadline, "".join(lines[-40:])
            time.sleep(0.2)
        return next(line for line in lines if text in line)

    url, vllm_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{vllm_port}/v1"
    body = {"model": "rag", "messages": [{"role": "user", "content": "What is SEV1?"}]}
    try:
        wait_for("RAG API ready")
        pid = int(wait_for("vLLM ready").rsplit("pid ", 1)[1].split(")")[0])
        world.registry.promote(r2.release, "supervised")  # r2's adapter is registered at run time
        deadline = time.monotonic() + 60
        while httpx.post(url + "/v1/chat/completions", json=body, timeout=60).json().get("system_fingerprint") != (
                r2.release):
            assert time.monotonic() < deadline
            time.sleep(0.3)

        os.killpg(pid, signal.SIGKILL)  # vLLM and its engine core die at once
        assert httpx.get(url + "/healthz").status_code == 200  # restarting is no reason to kill the API
        wait_for("vLLM is back")
        assert served_adapter_name(r2) in list_models(vllm_url)  # started with the alias's adapter again
        for _ in range(3):
            r = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
            assert r.status_code == 200 and r.json()["system_fingerprint"] == r2.release, r.text
        assert httpx.get(url + "/readyz").status_code == 200 and httpx.get(url + "/healthz").status_code == 200
        assert 'llmops_backend_errors_total{kind="adapter_missing"}' not in httpx.get(url + "/metrics").text
        process.send_signal(signal.SIGTERM)
        assert process.wait(120) == 0, "".join(lines[-40:])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
