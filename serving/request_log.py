"""Serving's hook into the request log (`llmops/requestlog/`): one `RequestLogger` per app, `request(...)` for every
answered chat request (whole, streamed, refused, cut short), `feedback(...)` for every rating.

Only the record is built on the request path; `RequestLogWriter.submit` queues it and a background thread writes
it. Nothing here raises into a request: a record that cannot be built is logged and counted as dropped. What is
logged is what the client was shown: sources relative to their corpus (`public_source`), the question as the input
guardrails passed it (PII redacted), guardrail decisions without the matched text; never a key, path or backend URL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

from llmops.config import PipelineConfig
from llmops.requestlog.record import (
    FeedbackRecord,
    LoggedGuardDecision,
    LoggedSource,
    RequestLatency,
    RequestRecord,
)
from llmops.requestlog.writer import RequestLogWriter
from serving.metrics import ServingMetrics
from serving.protocol import Source
from serving.release import ReleaseHolder, ReleaseState

__all__ = ["RequestLogger", "RequestTiming"]

log = logging.getLogger("llmops.serving")

CANCELLED = "cancelled"  # finish_reason of a stream the client closed before its end
FAILED = "error"  # finish_reason of a stream that failed after its first byte


@dataclass(frozen=True)
class RequestTiming:
    """When a request arrived (Unix s) and its latency split, in milliseconds."""

    arrived: float
    retrieval_ms: float
    total_ms: float
    ttft_ms: float | None = None


class RequestLogger:
    """`writer` None: no request log (`monitoring.request_log.path` unset); every call returns at once."""

    def __init__(self, writer: RequestLogWriter | None, holder: ReleaseHolder | None = None, model: str = "rag"):
        self.writer = writer
        self.holder = holder
        self.model = model

    @classmethod
    def open(cls, config: PipelineConfig, holder: ReleaseHolder, metrics: ServingMetrics) -> "RequestLogger":
        settings = config.monitoring.request_log
        if not settings.path:
            return cls(None)
        writer = RequestLogWriter(
            settings, on_drop=metrics.request_log_dropped.inc, on_write_error=metrics.request_log_write_errors.inc
        )
        log.info("request log: writing to %s", settings.path)
        return cls(writer, holder, config.serving.model_name)

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def request(
        self,
        *,
        answer_id: str,
        state: ReleaseState,
        reply: Any,  # ChatReply or ChatStream: lang, query, question, relevance, refusal, decisions
        stream: bool,
        session_id: str | None,
        mode: str,
        sources: Sequence[Source],
        answer: str,
        finish_reason: str,
        timing: RequestTiming,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        if self.writer is None:
            return
        try:
            refusal = reply.refusal
            record = RequestRecord(
                response_id=answer_id, time=timing.arrived, model=self.model, release=state.release_id,
                index_version=state.retriever.version, session_id=session_id, stream=stream, lang=reply.lang,
                question=reply.question, retrieval_query=reply.query, mode=mode,
                sources=tuple(LoggedSource(chunk_id=s.chunk_id, doc_id=s.doc_id, source=s.source, score=s.score)
                              for s in sources),
                relevance=reply.relevance, answer=answer, finish_reason=finish_reason,
                refusal_kind=refusal.kind if refusal else None, refusal_policy=refusal.policy if refusal else None,
                latency=RequestLatency(retrieval_ms=round(timing.retrieval_ms, 3), total_ms=round(timing.total_ms, 3),
                                       ttft_ms=None if timing.ttft_ms is None else round(timing.ttft_ms, 3)),
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                guardrails=tuple(LoggedGuardDecision(stage=d.stage, policy=d.policy, action=d.action, detail=d.detail)
                                 for d in reply.decisions),
            )
        except Exception:  # noqa: BLE001 - a bug here must not fail the answer; it is logged and counted
            log.exception("request log: could not build the record of %s", answer_id)
            self.writer.drop()
            return
        self.writer.submit(record)

    def feedback(self, response_id: str, rating: str, comment: str | None) -> None:
        """A rating the session store accepted. The comment goes through the served release's input checks first
        (PII redacted as in questions); one those checks refuse is logged as withheld."""
        if self.writer is None:
            return
        try:
            record = FeedbackRecord(response_id=response_id, time=time.time(), rating=rating,
                                    comment=self._redacted(comment))
        except Exception:  # noqa: BLE001
            log.exception("request log: could not build the feedback record of %s", response_id)
            self.writer.drop()
            return
        self.writer.submit(record)

    def _redacted(self, comment: str | None) -> str | None:
        state = self.holder.current if self.holder is not None else None
        guardrails = state.engine.guardrails if state is not None else None
        if not comment or guardrails is None or not guardrails.cfg.enabled:
            return comment
        text, _, refusal = guardrails.builtin.check(comment, "input")
        return f"[withheld: {refusal.policy}]" if refusal is not None else text

    async def aclose(self) -> None:
        """Drain and finish the open file (graceful shutdown loses nothing); off the event loop, it may wait on
        the store."""
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)
