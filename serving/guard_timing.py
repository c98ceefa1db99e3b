"""`TimedGuardrails`: a release's guardrails with each stage's time observed (`llmops_guardrail_duration_seconds`).

The engine reports the guardrails' time of a request as one sum; the wrapper sees the input check, the output check
and a stream's checks apart. Everything else is the wrapped object's.
"""

from __future__ import annotations

import time
from typing import Any, Callable

__all__ = ["TimedGuardrails"]

Observe = Callable[[str, float], None]  # (stage, seconds)


class TimedGuardrails:
    def __init__(self, inner: Any, observe: Observe):
        self.inner = inner
        self._observe = observe

    async def check_input(self, text: str, lang: str):
        outcome = await self.inner.check_input(text, lang)
        self._observe("input", outcome.elapsed_s)
        return outcome

    async def check_output(self, text: str, lang: str):
        outcome = await self.inner.check_output(text, lang)
        self._observe("output", outcome.elapsed_s)
        return outcome

    def output_stream(self, lang: str) -> "_TimedStream":
        return _TimedStream(self.inner.output_stream(lang), self._observe)

    def refusal_message(self, decision: Any, lang: str) -> str:
        return self.inner.refusal_message(decision, lang)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _TimedStream:
    """Sums a stream's checks and observes the sum once: when the answer is complete or refused."""

    def __init__(self, inner: Any, observe: Observe):
        self.inner = inner
        self._observe = observe
        self._spent = 0.0
        self._reported = False

    def feed(self, delta: str):
        return self._timed(self.inner.feed, delta)

    def finish(self):
        check = self._timed(self.inner.finish)
        self._report()
        return check

    def _timed(self, call, *args):
        started = time.perf_counter()
        check = call(*args)
        self._spent += time.perf_counter() - started
        if check.refusal is not None:
            self._report()
        return check

    def _report(self) -> None:
        if not self._reported:
            self._reported = True
            self._observe("output", self._spent)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
