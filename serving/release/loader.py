"""`ReleaseLoader`: builds a `ReleaseState` from a registry `Release`.

It checks the release (`llmops.release.artifacts.verify_release`: paths inside the artifact and registry roots,
index and adapter manifests as the release pinned them, every file as its manifest lists it), loads the index,
registers the adapter with vLLM (`/v1/load_lora_adapter`, under a name derived from the adapter version) and opens a
client for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Awaitable, Callable

from pydantic import ValidationError

from llmops.chat.engine import ChatEngine
from llmops.config import PipelineConfig
from llmops.errors import BackendUnavailableError, GenerationError, RegistryError
from llmops.index.retriever import Retriever
from llmops.llm.runtime import adapter_model_name
from llmops.rag.chain import RagChain, client_template_overhead
from llmops.release.artifacts import artifact_roots, verify_release
from llmops.release.registry import Release
from serving.guard_timing import TimedGuardrails
from serving.release.state import ReleaseState

__all__ = ["ReleaseLoader", "probe_models", "served_adapter_name"]

log = logging.getLogger("llmops.serving")


# The config sections a release is served with as it was evaluated (its `config`): prompt, decoding, retrieval and
# the chat path. The rest (llm, serving, artifacts) is the server's own.
RELEASE_SECTIONS = ("sampling", "prompt", "retrieval", "chat", "guardrails")


def release_config(release: Release, config: PipelineConfig) -> PipelineConfig:
    """The serving config with the release's own `RELEASE_SECTIONS`, each as the release was evaluated with it (the
    serving config's where the release records none)."""
    return config.model_copy(update={name: _section(release, name, config) for name in RELEASE_SECTIONS})


def _section(release: Release, name: str, config: PipelineConfig):
    default = getattr(config, name)
    data = release.config.get(name) if isinstance(release.config, dict) else None
    if data is None:
        log.info("release %s records no %s section; using the serving config's", release.release, name)
        return default
    try:
        return type(default).model_validate(data)
    except ValidationError as e:
        raise RegistryError(f"release {release.release}: its config's {name} section is invalid: {e}") from None


def _source_roots(release: Release, config: PipelineConfig) -> tuple[str, ...]:
    """Where the release's documents came from: its config's corpus sources, and the serving config's."""
    recorded = release.config.get("corpus", {}) if isinstance(release.config, dict) else {}
    paths = [s.get("path") for s in recorded.get("sources", ()) if isinstance(s, dict)]
    paths += [s.path for s in config.corpus.sources]
    return tuple(dict.fromkeys(p for p in paths if isinstance(p, str) and p))


class ReleaseLoader:
    """Turns a registry `Release` into a `ReleaseState`.

    With `llm.backend: vllm`, generation goes to the server at `backend_url` (else `llm.base_url`), which must run
    the release's base model with LoRA enabled; an adapter is registered there at load time. With
    `backend: transformers` the model (and adapter) is loaded in this process (tests, small runs).
    """

    def __init__(
        self,
        config: PipelineConfig,
        *,
        backend_url: str | None = None,
        observe_guardrails: Callable[[str, float], None] | None = None,
    ):
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
        self.observe_guardrails = observe_guardrails  # (stage, seconds) of each request's guardrail checks
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
        return await self.state_for(release, retriever, client, adapter_name=adapter_name, reregister=reregister)

    async def state_for(
        self,
        release: Release,
        retriever: Retriever,
        client,
        *,
        adapter_name: str | None = None,
        reregister: Callable[[], Awaitable[None]] | None = None,
    ) -> ReleaseState:
        """The release's chat path (prompt, chain, engine, guardrails) around `retriever` and generation `client`:
        a release's own client, or an endpoint route's (`serving.release.endpoint`)."""
        cfg = release_config(release, self.config)
        chain = RagChain.from_config(
            cfg,
            retriever,
            client,
            await asyncio.to_thread(self._template_overhead, client),
            retrieval_batch_size=self.config.serving.retrieval_batch_size,
        )
        engine = ChatEngine.from_config(cfg, chain)
        if engine.guardrails is not None and self.observe_guardrails is not None:
            engine.guardrails = TimedGuardrails(engine.guardrails, self.observe_guardrails)
        return ReleaseState(
            release=release, engine=engine, adapter_name=adapter_name, reregister=reregister,
            source_roots=_source_roots(release, self.config),
        )

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
        if state.engine.guardrails is not None:
            await state.engine.guardrails.aclose()  # the moderation endpoint's connections

    async def backend_ready(self, timeout_s: float) -> tuple[bool, str]:
        """Whether the generation backend answers (`GET /v1/models`), and why not."""
        if not self.remote_backend:
            return True, "in-process"
        return await probe_models(self.backend_url, self._api_key, timeout_s)


async def probe_models(base_url: str, api_key: str | None, timeout_s: float) -> tuple[bool, str]:
    """Whether an OpenAI-compatible server answers `GET …/models`, and why not (the reason names the URL: log it,
    never show it to clients)."""
    import httpx

    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
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
