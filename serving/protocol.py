"""Request and response models of the RAG API, and its one error shape.

Chat completions follow OpenAI's schema, so the official clients work unchanged; the RAG extras are `k` and `mode`
in the request, and `sources` (the numbered contexts the model saw: [1] is sources[0]) in the response and in the
final stream chunk. `system_fingerprint` carries the release id that answered. Unknown request fields are errors,
as in OpenAI's API: a misspelt parameter must not be ignored silently.
"""

from __future__ import annotations

import time
import uuid
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmops.chat.conversation import Conversation
from llmops.index.retriever import SearchHit

__all__ = [
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "Choice",
    "ChunkChoice",
    "DeltaMessage",
    "ErrorInfo",
    "ErrorResponse",
    "FeedbackRequest",
    "FeedbackResponse",
    "ModelCard",
    "ModelList",
    "RefusalInfo",
    "ReloadResponse",
    "ResponseMessage",
    "RouteReload",
    "SearchRequest",
    "SearchResponse",
    "SessionDeleted",
    "SessionResponse",
    "SessionTurn",
    "Source",
    "StreamOptions",
    "Usage",
    "completion_id",
    "public_source",
]

RetrievalMode = Literal["dense", "lexical", "hybrid"]


INT64_MAX = 2**63 - 1  # the backends' seed is a 64-bit integer
MAX_FEEDBACK_COMMENT_CHARS = 2000
SESSION_ID_PATTERN = r"^sess_[0-9a-f]{32}$"  # serving/sessions/store.py makes them
RESPONSE_ID_PATTERN = r"^chatcmpl-[0-9a-f]{32}$"  # completion_id()'s format: anything else is no answer of ours


class _Request(BaseModel):
    # NaN and infinities are valid Python JSON but no valid parameter value.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _valid_text(cls, value):
        """Every string is text: an unpaired surrogate ("\\ud800" is valid JSON) cannot be encoded, tokenized or
        embedded, and would fail deep inside the backend instead of here."""
        for text in _strings(value):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("contains an unpaired UTF-16 surrogate (\\ud800-\\udfff), which is not text: "
                                 "send valid Unicode") from None
        return value


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------------------------------------- errors


class ErrorInfo(_Response):
    message: str
    type: str = Field(description="invalid_request_error, not_found_error, authentication_error, ...")
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(_Response):
    """The only error body the API returns, whatever went wrong (OpenAI's and vLLM's shape)."""

    error: ErrorInfo


# ------------------------------------------------------------------------------------------------------- requests


class TextPart(_Request):
    type: Literal["text"]
    text: str


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(_Request):
    include_usage: bool = False


class ChatCompletionRequest(_Request):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1, description="OpenAI's newer name for max_tokens")
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-INT64_MAX - 1, le=INT64_MAX)
    n: Literal[1] = Field(default=1, description="one answer per request")
    user: str | None = Field(default=None, description="accepted for compatibility; not used")
    # RAG extras
    k: int | None = Field(default=None, ge=1, description="contexts to retrieve; at most serving.max_k")
    mode: RetrievalMode | None = Field(default=None, description="retrieval mode; default: the index's")
    session_id: str | None = Field(
        default=None, pattern=SESSION_ID_PATTERN,
        description="continue this stored conversation: its turns go before `messages`, and this exchange is added",
    )
    store: bool | None = Field(default=None, description="OpenAI's `store`: true starts a stored conversation")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if not all(stops):
            raise ValueError("a stop sequence must not be empty")
        return stops

    def conversation(self) -> Conversation:
        """The last user message is the question; the user and assistant messages before it are the history."""
        return Conversation.from_messages((m.role, m.text()) for m in self.messages)


class SearchRequest(_Request):
    query: str = Field(min_length=1)
    k: int | None = Field(default=None, ge=1, description="hits to return; at most serving.max_k")
    mode: RetrievalMode | None = None
    model: str | None = Field(default=None, description="a served model (route), whose release is searched; None = the default")

    @field_validator("query")
    @classmethod
    def _query_has_text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("the query is only whitespace: send the text to search for")
        return v


class FeedbackRequest(_Request):
    """A rating of one answer (its response `id`), by the key that got it."""

    response_id: str = Field(pattern=RESPONSE_ID_PATTERN, description="the `id` of the rated chat completion")
    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=MAX_FEEDBACK_COMMENT_CHARS)


# ------------------------------------------------------------------------------------------------------ responses


