"""What chat completions do with the session store: continue or start a session before answering, and remember the
answer after it.

Before: a request's `session_id` loads that session (404 when it is not the caller's; 503 when the store is down),
whose stored turns go before the request's own messages; `store: true` without an id starts a session. After a
whole answer (or a completed stream): the question and the answer (a refusal's message when it was withheld, with
the answer id) are appended to the session, and every answer, in a session or not, is recorded so that
`/v1/feedback` can check it went to the caller. The answer has been given by then: a store failing at that point
is logged and counted (`llmops_session_store_errors_total`), and the client still gets it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from llmops.chat.conversation import Conversation, Turn
from llmops.errors import NotFoundError, StoreUnavailableError
from serving.sessions.store import AnswerRecord, SessionStore, StoredTurn, check_session_id

__all__ = ["ChatMemory", "OpenedSession"]

log = logging.getLogger("llmops.serving")


@dataclass(frozen=True)
class OpenedSession:
    conversation: Conversation  # the stored history, then the request's own
    session_id: str | None  # None: the request uses no session


class ChatMemory:
    def __init__(self, store: SessionStore):
        self.store = store

    async def open(self, owner: str, conversation: Conversation, session_id: str | None, create: bool) -> OpenedSession:
        if session_id is not None:
            session = await self.store.load(check_session_id(session_id), owner)
            stored = tuple(Turn(t.role, t.content) for t in session.turns)
            return OpenedSession(Conversation(conversation.question, stored + conversation.history), session.id)
        if create:
            return OpenedSession(conversation, (await self.store.create(owner)).id)
        return OpenedSession(conversation, None)

    async def remember(
        self, owner: str, session_id: str | None, question: str, answer: str, answer_id: str, release: str
    ) -> None:
        now = time.time()
        if session_id is not None:
            turns = [StoredTurn("user", question, None, now), StoredTurn("assistant", answer, answer_id, now)]
            try:
                await self.store.append(session_id, owner, turns)
            except NotFoundError:  # deleted (or expired) while it was being answered: nothing to continue
                log.info("session %s ended before answer %s was stored", session_id, answer_id)
            except StoreUnavailableError as e:
                log.warning("answer %s was given but not stored in session %s: %s", answer_id, session_id, e)
        try:
            await self.store.record_answer(AnswerRecord(answer_id, owner, session_id, release, now))
        except StoreUnavailableError as e:
            log.warning("answer %s was given but not recorded (no feedback on it): %s", answer_id, e)
