"""`OutputStreamGuard`: the output checks applied to a streamed answer as it arrives.

Each delta is appended to the text not yet sent; everything before the settled point (`builtin.scan`) is sent
redacted, and only the tail that could still become a match (a partial email, a term cut in half, a number whose
last digit may still come) is held back. A refusing policy stops the stream at once. Whatever the chunking, the
text sent equals the whole-text check's redacted text (tests/llmops/guardrails/test_stream.py checks this).
"""

from __future__ import annotations

from llmops.guardrails.builtin import BuiltinChecks, Hit, decisions_for, first_refusal, redact, scan
from llmops.guardrails.decision import GuardDecision, StreamCheck
from llmops.guardrails.textfold import fold

__all__ = ["OutputStreamGuard"]

# Folded characters kept from the sent text for the patterns' lookbehinds (each looks back one character).
_LOOKBEHIND_CHARS = 8  # the longest lookbehind reads two (a digit and a separator)


class OutputStreamGuard:
    def __init__(self, checks: BuiltinChecks):
        self._checks = checks
        self._rules = checks.rules["output"]
        self._pending = ""  # original text received but not yet sent
        self._context = ""  # the folded end of the text already sent
        self._length = 0
        self._hits: list[Hit] = []  # every match sent so far (redacted)
        self.refusal: GuardDecision | None = None
        self.refusal_decisions: tuple[GuardDecision, ...] = ()

    def feed(self, delta: str) -> StreamCheck:
        """Take the next delta; return the text now safe to send, or the refusal that ends the stream."""
        if self.refusal is not None:
            return StreamCheck("", self.refusal)
        self._length += len(delta)
        too_long = self._checks.too_long(self._length, "output")
        if too_long is not None:
            return self._refuse((too_long,))
        self._pending += delta
        return self._advance(final=False)

    def finish(self) -> StreamCheck:
        """The answer is complete: check and send what was held back."""
        if self.refusal is not None:
            return StreamCheck("", self.refusal)
        return self._advance(final=True)

    @property
    def decisions(self) -> tuple[GuardDecision, ...]:
        """The decisions so far, one per policy as a whole-text check makes them; `finish` and a refusal return
        them (so a caller collecting each check's decisions counts each once)."""
        return self.refusal_decisions if self.refusal is not None else decisions_for(self._hits, "output")

    def _advance(self, *, final: bool) -> StreamCheck:
        if not self._pending:
            return StreamCheck("", None, self.decisions if final else ())
        folded = fold(self._pending)
        start = len(self._context)
        result = scan(self._rules, self._context + folded.text, start, final=final)
        hits = [Hit(h.rule, h.start - start, h.end - start) for h in result.hits]
        if any(h.rule.action == "refuse" for h in hits):
            return self._refuse(decisions_for(self._hits + hits, "output"))
        cut = result.settled - start
        emit = redact(self._pending, folded, hits, cut) if cut > 0 else ""
        if cut > 0:
            self._context = (self._context + folded.text[:cut])[-_LOOKBEHIND_CHARS:]
            self._pending = self._pending[folded.origin(cut):]
            self._hits.extend(hits)
        return StreamCheck(emit, None, self.decisions if final else ())

    def _refuse(self, decisions: tuple[GuardDecision, ...]) -> StreamCheck:
        self.refusal = first_refusal(decisions)
        self.refusal_decisions = decisions
        self._pending = ""
        return StreamCheck("", self.refusal, decisions)
