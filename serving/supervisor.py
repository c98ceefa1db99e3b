"""`llmops serve` watches the vLLM server it started: a server that dies is restarted, with backoff.

A restarted vLLM has forgotten the adapters registered at run time, so it is started again with the adapter of the
release the alias points at now (checked against the release, as at start-up); requests on another release
re-register theirs on demand (`RagService._on_backend`). While vLLM is down or restarting, /readyz is 503 and
requests get 503; once it answers again, both recover on their own.

If `serving.vllm_max_restarts` restarts in a row fail, the supervisor gives up and records why in a small state
file; /healthz of every API worker reads it and fails, so the orchestrator (or the operator) replaces the whole
thing instead of a process answering 503 forever while it calls itself healthy.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Callable

from llmops.config import PipelineConfig
from llmops.errors import LLMOpsError
from llmops.storage import atomic_write_json

__all__ = ["BackendSupervisor", "failure_reader"]

log = logging.getLogger("llmops.serving")

Announce = Callable[[str], None]


class BackendSupervisor:
    """Restarts `server` (a started `VLLMServer`) whenever its process has exited, until `stop()`.

    `lora_modules()` gives the adapters to start it with (re-read at each restart). The state file holds
    `{"state": "up" | "restarting" | "failed", "reason": ..., "restarts": n}`.
    """

    def __init__(
        self,
        server,
        config: PipelineConfig,
        state_file: Path,
        *,
        lora_modules: Callable[[], dict[str, str]] | None = None,
        announce: Announce = print,
    ):
        self.server = server
        self.serving = config.serving
        self.state_file = Path(state_file)
        self.lora_modules = lora_modules
        self.announce = announce
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # held while the server is (re)started, so stop() never races a start
        self._thread = threading.Thread(target=self._run, name="vllm-supervisor", daemon=True)
        self._write("up")

    def start(self) -> "BackendSupervisor":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (before the server is stopped on purpose); waits for a restart in progress to abort."""
        self._stopping.set()
        with self._lock:
            pass
        if self._thread.is_alive():
            self._thread.join(timeout=60)

    # -------------------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.wait(self.serving.vllm_check_interval_s):
            if self.server.is_running():
                continue
            code = self.server.process.poll() if self.server.process is not None else None
            self.announce(f"vLLM exited (code {code}); restarting it. Log: {self.server.log_path}")
            if not self._recover():
                return

    def _recover(self) -> bool:
        """Restart until the server answers; False when it gave up (or is being stopped)."""
        delay = self.serving.vllm_restart_backoff_s
        for attempt in range(1, self.serving.vllm_max_restarts + 1):
            self._write("restarting", f"attempt {attempt} of {self.serving.vllm_max_restarts}")
            if self._stopping.wait(delay):
                return False
            delay = min(delay * 2, self.serving.vllm_restart_backoff_max_s)
            with self._lock:
                if self._stopping.is_set():
                    return False
                error = self._restart()
            if error is None:
                self.restarts += 1
                self._write("up")
                self.announce(f"vLLM is back on {self.server.base_url} (restart {self.restarts}, pid "
                              f"{self.server.process.pid})")
                return True
            log.warning("vLLM restart %d failed: %s", attempt, error)
        reason = (f"vLLM could not be restarted ({self.serving.vllm_max_restarts} attempts failed); last error: "
                  f"{error}")
        self._write("failed", reason)
        self.announce(reason + " /healthz now fails.")
        return False

    def _restart(self) -> str | None:
        """One restart; None when the server answers, else why not."""
        self.server.stop()  # the dead server's engine core may still hold the port and memory
        if self.lora_modules is not None:
            try:
                self.server.lora_modules = self.lora_modules()
            except LLMOpsError as e:  # keep the adapters it had: the API registers its own on demand
                log.warning("restarting vLLM with its previous adapters: %s", e)
        try:
            self.server.start()
        except LLMOpsError as e:
            return str(e)
        return self._wait_ready()

    def _wait_ready(self) -> str | None:
        from llmops.errors import BackendUnavailableError
        from llmops.llm.vllm_server import list_models

        deadline = time.monotonic() + self.serving.vllm_ready_timeout_s
        while not self._stopping.is_set():
            code = self.server.process.poll()
            if code is not None:
                return f"exited with code {code} during start-up; log tail:\n{self.server.log_tail()}"
            try:
                list_models(self.server.base_url, api_key=self.server.api_key, timeout=2.0)
                return None
            except BackendUnavailableError:
                pass
            if time.monotonic() > deadline:
                self.server.stop()
                return f"not ready after {self.serving.vllm_ready_timeout_s:.0f} s"
            time.sleep(0.5)
        return "stopping"

    def _write(self, state: str, reason: str | None = None) -> None:
        atomic_write_json(self.state_file, {"state": state, "reason": reason, "restarts": self.restarts})


def failure_reader(state_file: str | Path) -> Callable[[], str | None]:
    """For /healthz: a function giving the supervisor's reason to give up, or None while the backend is up or
    restarting (or the state cannot be read: no news is not a failure)."""
    path = Path(state_file)

    def failure() -> str | None:
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if state.get("state") != "failed":
            return None
        return state.get("reason") or "the backend failed"

    return failure
