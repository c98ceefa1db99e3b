"""Concurrent requests' questions searched together: one embedding pass for every question that is waiting.

Embedding one short question is mostly fixed cost: on a 2-core machine a batch of 8 questions costs about a third of
the CPU time of 8 single ones (bench/README.md, serving.py). The batcher never waits for a batch to fill: a question
that arrives while no search runs is searched at once; those that arrive during a search go together in the next one
(up to `max_batch`). Questions are grouped by (k, mode), so every request gets exactly the hits it would get alone.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from llmops.index.retriever import Mode, SearchHit

__all__ = ["RetrievalBatcher"]

Search = Callable[[Sequence[str], int, Mode], list[list[SearchHit]]]


@dataclass
class _Waiting:
    question: str
    future: asyncio.Future
    since: float = field(default_factory=time.perf_counter)


class RetrievalBatcher:
    """Batches `search(questions, k, mode)` calls of one event loop; the search itself runs in a worker thread."""

    def __init__(self, search: Search, max_batch: int):
        self._search = search
        self._max_batch = max_batch
        self._waiting: dict[tuple[int, Mode], list[_Waiting]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task | None = None

    async def search(self, question: str, k: int, mode: Mode) -> tuple[list[SearchHit], float]:
        """The hits for `question` and the seconds from this call to its result (queueing included)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a chain outliving one event loop (tests, re-runs) starts afresh on the next
            self._loop, self._waiting, self._worker = loop, {}, None
        waiting = _Waiting(question, loop.create_future())
        self._waiting.setdefault((k, mode), []).append(waiting)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return await waiting.future

    async def _drain(self) -> None:
        while self._waiting:
            (k, mode), group = next(iter(self._waiting.items()))
            batch, rest = group[: self._max_batch], group[self._max_batch :]
            if rest:
                self._waiting[(k, mode)] = rest
            else:
                del self._waiting[(k, mode)]
            batch = [w for w in batch if not w.future.done()]  # a cancelled request is not searched
            if not batch:
                continue
            try:
                hits = await asyncio.to_thread(self._search, [w.question for w in batch], k, mode)
            except Exception as exc:  # noqa: BLE001 - every request in the batch gets the error it would get alone
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(exc)
                continue
            now = time.perf_counter()
            for w, h in zip(batch, hits):
                if not w.future.done():
                    w.future.set_result((h, now - w.since))
