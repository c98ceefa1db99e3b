"""What a request runs on: one loaded release (`ReleaseState`) and the reference to the current one
(`ReleaseHolder`).

A request takes the state once, at its start, and keeps it to the end (a stream included), so a swap never changes a
request half-way; the swap is one assignment. `active` counts the requests on a state, and `idle` is set while there
are none, which is what retiring an old release waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

from llmops.chat.engine import ChatEngine
from llmops.errors import NotReadyError
from llmops.index.retriever import Retriever
from llmops.rag.chain import RagChain
from llmops.release.registry import Release

__all__ = ["ReleaseHolder", "ReleaseState"]


@dataclass(eq=False)
class ReleaseState:
    """One loaded release. `active` counts the requests running on it; `idle` is set while there are none."""

    release: Release
    engine: ChatEngine  # the chat path around the release's RAG chain
    adapter_name: str | None = None  # the name vLLM serves the adapter under; None: base model or in-process
    # Registers the adapter with the backend again (after a vLLM restart, runtime-loaded adapters are gone).
    reregister: Callable[[], Awaitable[None]] | None = None
    # The corpus sources' paths (the release's and the server's config): hits name their source relative to them.
    source_roots: tuple[str, ...] = ()
    loaded_at: float = field(default_factory=time.time)
    active: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def release_id(self) -> str:
        return self.release.release

    @property
    def chain(self) -> RagChain:
        return self.engine.chain

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
