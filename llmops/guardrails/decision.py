"""What a guardrail check says: one `GuardDecision` per policy that acted, the `GuardOutcome` of a whole check and
the `StreamCheck` of one streamed delta. Details name kinds and counts, never the matched text (no raw PII)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["GuardAction", "GuardDecision", "GuardOutcome", "GuardStage", "StreamCheck"]

GuardStage = Literal["input", "output"]
GuardAction = Literal["allow", "redact", "refuse"]


@dataclass(frozen=True)
class GuardDecision:
    policy: str  # pii, blocked_terms, a blocked topic's name, prompt_injection, max_*_chars, moderation
    stage: GuardStage
    action: GuardAction
    detail: str = ""  # e.g. "email x2", "ignore_instructions", "S1": never the matched text


@dataclass(frozen=True)
class GuardOutcome:
    text: str  # the checked text, redacted where a redact policy fired
    decisions: tuple[GuardDecision, ...]
    refusal: GuardDecision | None
    elapsed_s: float


@dataclass(frozen=True)
class StreamCheck:
    emit: str  # text now safe to send (redacted); the tail that could still become a match is held back
    refusal: GuardDecision | None = None  # set as soon as a refusing policy fires: stop generating
    decisions: tuple[GuardDecision, ...] = ()  # decisions made by this call (the engine collects them)
