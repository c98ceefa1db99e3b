"""Endpoint routes: an external OpenAI-compatible provider generating behind a served release's retriever and prompt.

An endpoint route is run by an ordinary `ReleaseManager` (swap, retirement, reload, readiness) whose "registry" is
the manager of `serving.alias` (`FollowedRelease`): it follows the release that route serves, never the registry
itself, so it is never ahead of the index it shares. Its loader (`EndpointLoader`) builds the release's chat path
(`ReleaseLoader.state_for`) around that release's loaded retriever and a client of its own for the provider, whose
key is read from `endpoint.api_key_env` at every load (a rotated secret is picked up by the next swap or reload).
The provider's URL and key stay in the server: clients see the route's name and release only.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from llmops.config import RouteConfig
from llmops.errors import ConfigError, NotReadyError
from llmops.release.registry import Release
from serving.release.loader import ReleaseLoader, probe_models
from serving.release.state import ReleaseHolder, ReleaseState

__all__ = ["EndpointLoader", "FollowedRelease"]


@dataclass(frozen=True)
class _Pointer:
    release: str


class FollowedRelease:
    """The release `holder` serves, in the two calls `ReleaseManager` makes of a registry (`pointer`, `get`)."""

    def __init__(self, holder: ReleaseHolder, alias: str):
        self.holder = holder
        self.root = f"(the release served for alias {alias!r})"

    def pointer(self, alias: str) -> _Pointer | None:
        state = self.holder.current
        return None if state is None else _Pointer(state.release_id)

    def get(self, release_id: str) -> Release:
        state = self.holder.current
        if state is None or state.release_id != release_id:  # swapped meanwhile: the next reload follows
            raise NotReadyError(f"release {release_id} is no longer the one served; it is followed at the next reload")
        return state.release


class EndpointLoader:
    """Builds an endpoint route's `ReleaseState` from the followed release's loaded state and the route's client."""

    remote_backend = True

    def __init__(self, base: ReleaseLoader, followed: ReleaseHolder, route: RouteConfig):
        assert route.endpoint is not None
        self.base = base
        self.followed = followed
        self.route = route
        self.endpoint = route.endpoint

    def api_key(self) -> str | None:
        variable = self.endpoint.api_key_env
        if variable is None:
            return None
        key = os.environ.get(variable, "").strip()
        if not key:
            raise ConfigError(
                f"serving.routes[{self.route.name}].endpoint.api_key_env",
                [f"the variable {variable} is not set in the server's environment: fill it from the provider's "
                 "secret (serving/deploy/rag-api.yaml: env from a secretKeyRef)"],
            )
        return key

    async def load(self, release: Release) -> ReleaseState:
        state = self.followed.current
        if state is None or state.release_id != release.release:
            raise NotReadyError(f"release {release.release} is not loaded by the route this endpoint route follows")
        client = await asyncio.to_thread(self._client)
        return await self.base.state_for(release, state.retriever, client)

    def _client(self):
        from llmops.llm.openai_client import OpenAICompatibleClient

        llm = self.base.llm
        # Prompt budgets are counted with the served base model's tokenizer: the provider's is not known here.
        return OpenAICompatibleClient(
            self.endpoint.base_url, self.endpoint.model, api_key=self.api_key(), timeout_s=llm.request_timeout_s,
            max_concurrency=llm.max_concurrency, tokenizer=llm.model, tokenizer_revision=llm.revision,
        )

    async def unregister_adapter(self, name: str) -> None:  # endpoint states have no adapter of ours
        return None

    async def close(self, state: ReleaseState) -> None:
        await self.base.close(state)  # its own client and guardrails; the shared retriever stays

    async def backend_ready(self, timeout_s: float) -> tuple[bool, str]:
        try:
            key = self.api_key()
        except ConfigError as e:
            return False, str(e)
        return await probe_models(self.endpoint.base_url, key, timeout_s)
