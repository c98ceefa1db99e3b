"""`ReleaseManager`: keeps the served release on the one the alias points at.

It loads the alias's release at start-up, reloads when the alias moves (a watcher polls it; the admin endpoint calls
`reload`), swaps, and retires the old state: once its requests have finished and the grace period has passed, its
adapter is unloaded from vLLM (unless the new release uses the same adapter).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from llmops.errors import NotReadyError
from llmops.release.registry import ReleaseRegistry
from serving.release.loader import ReleaseLoader
from serving.release.state import ReleaseHolder, ReleaseState

__all__ = ["ReleaseManager", "ReloadResult"]

log = logging.getLogger("llmops.serving")


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
            await self.poll()
            await asyncio.sleep(interval_s)

    async def poll(self) -> None:
        """One look at the alias (the watcher's): a failed load is logged, never raised."""
        try:
            await self.reload(retry_failed=False)
        except asyncio.CancelledError:
            raise
        except NotReadyError as e:
            log.debug("%s", e)
        except Exception as e:  # noqa: BLE001 - the watcher must outlive any one bad release
            log.warning("reloading alias %r failed: %s", self.alias, e)

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