class Source(_Response):
    """One retrieved chunk. `index` is its citation number in the prompt ([1], [2], ...)."""

    index: int
    rank: int
    score: float
    chunk_id: str
    doc_id: str
    source: str
    title: str
    text: str
    start: int
    end: int

    @classmethod
    def from_hit(cls, index: int, hit: SearchHit, roots: Sequence[str] = ()) -> "Source":
        """`roots`: the corpus sources' paths; `source` is given relative to them (`public_source`)."""
        return cls(index=index, **{**hit.to_dict(), "source": public_source(hit.source, roots)})


def public_source(source: str, roots: Sequence[str]) -> str:
    """A chunk's source as clients see it: relative to the corpus source it came from (`runbooks/failover.md`,
    `dev.json#article=3,paragraph=1`), so the server's folders and buckets stay private; a source under no known root
    keeps only its last path segment. Public web pages (http/https) are shown as they are."""
    if source.startswith(("https://", "http://")):
        return source
    for root in sorted((r.rstrip("/") for r in roots if r.strip("/")), key=len, reverse=True):
        rest = source[len(root):] if source.startswith(root) else None
        if rest and rest[0] == "/":
            return rest[1:]
        if rest and rest[0] == "#":
            return root.rsplit("/", 1)[-1] + rest
    return source.rsplit("/", 1)[-1]


def public_model(model: str | None) -> str | None:
    """A model as clients see it: a Hub id as it is, a local path by its folder's name (`tiny-llm`), so the
    server's folders stay private."""
    if model is None or not model.startswith(("/", "./", "../")) and "\\" not in model:
        return model
    return model.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


class RefusalInfo(_Response):
    """Why an answer was withheld: a guardrail fired (`content_filter`) or the documents do not answer the question
    (`not_in_documents`). The message is what the user is told; it is also the answer's content."""

    kind: Literal["content_filter", "not_in_documents"]
    policy: str = Field(description="the guardrail policy that fired, or `answerability`")
    stage: Literal["input", "output", "retrieval"]
    message: str


class Usage(_Response):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(_Response):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(_Response):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletionResponse(_Response):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    system_fingerprint: str = Field(description="the release that answered")
    choices: list[Choice]
    usage: Usage | None = None
    sources: list[Source]
    refusal: RefusalInfo | None = Field(default=None, description="set when the answer was withheld")
    retrieval_query: str | None = Field(default=None, description="what retrieval searched for (a follow-up's rewrite)")
    session_id: str | None = Field(default=None, description="the stored conversation this answer was added to")


class DeltaMessage(_Response):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(_Response):
    index: int = 0
    delta: DeltaMessage
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(_Response):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    sources: list[Source] | None = Field(default=None, description="only in the chunk that finishes the answer")
    refusal: RefusalInfo | None = Field(default=None, description="only in the chunk that finishes the answer")
    retrieval_query: str | None = Field(default=None, description="only in the chunk that finishes the answer")
    session_id: str | None = Field(default=None, description="only in the chunk that finishes the answer")


class ModelCard(_Response):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llmops"
    release: str | None = Field(default=None, description="release id served under this name now")
    kind: Literal["release", "endpoint"] = Field(
        default="release", description="release: the release's own model; endpoint: an external provider generates "
        "behind this release's retriever and prompt"
    )
    index_version: str | None = None
    base_model: str | None = None
    adapter_version: str | None = None


class ModelList(_Response):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class SearchResponse(_Response):
    object: Literal["search.result"] = "search.result"
    release: str
    index_version: str
    mode: RetrievalMode
    query: str
    retrieval_ms: float
    hits: list[Source]


class RouteReload(_Response):
    changed: bool
    release: str | None
    previous: str | None


class ReloadResponse(RouteReload):
    """The default route's reload (the fields), and every route's."""

    routes: dict[str, RouteReload] = Field(default_factory=dict)


class SessionTurn(_Response):
    role: Literal["user", "assistant"]
    content: str
    response_id: str | None = Field(default=None, description="an assistant turn's answer id (for /v1/feedback)")
    created: float


class SessionResponse(_Response):
    """A stored conversation (`GET /v1/sessions/{id}`); times are Unix seconds."""

    id: str
    object: Literal["session"] = "session"
    created: float
    updated: float
    expires_at: float
    turns: list[SessionTurn]
    dropped_turns: int = Field(description="the oldest turns dropped by serving.sessions' max_turns / max_chars")


class SessionDeleted(_Response):
    id: str
    object: Literal["session.deleted"] = "session.deleted"
    deleted: Literal[True] = True


class FeedbackResponse(_Response):
    object: Literal["feedback"] = "feedback"
    response_id: str
    rating: Literal["up", "down"]


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"

