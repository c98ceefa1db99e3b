"""The served release: what a request runs on, and how a new one replaces it without dropping requests.

- `ReleaseState`: one loaded release (its index, its RAG chain and generation client, the vLLM name of its adapter)
  with a count of the requests using it.
- `ReleaseHolder`: the reference to the current state. A request takes the state once, at its start, and keeps it
  to the end (a stream included), so a swap never changes a request half-way. The swap is one assignment.
- `ReleaseLoader`: builds a state from a registry `Release`: checks it (`llmops.release.artifacts.verify_release`:
  paths inside the artifact and registry roots, index and adapter manifests as the release pinned them, every file
  as its manifest lists it), loads the index, registers the adapter with vLLM (`/v1/load_lora_adapter`, under a
  name derived from the adapter version) and opens a client for it.
- `ReleaseManager`: loads the alias's release at start-up, reloads when the alias moves (a watcher polls it; the
  admin endpoint calls `reload`), swaps, and retires the old state: once its requests have finished and the grace
  period has passed, its adapter is unloaded from vLLM (unless the new release uses the same adapter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

from pydantic import ValidationError

from llmops.config import PipelineConfig, PromptConfig, RetrievalConfig, SamplingConfig
from llmops.errors import BackendUnavailableError, GenerationError, NotReadyError, RegistryError
from llmops.llm.runtime import adapter_model_name
from llmops.rag.prompt import PromptBuilder
from llmops.rag.chain import RagChain, client_template_overhead
from llmops.release.registry import Release, ReleaseRegistry
from llmops.release.artifacts import artifact_roots, ensure_within, verify_release
from llmops.index.retriever import Retriever

__all__ = [
    "ReleaseHolder",
    "ReleaseLoader",
    "ReleaseManager",
    "ReleaseState",
    "ReloadResult",
    "ensure_within",
]

log = logging.getLogger("llmops.serving")


@dataclass(eq=False)
class ReleaseState:
    """One loaded release. `active` counts the requests running on it; `idle` is set while there are none."""

    release: Release
    chain: RagChain
    adapter_name: str | None = None  # the name vLLM serves the adapter under; None: base model or in-process
    # Registers the adapter with the backend again (after a vLLM restart, runtime-loaded adapters are gone).
    reregister: Callable[[], Awaitable[None]] | None = None
    loaded_at: float = field(default_factory=time.time)
    active: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def release_id(self) -> str:
        return self.release.release

    @property
    def retriever(self) -> Retriever:
        return self.chain.retriever

    @property
    def client(self):
        return self.chain.client


class ReleaseHolder:
    """The current release. All methods run on the event loop, so taking and swapping the state are atomic."""

    def __init__(self, state: ReleaseState | None = None):
        self.current = state

    def acquire(self) -> ReleaseState:
        state = self.current
        if state is None:
            raise NotReadyError("no release is loaded yet: the alias points at nothing, or its release failed to load")
        state.active += 1
        state.idle.clear()
        return state

    @staticmethod
    def release(state: ReleaseState) -> None:
        state.active -= 1
        if state.active == 0:
            state.idle.set()

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[ReleaseState]:
        state = self.acquire()
        try:
            yield state
        finally:
            self.release(state)

    def swap(self, new: ReleaseState) -> ReleaseState | None:
        old, self.current = self.current, new
        return old


# ---------------------------------------------------------------------------------------------------------------
# Loading a release
# ---------------------------------------------------------------------------------------------------------------


def _section(release: Release, name: str, model, default):
    """A config section as the release was evaluated with it; the serving config's when the release has none."""
    data = release.config.get(name) if isinstance(release.config, dict) else None
    if data is None:
        log.info("release %s records no %s section; using the serving config's", release.release, name)
        return default
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise RegistryError(f"release {release.release}: its config's {name} section is invalid: {e}") from None


