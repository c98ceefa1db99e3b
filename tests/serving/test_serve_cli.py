"""`llmops serve` with several uvicorn workers and the in-process model (slow: a real server, no vLLM needed):
every worker serves the release, /metrics merges the workers' samples, SIGTERM stops it with exit code 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import free_port

pytestmark = pytest.mark.slow


def test_serve_with_two_workers(world, tmp_path):
    world.registry.promote(world.release_a.release, "workers")
    port = free_port()
    data = world.config.model_dump(mode="json")
    data["serving"].update(alias="workers", port=port, workers=2, watch_interval_s=0)
    config_file = tmp_path / "serve.yaml"
    config_file.write_text(json.dumps(data), encoding="utf-8")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("llmops")), "serve", "--config", str(config_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True).start()
    try:
        deadline = time.monotonic() + 240
        while not any("RAG API ready" in line for line in lines):
            assert process.poll() is None and time.monotonic() < deadline, "".join(lines[-40:])
            time.sleep(0.2)
        url = f"http://127.0.0.1:{port}"
        body = {"model": "rag", "messages": [{"role": "user", "content": "What is matcha?"}]}
        for _ in range(6):
            r = httpx.post(url + "/v1/chat/completions", json=body, timeout=60)
            assert r.status_code == 200 and r.json()["system_fingerprint"] == world.release_a.release
        metrics = httpx.get(url + "/metrics").text
        # Merged over the workers, whichever answered the scrape.
        line = next(m for m in metrics.splitlines()
                    if m.startswith('llmops_requests_total{method="POST",route="/v1/chat/completions",status="200"}'))
        assert float(line.rsplit(" ", 1)[1]) == 6.0
        assert len({m.split('pid="')[1].split('"')[0] for m in metrics.splitlines()
                    if m.startswith("llmops_active_release{")}) == 2  # one live sample per worker
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, "".join(lines[-40:])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
