"""A conversation as the chat path sees it: the earlier turns and the question being answered now.

OpenAI's chat API carries the whole history in `messages`; a server-side session stores the same turns. Either way
the last user message is the question, the user and assistant messages before it are the history, and client system
messages are not passed on (the release's template writes the system message).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal

__all__ = ["Conversation", "Turn"]

Role = Literal["user", "assistant"]


@dataclass(frozen=True)
class Turn:
    role: Role
    content: str

    def message(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class Conversation:
    question: str
    history: tuple[Turn, ...] = ()  # oldest first; ends before the question

    @classmethod
    def from_messages(cls, messages: Iterable[tuple[str, str]]) -> "Conversation":
        """(role, text) pairs, oldest first. Only user and assistant messages with text count; what follows the last
        user message (an assistant prefill) is dropped. No user message: an empty question."""
        turns = [Turn(role, text) for role, text in messages if role in ("user", "assistant") and text.strip()]
        last_user = max((i for i, t in enumerate(turns) if t.role == "user"), default=None)
        if last_user is None:
            return cls(question="")
        return cls(question=turns[last_user].content, history=tuple(turns[:last_user]))

    def recent(self, max_turns: int) -> tuple[Turn, ...]:
        """The last `max_turns` earlier turns (all of them when it is larger)."""
        return self.history[-max_turns:] if max_turns > 0 else ()

    def last_user_turn(self) -> str | None:
        return next((t.content for t in reversed(self.history) if t.role == "user"), None)
