"""The session store in Redis, for several replicas (`serving.sessions.store: redis`; redis.asyncio).

Keys, under `key_prefix`: `session:<id>` (a hash: owner, created, updated, expires_at, dropped_turns) and
`session:<id>:turns` (a list of JSON turns), both with the session's time to live, renewed on every write;
`answer:<id>` (JSON, with the same time to live: feedback is possible while it lives) and `feedback:<answer id>`
(JSON, no expiry: ratings are what operators keep). An append is an optimistic transaction (WATCH the session,
read, check, MULTI ... EXEC, retried when another append got in first), so concurrent appends lose nothing.
Redis expires keys itself; reads also check `expires_at`, so an expired session is gone to the millisecond.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Awaitable, Callable, Sequence, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from llmops.config import SessionsConfig
from llmops.errors import StoreUnavailableError
from serving.sessions.store import (
    AnswerNotFound,
    AnswerRecord,
    ErrorHook,
    Feedback,
    Session,
    SessionNotFound,
    StoredTurn,
    apply_limits,
    new_session_id,
)

__all__ = ["RedisSessionStore"]

T = TypeVar("T")

APPEND_ATTEMPTS = 20  # optimistic retries of one append racing others on the same session


class RedisSessionStore:
    def __init__(self, url: str, config: SessionsConfig, on_error: ErrorHook | None = None):
        self.config = config
        self.on_error = on_error
        self.prefix = config.key_prefix
        self.redis = aioredis.from_url(
            url, decode_responses=True, socket_timeout=config.redis_timeout_s,
            socket_connect_timeout=config.redis_timeout_s,
        )

    # ------------------------------------------------------------------------------------------------ interface

    async def create(self, owner: str) -> Session:
        async def create() -> Session:
            now = time.time()
            session = Session(new_session_id(), owner, now, now, now + self.config.ttl_s)
            key = self._session_key(session.id)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"owner": owner, "created": now, "updated": now,
                                        "expires_at": session.expires_at, "dropped_turns": 0})
                pipe.pexpire(key, self._ttl_ms)
                await pipe.execute()
            return session

        return await self._call("create", create)

    async def load(self, session_id: str, owner: str) -> Session:
        return await self._call("load", lambda: self._load(session_id, owner))

    async def append(self, session_id: str, owner: str, turns: Sequence[StoredTurn]) -> Session:
        key, turns_key = self._session_key(session_id), self._turns_key(session_id)

        async def append() -> Session:
            async with self.redis.pipeline(transaction=True) as pipe:
                for _ in range(APPEND_ATTEMPTS):
                    try:
                        await pipe.watch(key, turns_key)
                        current = self._session(session_id, owner, await pipe.hgetall(key),
                                                await pipe.lrange(turns_key, 0, -1))
                        now = time.time()
                        added = [StoredTurn(t.role, t.content, t.answer_id, t.created or now) for t in turns]
                        kept, dropped = apply_limits([*current.turns, *added], self.config)
                        expires_at = now + self.config.ttl_s
                        pipe.multi()
                        pipe.delete(turns_key)
                        if kept:
                            pipe.rpush(turns_key, *(json.dumps(asdict(t), ensure_ascii=False) for t in kept))
                            pipe.pexpire(turns_key, self._ttl_ms)
                        pipe.hset(key, mapping={"updated": now, "expires_at": expires_at,
                                                "dropped_turns": current.dropped_turns + dropped})
                        pipe.pexpire(key, self._ttl_ms)
                        await pipe.execute()
                        return Session(session_id, owner, current.created, now, expires_at, tuple(kept),
                                       current.dropped_turns + dropped)
                    except WatchError:
                        await pipe.reset()
                raise StoreUnavailableError(
                    f"session {session_id}: {APPEND_ATTEMPTS} concurrent appends in a row won the race"
                )

        return await self._call("append", append)

    async def delete(self, session_id: str, owner: str) -> None:
        async def delete() -> None:
            await self._load(session_id, owner)  # SessionNotFound for another owner's: theirs stays
            await self.redis.delete(self._session_key(session_id), self._turns_key(session_id))

        await self._call("delete", delete)

    async def record_answer(self, record: AnswerRecord) -> None:
        async def record_answer() -> None:
            await self.redis.set(self._answer_key(record.answer_id), json.dumps(asdict(record)), px=self._ttl_ms)

        await self._call("record_answer", record_answer)

    async def add_feedback(self, owner: str, feedback: Feedback) -> None:
        async def add_feedback() -> None:
            stored = await self.redis.get(self._answer_key(feedback.answer_id))
            if stored is None or json.loads(stored)["owner"] != owner:
                raise AnswerNotFound()
            value = {**asdict(feedback), "owner": owner}
            await self.redis.set(self._key("feedback", feedback.answer_id), json.dumps(value, ensure_ascii=False))

        await self._call("add_feedback", add_feedback)

    async def feedback(self, answer_id: str) -> Feedback | None:
        """The rating stored for an answer (operators and tests; not routed)."""
        async def read() -> Feedback | None:
            stored = await self.redis.get(self._key("feedback", answer_id))
            if stored is None:
                return None
            value = json.loads(stored)
            value.pop("owner")
            return Feedback(**value)

        return await self._call("feedback", read)

    async def close(self) -> None:
        await self.redis.aclose()

    # ------------------------------------------------------------------------------------------------ helpers

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.config.ttl_s * 1000))

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    def _session_key(self, session_id: str) -> str:
        return self._key("session", session_id)

    def _turns_key(self, session_id: str) -> str:
        return self._key("session", session_id) + ":turns"

    def _answer_key(self, answer_id: str) -> str:
        return self._key("answer", answer_id)

    async def _load(self, session_id: str, owner: str) -> Session:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._session_key(session_id))
            pipe.lrange(self._turns_key(session_id), 0, -1)
            fields, turns = await pipe.execute()
        return self._session(session_id, owner, fields, turns)

    @staticmethod
    def _session(session_id: str, owner: str, fields: dict, turns: list[str]) -> Session:
        if not fields or fields.get("owner") != owner or float(fields["expires_at"]) <= time.time():
            raise SessionNotFound()
        return Session(
            session_id, owner, float(fields["created"]), float(fields["updated"]), float(fields["expires_at"]),
            tuple(StoredTurn(**json.loads(t)) for t in turns), int(fields["dropped_turns"]),
        )

    async def _call(self, operation: str, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await fn()
        except RedisError as e:
            if self.on_error is not None:
                self.on_error(operation)
            raise StoreUnavailableError(f"session store (redis): {operation} failed: {type(e).__name__}: {e}") from e
