"""`llmops serve`: the vLLM server and the RAG API together, started in order and stopped cleanly.

1. Resolve the alias (`serving.alias`) in the registry. vLLM is started with that release's adapter as a
   `--lora-modules` entry (adapters loaded at run time do not survive a restart) and LoRA enabled, so later
   releases can be registered without a restart. With `llm.base_url` set, the running server there is used.
2. Start uvicorn with the RAG API (`serving.workers` processes), wait until `/readyz` answers, print the URLs.
3. While it runs, the vLLM server is supervised (`supervisor.py`): restarted with backoff when it dies, with the
   alias's adapter; /healthz fails once it cannot be restarted.
4. On Ctrl-C or SIGTERM: uvicorn stops accepting, lets in-flight requests and streams finish (up to
   `serving.graceful_shutdown_s`), then the vLLM server is stopped. A SIGTERM while vLLM is still starting stops it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from llmops.config import PipelineConfig
from llmops.errors import ConfigError
from llmops.release.registry import Release, ReleaseRegistry
from serving.supervisor import BackendSupervisor, failure_reader

__all__ = ["lora_args", "release_lora_modules", "serve", "vllm_server_for"]

Announce = Callable[[str], None]


def serve(config: PipelineConfig, *, announce: Announce = print) -> None:
    """Run until interrupted. Raises the `llmops.errors` vocabulary when something cannot start."""
    if config.llm is None:
        raise ConfigError("config", ["serving needs an llm section (the base model and its backend)"])
    release = ReleaseRegistry(config.artifacts.registry_root).resolve(config.serving.alias)
    if release is None:
        announce(f"alias {config.serving.alias!r} points at nothing yet: the API starts not ready and waits for a "
                 "promotion")
    with contextlib.ExitStack() as stack:
        stack.enter_context(_interrupt_on_sigterm())
        backend_url = config.llm.base_url
        backend_state: Path | None = None  # the supervisor's state file, when this process runs vLLM
        if config.llm.backend == "vllm" and backend_url is None:
            workdir = Path(tempfile.mkdtemp(prefix="llmops-serve-vllm-"))
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
            server = vllm_server_for(config, release, workdir)
            announce(f"starting vLLM ({config.llm.model}) on {server.url}; log: {server.log_path}")
            stack.callback(server.stop)
            server.start()
            server.wait_ready(config.serving.vllm_ready_timeout_s)
            backend_url = server.base_url
            announce(f"vLLM ready: {backend_url} (pid {server.process.pid})")
            supervisor = BackendSupervisor(
                server, config, workdir / "backend-state.json", lora_modules=lambda: _alias_lora_modules(config),
                announce=announce,
            ).start()
            stack.callback(supervisor.stop)  # runs before server.stop: a shutdown is no crash to recover from
            backend_state = supervisor.state_file
        _run_api(config, backend_url, announce, backend_state)
    announce("stopped")


def _alias_lora_modules(config: PipelineConfig) -> dict[str, str]:
    """The adapter of the release the alias points at now (for a vLLM restart)."""
    return release_lora_modules(config, ReleaseRegistry(config.artifacts.registry_root).resolve(config.serving.alias))


def vllm_server_for(config: PipelineConfig, release: Release | None, workdir: Path):
    """The vLLM server for a release: its adapter preloaded, runtime adapter loading on, room for two adapters in
    one batch (the old and the new release during a swap)."""
    from llmops.llm.vllm_server import VLLMServer

    llm = config.llm
    extra = tuple(llm.vllm_args)
    if "--max-loras" not in extra:
        extra += ("--max-loras", "2")
    return VLLMServer.from_config(
        llm.model_copy(update={"vllm_args": extra}),
        lora_modules=release_lora_modules(config, release),
        enable_lora=True,
        host=config.serving.vllm_host,
        port=config.serving.vllm_port,
        workdir=workdir / "vllm",
    )


def release_lora_modules(config: PipelineConfig, release: Release | None) -> dict[str, str]:
    """`--lora-modules` for a release: {served adapter name: local adapter folder}; empty without an adapter.
    The adapter is checked against the release first (`verify_release_adapter`): vLLM loads what it is given."""
    from llmops.release.artifacts import artifact_roots, verify_release_adapter
    from serving.release import served_adapter_name

    if release is None or release.adapter_uri is None:
        return {}
    adapter_dir, _ = verify_release_adapter(release, artifact_roots(config), config.serving.adapter_cache_dir)
    return {served_adapter_name(release): str(adapter_dir)}


def lora_args(config: PipelineConfig) -> list[str]:
    """The LoRA flags of a vLLM server for the alias's current release (for a container that starts vLLM itself:
    `vllm serve MODEL ... $(llmops serve --config C --print-vllm-args)`)."""
    release = ReleaseRegistry(config.artifacts.registry_root).resolve(config.serving.alias)
    args = ["--enable-lora", "--max-lora-rank", str(config.llm.max_lora_rank)]
    modules = release_lora_modules(config, release)
    if modules:
        args += ["--lora-modules", *(f"{name}={path}" for name, path in modules.items())]
    return args


def _run_api(config: PipelineConfig, backend_url: str | None, announce: Announce, backend_state: Path | None) -> None:
    import uvicorn

    serving = config.serving
    options = dict(
        host=serving.host,
        port=serving.port,
        timeout_graceful_shutdown=serving.graceful_shutdown_s or None,
        log_level="info",
        lifespan="on",
    )
    watcher = threading.Thread(target=_announce_when_ready, args=(config, backend_url, announce), daemon=True)
    if serving.workers == 1:
        from serving.app import create_app

        failure = failure_reader(backend_state) if backend_state is not None else None
        app = create_app(config, backend_url=backend_url, backend_failure=failure)
        server = uvicorn.Server(uvicorn.Config(app, **options))
        watcher.start()
        with _quiet_signals():  # uvicorn handles them while it serves and re-raises them when it is done
            try:
                asyncio.run(server.serve())
            except SystemExit as e:  # uvicorn exits when it cannot bind
                raise ConfigError("serving", [f"the RAG API could not start on {serving.host}:{serving.port} "
                                              f"(port in use?), uvicorn exited with {e.code}"]) from None
        return
    # Several workers: each process builds its app from the config file (uvicorn's factory mode) and writes its
    # metrics to a shared folder that /metrics merges.
    with tempfile.TemporaryDirectory(prefix="llmops-serve-") as tmp:
        config_file = Path(tmp, "config.yaml")
        config_file.write_text(json.dumps(config.model_dump(mode="json")), encoding="utf-8")  # JSON is YAML
        metrics_dir = Path(tmp, "metrics")
        metrics_dir.mkdir()
        os.environ.update(
            LLMOPS_SERVING_CONFIG=str(config_file),
            LLMOPS_SERVING_BACKEND_URL=backend_url or "",
            LLMOPS_SERVING_BACKEND_STATE=str(backend_state or ""),
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        )
        watcher.start()
        with _quiet_signals():
            uvicorn.run("serving.app:app_from_env", factory=True, workers=serving.workers, **options)


def _announce_when_ready(config: PipelineConfig, backend_url: str | None, announce: Announce) -> None:
    import httpx

    host = "127.0.0.1" if config.serving.host in ("0.0.0.0", "::") else config.serving.host
    base = f"http://{host}:{config.serving.port}"
    deadline = time.monotonic() + 600
    last = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(base + "/readyz", timeout=5)
            last = response.json()
            if response.status_code == 200:
                announce(
                    f"RAG API ready: {base}/v1 (model {config.serving.model_name!r}, release {last['release']}); "
                    f"metrics: {base}/metrics; backend: {backend_url or 'in-process'}"
                )
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.5)
    announce(f"RAG API at {base} is not ready: {last}")


@contextlib.contextmanager
def _interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C until uvicorn takes over: the vLLM start-up is abandoned and vLLM stopped."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _quiet_signals() -> Iterator[None]:
    """While uvicorn serves, it owns SIGINT/SIGTERM (graceful shutdown) and re-raises them afterwards; then they
    must not interrupt the vLLM shutdown that follows."""
    ignore = lambda signum, frame: None  # noqa: E731
    previous = {s: signal.signal(s, ignore) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