class ReleaseLoader:
    """Turns a registry `Release` into a `ReleaseState`.

    With `llm.backend: vllm`, generation goes to the server at `backend_url` (else `llm.base_url`), which must run
    the release's base model with LoRA enabled; an adapter is registered there at load time. With
    `backend: transformers` the model (and adapter) is loaded in this process (tests, small runs).
    """

    def __init__(self, config: PipelineConfig, *, backend_url: str | None = None):
        if config.llm is None:
            raise RegistryError("serving needs an llm section in the config (the base model and its backend)")
        self.config = config
        self.llm = config.llm
        self.backend_url = backend_url or config.llm.base_url
        if self.llm.backend == "vllm" and self.backend_url is None:
            raise BackendUnavailableError(
                "llm.backend is vllm but no server URL is known: set llm.base_url, or start with `llmops serve`, "
                "which starts the vLLM server itself"
            )
        self.roots = self.roots_of(config)
        self._overhead: int | None = None

    @staticmethod
    def roots_of(config: PipelineConfig) -> tuple[str, ...]:
        """Where a release's index and adapter may live: the artifact store and the registry."""
        return artifact_roots(config)

    @property
    def remote_backend(self) -> bool:
        return self.llm.backend == "vllm"

    async def load(self, release: Release) -> ReleaseState:
        if not _same_model(release.base_model, self.llm.model):
            raise RegistryError(
                f"release {release.release} was built on base model {release.base_model!r}, but this server runs "
                f"llm.model {self.llm.model!r}: a different base model needs a restart with that model"
            )
        verified = await asyncio.to_thread(verify_release, release, self.roots, self.config.serving.adapter_cache_dir)
        retriever = await asyncio.to_thread(
            Retriever, verified.index_dir, verified.index, query_cache_size=self.config.serving.query_cache_size
        )
        adapter_dir = verified.adapter_dir
        adapter_name = None
        reregister = None
        if self.remote_backend and adapter_dir is not None:
            adapter_name = served_adapter_name(release)
            await self.register_adapter(adapter_name, str(adapter_dir))

            async def reregister(name: str = adapter_name, path: str = str(adapter_dir)) -> None:
                await self.register_adapter(name, path)

        client = await asyncio.to_thread(self._client, adapter_dir, adapter_name)
        sampling = _section(release, "sampling", SamplingConfig, self.config.sampling)
        prompt = _section(release, "prompt", PromptConfig, self.config.prompt)
        retrieval = _section(release, "retrieval", RetrievalConfig, self.config.retrieval)
        chain = RagChain(
            retriever,
            client,
            PromptBuilder(prompt, count_tokens=client.count_tokens),
            sampling,
            k=retrieval.k,
            mode=retrieval.mode,
            max_model_len=self.llm.max_model_len,
            template_overhead=await asyncio.to_thread(self._template_overhead, client),
        )
        return ReleaseState(release=release, chain=chain, adapter_name=adapter_name, reregister=reregister)

    def _client(self, adapter_dir: Path | None, adapter_name: str | None):
        from llmops.llm.runtime import make_client

        if self.remote_backend:
            return make_client(self.llm, base_url=self.backend_url, served_model_name=adapter_name)
        return make_client(
            self.llm, adapter_path=str(adapter_dir) if adapter_dir else None, served_model_name=None
        )

    def _template_overhead(self, client) -> int:
        """The chat template's tokens (the same base model for every release: measured once)."""
        if self._overhead is None:
            self._overhead = client_template_overhead(self.llm, client)
        return self._overhead

    async def register_adapter(self, name: str, path: str) -> None:
        """Make vLLM serve the adapter at `path` as `name` (already served under that name: fine)."""
        from llmops.llm.vllm_server import load_lora_adapter

        try:
            await asyncio.to_thread(load_lora_adapter, self.backend_url, name, path, api_key=self._api_key)
        except GenerationError as e:
            # 400 "has already been loaded": another worker or replica registered it first.
            if not (e.status_code == 400 and "already" in str(e)):
                raise

    async def unregister_adapter(self, name: str) -> None:
        from llmops.llm.vllm_server import unload_lora_adapter

        try:
            await asyncio.to_thread(unload_lora_adapter, self.backend_url, name, api_key=self._api_key)
        except GenerationError as e:
            if e.status_code != 404:  # 404: someone else unloaded it first
                raise

    @property
    def _api_key(self) -> str | None:
        return os.environ.get(self.llm.api_key_env)

    async def close(self, state: ReleaseState) -> None:
        await state.client.aclose()  # on this event loop, where the client's async resources were created

    async def backend_ready(self, timeout_s: float) -> tuple[bool, str]:
        """Whether the generation backend answers (`GET /v1/models`), and why not."""
        if not self.remote_backend:
            return True, "in-process"
        import httpx

        url = self.backend_url.rstrip("/") + "/models"
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            async with httpx.AsyncClient(timeout=timeout_s) as http:
                response = await http.get(url, headers=headers)
        except httpx.HTTPError as e:
            return False, f"{url}: {type(e).__name__}: {e}"
        if response.status_code != 200:
            return False, f"{url} answered {response.status_code}"
        return True, "ok"


