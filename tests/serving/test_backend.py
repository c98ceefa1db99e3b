"""The vLLM backend path without a GPU or a vLLM install: a server that is not there gives 503s (retrieval still
works), and `llmops serve --print-vllm-args` gives a container the release's adapter flags. The real server is in
test_vllm_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from cli.main import app as cli
from serving.app import create_app
from serving.release import served_adapter_name
from tests.llm_fixtures import make_lora_adapter
from tests.serving.conftest import free_port, release_for, seal_adapter

BODY = {"model": "rag", "messages": [{"role": "user", "content": "What is matcha?"}]}


def test_backend_down_is_503_and_not_ready(world):
    cfg = world.with_llm(backend="vllm", base_url=f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    with TestClient(create_app(cfg)) as client:
        r = client.post("/v1/chat/completions", json=BODY)
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["type"] == "service_unavailable_error" and error["code"] == "backend_unavailable"
        assert "unavailable" in error["message"] and "127.0.0.1" not in r.text  # the backend's URL is internal
        assert client.post("/v1/chat/completions", json=BODY | {"stream": True}).status_code == 503
        assert client.post("/v1/search", json={"query": "matcha"}).status_code == 200  # no LLM needed
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["release"] == world.release_a.release
        assert ready.json()["backend"] == "unavailable" and "127.0.0.1" not in ready.text
        assert client.get("/healthz").status_code == 200
        metrics = client.get("/metrics").text
        assert 'llmops_backend_errors_total{kind="unavailable"} 2.0' in metrics


def test_print_vllm_args_names_the_alias_adapter(world, tmp_path):
    adapter = Path(world.config.artifacts.root) / "adapters" / "cli-adapter"
    if not adapter.exists():
        seal_adapter(make_lora_adapter(world.tiny_llm, adapter, rank=8), "cli-v1", str(world.tiny_llm))
    cfg = world.with_llm(backend="vllm", max_lora_rank=8)
    release = release_for(world.registry, cfg, world.release_a.index_uri, world.release_a.index_version,
                          adapter_version="cli-v1", adapter_uri=str(adapter))
    world.registry.promote(release.release, "cli")
    data = cfg.model_dump(mode="json")
    data["serving"]["alias"] = "cli"
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(data))
    result = CliRunner().invoke(cli, ["serve", "--config", str(path), "--print-vllm-args"])
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["--enable-lora", "--max-lora-rank", "8", "--lora-modules",
                                     f"{served_adapter_name(release)}={adapter}"]
    # An alias that points at nothing: LoRA on, no module.
    result = CliRunner().invoke(cli, ["serve", "--config", str(path), "--alias", "nothing", "--print-vllm-args"])
    assert result.output.split() == ["--enable-lora", "--max-lora-rank", "8"]
