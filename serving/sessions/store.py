"""The session store's interface and types: server-side conversations, answer records and feedback.

Every read and write names the caller (`owner`, a hash of their API key): a session, an answer or a rating of
another key is answered exactly like a missing or expired one (`NotFoundError`), so nothing leaks whether it exists.
Limits (`serving.sessions`: `max_turns`, `max_chars`) apply on every append, oldest turns first; every write renews
the session's time to live (`ttl_s`). Implementations: `sqlite_store.SQLiteSessionStore` (one file, the default) and
`redis_store.RedisSessionStore` (several replicas); `factory.open_session_store` picks one from the config.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Protocol, Sequence

from llmops.config import SessionsConfig
from llmops.errors import InvalidRequestError, NotFoundError, StoreUnavailableError
from serving.protocol import SESSION_ID_PATTERN

__all__ = [
    "AnswerNotFound",
    "AnswerRecord",
    "DisabledSessionStore",
    "Feedback",
    "ErrorHook",
    "Session",
    "SessionNotFound",
    "SessionStore",
    "StoredTurn",
    "apply_limits",
    "check_session_id",
    "new_session_id",
]

Role = Literal["user", "assistant"]
Rating = Literal["up", "down"]

SESSION_ID = re.compile(SESSION_ID_PATTERN)

# Called with the operation's name when the store's backend fails (serving counts these in Prometheus).
ErrorHook = Callable[[str], None]


def new_session_id() -> str:
    """A server-made id: 128 random bits, unguessable (the id is the only thing naming a session in a URL)."""
    return f"sess_{secrets.token_hex(16)}"


def check_session_id(value: str, param: str = "session_id") -> str:
    """A client-sent id must have the server's format: anything else is the client's mistake, never a lookup."""
    if not SESSION_ID.fullmatch(value):
        raise InvalidRequestError(
            f"{param} must be a session id this server made (sess_ and 32 hex digits)", param=param,
            code="invalid_value",
        )
    return value


class SessionNotFound(NotFoundError):
    def __init__(self, param: str = "session_id"):
        super().__init__("no such session (it may have expired or been deleted)", param=param,
                         code="session_not_found")


class AnswerNotFound(NotFoundError):
    def __init__(self) -> None:
        super().__init__("no such response (it may have expired)", param="response_id", code="response_not_found")


@dataclass(frozen=True)
class StoredTurn:
    role: Role
    content: str
    answer_id: str | None = None  # the response `id` of an assistant turn
    created: float = 0.0


@dataclass(frozen=True)
class Session:
    id: str
    owner: str
    created: float
    updated: float
    expires_at: float
    turns: tuple[StoredTurn, ...] = ()
    dropped_turns: int = 0  # turns dropped by the limits over the session's life


@dataclass(frozen=True)
class AnswerRecord:
    """One answer the API gave: who may rate it, in which session, from which release."""

    answer_id: str
    owner: str
    session_id: str | None
    release: str
    created: float


@dataclass(frozen=True)
class Feedback:
    answer_id: str
    rating: Rating
    comment: str | None
    created: float


class SessionStore(Protocol):
    """Every method may raise `StoreUnavailableError` (store off, unreachable or failing)."""

    async def create(self, owner: str) -> Session: ...

    async def load(self, session_id: str, owner: str) -> Session:
        """The session with its turns; `SessionNotFound` when missing, expired or another owner's."""
        ...

    async def append(self, session_id: str, owner: str, turns: Sequence[StoredTurn]) -> Session:
        """Add turns at the end, drop the oldest beyond the limits, renew the time to live."""
        ...

    async def delete(self, session_id: str, owner: str) -> None: ...

    async def record_answer(self, record: AnswerRecord) -> None: ...

    async def add_feedback(self, owner: str, feedback: Feedback) -> None:
        """Rate an answer of `owner`'s (`AnswerNotFound` otherwise); a second rating replaces the first."""
        ...

    async def close(self) -> None: ...


def apply_limits(turns: Iterable[StoredTurn], config: SessionsConfig) -> tuple[list[StoredTurn], int]:
    """(the turns kept, how many were dropped): the newest that fit both `max_turns` and `max_chars`.

    A turn longer than `max_chars` on its own is dropped too: the limit is what a session may hold."""
    turns = list(turns)
    kept: list[StoredTurn] = []
    chars = 0
    for turn in reversed(turns):
        if len(kept) == config.max_turns or chars + len(turn.content) > config.max_chars:
            break
        kept.append(turn)
        chars += len(turn.content)
    kept.reverse()
    return kept, len(turns) - len(kept)


class DisabledSessionStore:
    """`store: off`: answers are not recorded, and everything that needs the store is unavailable (503)."""

    async def create(self, owner: str) -> Session:
        raise self._off()

    async def load(self, session_id: str, owner: str) -> Session:
        raise self._off()

    async def append(self, session_id: str, owner: str, turns: Sequence[StoredTurn]) -> Session:
        raise self._off()

    async def delete(self, session_id: str, owner: str) -> None:
        raise self._off()

    async def record_answer(self, record: AnswerRecord) -> None:
        return None  # nothing to rate them against: feedback is off as well

    async def add_feedback(self, owner: str, feedback: Feedback) -> None:
        raise self._off()

    async def close(self) -> None:
        return None

    @staticmethod
    def _off() -> StoreUnavailableError:
        return StoreUnavailableError("sessions are off (serving.sessions.store: off)")
