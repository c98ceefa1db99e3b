"""What one line of the request log holds: a `RequestRecord` per answered request, a `FeedbackRecord` per rating.

Lines are JSON objects, one per line, tagged by `kind`. Feedback arrives after its answer and is appended as its own
line (the log is append-only); readers join it to the request by `response_id`. Questions are stored as the input
guardrails passed them (PII redacted); no API key, server path or backend URL is ever logged.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmops.errors import LLMOpsError

__all__ = [
    "FeedbackRecord",
    "LogRecord",
    "LoggedGuardDecision",
    "LoggedSource",
    "REQUEST_LOG_SCHEMA_VERSION",
    "RequestLatency",
    "RequestLogError",
    "RequestRecord",
    "parse_log_line",
]

REQUEST_LOG_SCHEMA_VERSION = 1


class RequestLogError(LLMOpsError):
    """A request log line that this llmops cannot read."""


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = REQUEST_LOG_SCHEMA_VERSION


class LoggedSource(BaseModel):
    """A retrieved chunk the answer was built from ([1] is the first)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    chunk_id: str
    doc_id: str
    source: str = Field(description="relative to its corpus source (public_source), never a server path")
    score: float = Field(description="the retriever's score for the mode used (fused score for hybrid)")


class LoggedGuardDecision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    stage: str
    policy: str
    action: str
    detail: str = ""


class RequestLatency(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    retrieval_ms: float
    ttft_ms: float | None = Field(default=None, description="to the first streamed token; None when not streamed")
    total_ms: float


class RequestRecord(_Record):
    kind: Literal["request"] = "request"
    response_id: str = Field(description="the answer id (`chatcmpl-...`): feedback refers to it")
    time: float = Field(description="Unix seconds when the request arrived")
    model: str = Field(description="the served model name (route) that answered")
    release: str
    index_version: str
    session_id: str | None = None
    stream: bool = False
    lang: str
    question: str = Field(description="as the input guardrails passed it (PII redacted)")
    retrieval_query: str = Field(description="what retrieval searched for (a follow-up's rewrite)")
    mode: str = Field(description="retrieval mode: dense, lexical or hybrid")
    sources: tuple[LoggedSource, ...] = ()
    relevance: float | None = Field(
        default=None, description="best dense cosine of the query against the index (the answerability score)"
    )
    answer: str = Field(description="the answer text, or the refusal message when withheld")
    finish_reason: str
    refusal_kind: str | None = Field(default=None, description="content_filter | not_in_documents; None: answered")
    refusal_policy: str | None = None
    latency: RequestLatency
    prompt_tokens: int = 0
    completion_tokens: int = 0
    guardrails: tuple[LoggedGuardDecision, ...] = ()


class FeedbackRecord(_Record):
    kind: Literal["feedback"] = "feedback"
    response_id: str
    time: float
    rating: Literal["up", "down"]
    comment: str | None = None


LogRecord = RequestRecord | FeedbackRecord
_KINDS: dict[str, type[RequestRecord] | type[FeedbackRecord]] = {"request": RequestRecord, "feedback": FeedbackRecord}


def parse_log_line(line: str, *, where: str) -> LogRecord:
    """One log line as its record, or `RequestLogError` naming `where` (file:line) and what is wrong."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as e:
        raise RequestLogError(f"{where}: not valid JSON ({e.msg})") from None
    kind = raw.get("kind") if isinstance(raw, dict) else None
    model = _KINDS.get(kind)  # type: ignore[arg-type]
    if model is None:
        raise RequestLogError(f"{where}: unknown record kind {kind!r} (expected one of {sorted(_KINDS)})")
    if raw.get("schema_version") != REQUEST_LOG_SCHEMA_VERSION:
        raise RequestLogError(
            f"{where}: schema_version {raw.get('schema_version')!r}; this llmops reads {REQUEST_LOG_SCHEMA_VERSION}. "
            "Read it with the llmops version that wrote it."
        )
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise RequestLogError(f"{where}: not a {kind} record: {e}") from None
