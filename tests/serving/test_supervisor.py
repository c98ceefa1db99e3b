"""The vLLM supervisor of `llmops serve` without vLLM: real processes started by `VLLMServer`, killed for real, from
a stand-in `vllm.entrypoints.openai.api_server` that answers `/v1/models` (or, when told to, exits at once). It is
restarted after it dies; when restarts keep failing the supervisor gives up and /healthz fails. With the real vLLM:
test_vllm_e2e.py::test_llmops_serve_restarts_a_vllm_that_died (slow)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest
from fastapi.testclient import TestClient

from llmops.llm.vllm_server import VLLMServer
from serving.app import create_app
from serving.supervisor import BackendSupervisor, failure_reader
from tests.serving.conftest import free_port

pytestmark = pytest.mark.timeout(300)

STAND_IN = '''
import http.server, json, os, sys
from pathlib import Path

if Path(os.environ["STAND_IN_MODE"]).read_text() == "crash":
    sys.exit(3)
port = int(sys.argv[sys.argv.index("--port") + 1])

class Models(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"data": [{"id": "m"}]}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", port), Models).serve_forever()
'''


@pytest.fixture
def stand_in(tmp_path) -> dict:
    package = tmp_path / "site" / "vllm" / "entrypoints" / "openai"
    package.mkdir(parents=True)
    for folder in (package, package.parent, package.parent.parent):
        (folder / "__init__.py").write_text("")
    (package / "api_server.py").write_text(STAND_IN)
    mode = tmp_path / "mode"
    mode.write_text("serve")
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={tmp_path / 'site'} STAND_IN_MODE={mode} exec {sys.executable} \"$@\"\n")
    python.chmod(0o755)
    (tmp_path / "model").mkdir()
    return {"python": str(python), "mode": mode, "model": tmp_path / "model", "workdir": tmp_path / "work"}


def wait_until(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_dead_backend_is_restarted_and_one_that_cannot_come_back_fails_healthz(world, stand_in, tmp_path):
    cfg = world.serving_config(vllm_check_interval_s=0.1, vllm_restart_backoff_s=0.1, vllm_restart_backoff_max_s=0.2,
                               vllm_max_restarts=3, vllm_ready_timeout_s=60)
    server = VLLMServer(stand_in["model"], python=stand_in["python"], port=free_port(),
                        workdir=stand_in["workdir"])
    server.start()
    server.wait_ready(60)
    state_file = tmp_path / "backend-state.json"
    adapters_asked = []
    supervisor = BackendSupervisor(server, cfg, state_file, announce=lambda line: None,
                                   lora_modules=lambda: adapters_asked.append(1) or {}).start()
    state = lambda: json.loads(state_file.read_text())  # noqa: E731
    try:
        first = server.process.pid
        os.killpg(first, signal.SIGKILL)
        wait_until(lambda: state()["restarts"] == 1 and state()["state"] == "up", "the restart")
        assert server.is_running() and server.process.pid != first and adapters_asked == [1]
        assert failure_reader(state_file)() is None

        stand_in["mode"].write_text("crash")  # from now on every start fails
        os.killpg(server.process.pid, signal.SIGKILL)
        wait_until(lambda: state()["state"] == "failed", "the supervisor to give up")
        reason = failure_reader(state_file)()
        assert "3 attempts failed" in reason and "exited with code 3" in reason
        with TestClient(create_app(cfg, backend_failure=failure_reader(state_file))) as client:
            r = client.get("/healthz")
            assert r.status_code == 503 and r.json()["error"]["code"] == "backend_unavailable"
    finally:
        supervisor.stop()
        server.stop()
