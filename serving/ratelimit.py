"""Per-route rate limits: a token bucket per route, and per API key within it (`serving.routes[].rate_limit`).

A bucket holds up to `capacity` tokens (the burst) and refills at `requests_per_minute / 60` per second; a request
takes one token or is refused with the time until one is there (the 429's `Retry-After`). The buckets live in the
process: with several uvicorn workers or replicas each has its own, so the limit a deployment enforces is the
configured one times the processes (serving/README.md).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from llmops.config import RateLimitConfig
from llmops.errors import RateLimitedError

__all__ = ["RouteRateLimiter", "TokenBucket"]


class TokenBucket:
    def __init__(self, capacity: int, per_second: float, now: float):
        self.capacity = capacity
        self.per_second = per_second
        self.tokens = float(capacity)
        self.updated = now

    def take(self, now: float) -> float:
        """Take a token: 0.0 when granted, else the seconds until one will be there."""
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.per_second


class RouteRateLimiter:
    """The buckets of one route, one per caller (owner id: a key's hash, or `anonymous` on an open API). Owners
    are bounded: the configured keys, plus `anonymous`."""

    def __init__(self, route: str, limit: RateLimitConfig, clock: Callable[[], float] = time.monotonic):
        self.route = route
        self.limit = limit
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()  # the app runs on one loop; the lock keeps the bucket right from any thread

    def check(self, owner: str) -> None:
        """Admit one request of `owner`, or raise `RateLimitedError` with the time to wait."""
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(owner)
            if bucket is None:
                bucket = self._buckets[owner] = TokenBucket(
                    self.limit.capacity, self.limit.requests_per_minute / 60.0, now
                )
            wait_s = bucket.take(now)
        if wait_s > 0:
            raise RateLimitedError(
                f"rate limit of model {self.route!r} reached ({self.limit.requests_per_minute:g} requests per minute, "
                f"burst {self.limit.capacity}): retry after the Retry-After header's seconds",
                retry_after_s=wait_s,
            )
