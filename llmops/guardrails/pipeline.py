"""`Guardrails`: the input and output checks of the chat path, built from the release's `guardrails` config.

Built-in checks run first; a built-in refusal skips the moderation model, which then sees the redacted text (PII
never leaves the process).
"""

from __future__ import annotations

import time

from llmops.config import GuardrailsConfig
from llmops.guardrails.builtin import BuiltinChecks
from llmops.guardrails.decision import GuardDecision, GuardOutcome, GuardStage
from llmops.guardrails.moderation import ModerationClient
from llmops.guardrails.stream import OutputStreamGuard

__all__ = ["Guardrails"]


class Guardrails:
    def __init__(self, cfg: GuardrailsConfig, builtin: BuiltinChecks, moderation: ModerationClient | None):
        self.cfg = cfg
        self.builtin = builtin
        self.moderation = moderation

    @classmethod
    def from_config(cls, cfg: GuardrailsConfig) -> "Guardrails":
        """Patterns are compiled here, once per release."""
        moderation = ModerationClient(cfg.moderation) if cfg.moderation is not None else None
        return cls(cfg, BuiltinChecks.from_config(cfg), moderation)

    async def check_input(self, text: str, lang: str) -> GuardOutcome:
        return await self._check(text, "input")

    async def check_output(self, text: str, lang: str) -> GuardOutcome:
        return await self._check(text, "output")

    def output_stream(self, lang: str) -> OutputStreamGuard:
        """The output checks for a streamed answer (built-in ones; `moderates_streams` says whether the caller should
        also `check_output` the whole answer at the end)."""
        return OutputStreamGuard(self.builtin)

    @property
    def moderates_streams(self) -> bool:
        return self.cfg.enabled and self.moderation is not None and "output" in self.moderation.cfg.stages

    async def moderate(self, text: str, stage: GuardStage) -> GuardDecision | None:
        """The moderation model's decision on `text`, or None where it is not configured for `stage`."""
        if not self.cfg.enabled or self.moderation is None or stage not in self.moderation.cfg.stages:
            return None
        return await self.moderation.check(text, stage)

    def refusal_message(self, decision: GuardDecision, lang: str) -> str:
        messages = self.cfg.refusal_messages
        return messages.get(lang) or messages[self.cfg.fallback_language]

    async def _check(self, text: str, stage: GuardStage) -> GuardOutcome:
        started = time.perf_counter()
        if not self.cfg.enabled:
            return GuardOutcome(text, (), None, 0.0)
        checked, decisions, refusal = self.builtin.check(text, stage)
        if refusal is None:
            verdict = await self.moderate(checked, stage)
            if verdict is not None:
                decisions = (*decisions, verdict)
                refusal = verdict if verdict.action == "refuse" else None
        return GuardOutcome(checked, decisions, refusal, time.perf_counter() - started)

    async def aclose(self) -> None:
        if self.moderation is not None:
            await self.moderation.aclose()