def served_adapter_name(release: Release) -> str:
    """The vLLM model name of a release's adapter: unique per adapter version, shared by releases that reuse it."""
    return adapter_model_name(release.adapter_version or Path(release.adapter_uri or "adapter").name)


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    looks_local = any(x.startswith(("/", ".")) for x in (a, b))
    return looks_local and Path(a).resolve() == Path(b).resolve()


# ---------------------------------------------------------------------------------------------------------------
# Swapping releases
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReloadResult:
    changed: bool
    release: str | None
    previous: str | None


class ReleaseManager:
    """Keeps the holder on the release the alias points at. `reload` is serialised: one load at a time."""

    def __init__(
        self,
        registry: ReleaseRegistry,
        alias: str,
        loader: ReleaseLoader,
        holder: ReleaseHolder | None = None,
        *,
        unload_grace_s: float = 30.0,
        on_swap: Callable[[ReleaseState, ReleaseState | None], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ):
        self.registry = registry
        self.alias = alias
        self.loader = loader
        self.holder = holder or ReleaseHolder()
        self.unload_grace_s = unload_grace_s
        self.on_swap = on_swap
        self.on_failure = on_failure
        self.last_error: str | None = None
        self.retiring: set[ReleaseState] = set()
        self._lock = asyncio.Lock()
        self._failed: str | None = None  # the release that failed to load last (set while it loads)
        self._tasks: set[asyncio.Task] = set()

    async def reload(self, retry_failed: bool = True) -> ReloadResult:
        """Load the alias's release if it is not the one served. Errors leave the current release in place.

        `retry_failed=False` (the watcher) skips a release that already failed to load, until the alias moves."""
        async with self._lock:
            current = self.holder.current
            previous = current.release_id if current else None
            try:
                pointer = await asyncio.to_thread(self.registry.pointer, self.alias)
                if pointer is None:
                    if current is None:
                        raise NotReadyError(f"alias {self.alias!r} in registry {self.registry.root} points at nothing")
                    return ReloadResult(False, previous, previous)
                if pointer.release == previous:
                    self.last_error = None
                    return ReloadResult(False, previous, previous)
                if not retry_failed and pointer.release == self._failed:
                    return ReloadResult(False, previous, previous)
                self._failed = pointer.release
                release = await asyncio.to_thread(self.registry.get, pointer.release)
                state = await self.loader.load(release)
            except BaseException as e:
                self.last_error = f"{type(e).__name__}: {e}"
                if self.on_failure is not None and not isinstance(e, NotReadyError):  # nothing to load is no failure
                    self.on_failure(e)
                raise
            self.last_error = None
            self._failed = None
            old = self.holder.swap(state)
            log.info("serving release %s (was %s)", state.release_id, previous)
            if self.on_swap is not None:
                self.on_swap(state, old)
            if old is not None:
                self.retiring.add(old)
                self._spawn(self._retire(old, swapped_at=time.monotonic()))
            return ReloadResult(True, state.release_id, previous)

    async def watch(self, interval_s: float) -> None:
        """Poll the alias forever; a failed load is logged and tried again at the next poll."""
        while True:
            try:
                await self.reload(retry_failed=False)
            except asyncio.CancelledError:
                raise
            except NotReadyError as e:
                log.debug("%s", e)
            except Exception as e:  # noqa: BLE001 - the watcher must outlive any one bad release
                log.warning("reloading alias %r failed: %s", self.alias, e)
            await asyncio.sleep(interval_s)

    async def _retire(self, old: ReleaseState, swapped_at: float) -> None:
        # Nobody can take `old` any more; wait out the grace period (other workers and replicas may still be on
        # its adapter), then for this process's requests on it, streams included.
        await asyncio.sleep(max(0.0, swapped_at + self.unload_grace_s - time.monotonic()))
        await old.idle.wait()
        self.retiring.discard(old)
        in_use = {s.adapter_name for s in (self.holder.current, *self.retiring) if s is not None}
        try:
            if old.adapter_name is not None and old.adapter_name not in in_use:
                await self.loader.unregister_adapter(old.adapter_name)
                log.info("unloaded adapter %s of release %s", old.adapter_name, old.release_id)
        except Exception as e:  # noqa: BLE001 - a leftover adapter costs memory, not correctness
            log.warning("could not unload adapter %s: %s", old.adapter_name, e)
        finally:
            await self.loader.close(old)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for pending retirements (tests; shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        state = self.holder.current
        if state is not None:
            # The adapter stays registered: vLLM may outlive this process, and other replicas may be using it.
            await self.loader.close(state)
