"""The RAG API's logic, apart from HTTP: chat completions (whole or streamed), search and the model list.

`RagService` receives its state through a `RouteTable` (`serving/routing.py`): the request's `model` picks the route,
whose `ReleaseHolder` holds its release (retriever, RAG chain, generation client). Each request takes its route's
current release once and keeps it until its last byte; the
release is handed back when the request ends, however it ends (a client that disconnects mid-stream included).
Errors are raised in the `llmops.errors` vocabulary; `serving/app.py` maps them to HTTP statuses.
"""

from __future__ import annotations

import functools
import json
import time
from typing import AsyncIterator, Awaitable, Callable, TypeVar

from llmops.config import SamplingConfig, ServingConfig
from llmops.errors import (
    BackendUnavailableError,
    InvalidRequestError,
    ModelNotFoundError,
    RateLimitedError,
)
from llmops.llm.client import StreamDelta
from llmops.chat.conversation import Conversation
from llmops.chat.engine import ChatStream, Refusal
from serving.audit import GuardrailAudit
from serving.auth import ANONYMOUS
from serving.errors import error_info
from serving.metrics import ServingMetrics
from serving.protocol import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChunkChoice,
    DeltaMessage,
    ErrorResponse,
    ModelCard,
    ModelList,
    RefusalInfo,
    ResponseMessage,
    SearchRequest,
    SearchResponse,
    Source,
    Usage,
    completion_id,
    public_model,
)
from serving.release import ReleaseState
from serving.request_log import CANCELLED, FAILED, RequestLogger, RequestTiming
from serving.routing import Route, RouteTable
from serving.sessions.memory import ChatMemory
from serving.sessions.store import DisabledSessionStore, SessionStore

__all__ = ["ChunkFrames", "RagService", "SSEStream", "sse_frame"]

T = TypeVar("T")


def _json(payload) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def sse_frame(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else _json(payload)
    return f"data: {data}\n\n".encode()


class ChunkFrames:
    """The SSE frames of one streamed completion, as `ChatCompletionChunk.model_dump(exclude_none=True)` renders
    them. A token's frame is the constant head, the text as a JSON string and a constant tail: building a pydantic
    model per token cost more than everything else the API does per token (the rare frames still go through it)."""

    def __init__(self, completion_id: str, created: int, model: str, release_id: str):
        self._fields = dict(id=completion_id, created=created, model=model, system_fingerprint=release_id)
        # A token's frame rendered once with empty text; the text's JSON string goes where the `""` is.
        head, _, tail = self._body(DeltaMessage(content="")).rpartition('""')
        self._content_head = f"data: {head}".encode()
        self._content_tail = f"{tail}\n\n".encode()

    def _body(self, delta: DeltaMessage, finish_reason: str | None = None, **extra) -> str:
        chunk = ChatCompletionChunk(
            **self._fields, choices=[ChunkChoice(delta=delta, finish_reason=finish_reason)], **extra
        )
        return _json(chunk.model_dump(mode="json", exclude_none=True))

    def role(self) -> bytes:
        return sse_frame(self._body(DeltaMessage(role="assistant", content="")))

    def content(self, text: str) -> bytes:
        return self._content_head + _json(text).encode() + self._content_tail

    def finish(
        self, finish_reason: str, sources: list[Source], refusal: RefusalInfo | None = None,
        retrieval_query: str | None = None, session_id: str | None = None,
    ) -> bytes:
        return sse_frame(self._body(DeltaMessage(), finish_reason, sources=sources, refusal=refusal,
                                    retrieval_query=retrieval_query, session_id=session_id))

    def usage(self, usage: Usage) -> bytes:
        """OpenAI's shape: one last chunk with no choices and the usage."""
        body = ChatCompletionChunk(**self._fields, choices=[], usage=usage)
        return sse_frame(body.model_dump(mode="json", exclude_none=True))


class RagService:
    def __init__(
        self,
        routes: RouteTable,
        config: ServingConfig,
        metrics: ServingMetrics | None = None,
        audit: GuardrailAudit | None = None,
        sessions: SessionStore | None = None,
        request_log: RequestLogger | None = None,
    ):
        self.routes = routes
        self.config = config
        self.metrics = metrics or ServingMetrics()
        self.audit = audit or GuardrailAudit()
        self.memory = ChatMemory(sessions or DisabledSessionStore())
        self.request_log = request_log or RequestLogger(None)
        self.started_at = int(time.time())

    # ------------------------------------------------------------------------------------------------- models

    def models(self, owner: str = ANONYMOUS) -> ModelList:
        """Every route the caller may use, with the release it serves (an endpoint route: the release whose
        retriever and prompt it uses; its provider's URL and model stay private)."""
        return ModelList(data=[self._card(route) for route in self.routes.visible(owner)])

    def _card(self, route: Route) -> ModelCard:
        state = route.holder.current
        release = state.release if state else None
        own_model = route.kind == "release" and release is not None
        return ModelCard(
            id=route.name,
            created=int(state.loaded_at) if state else self.started_at,
            release=release.release if release else None,
            kind=route.kind,
            index_version=release.index_version if release else None,
            base_model=public_model(release.base_model) if own_model else None,
            adapter_version=release.adapter_version if own_model else None,
        )

    def _admit(self, route: Route, owner: str) -> None:
        """Take the request's token from its route's rate limit (429 over it) and count it."""
        if route.limiter is not None:
            try:
                route.limiter.check(owner)
            except RateLimitedError:
                self.metrics.route_rate_limited.labels(route.name).inc()
                raise
        self.metrics.route_requests.labels(route.name).inc()

    # ------------------------------------------------------------------------------------------------- search

    async def search(self, request: SearchRequest, owner: str = ANONYMOUS) -> SearchResponse:
        route = self.routes.resolve(request.model, owner)
        self._check_k(request.k)
        self._admit(route, owner)
        async with route.holder.use() as state:
            self._check_mode(state, request.mode)
            hits, retrieval_s = await state.chain.aretrieve(request.query, request.k, request.mode)
            mode = request.mode or state.chain.mode
            self.metrics.retrieval.labels(mode).observe(retrieval_s)
            return SearchResponse(
                release=state.release_id,
                index_version=state.retriever.version,
                mode=mode,
                query=request.query,
                retrieval_ms=round(retrieval_s * 1000, 3),
                hits=_public_sources(state, hits),
            )

    # ------------------------------------------------------------------------------------------------- chat

    async def chat(self, request: ChatCompletionRequest, owner: str = ANONYMOUS) -> ChatCompletionResponse:
        """`owner`: the caller's key (its hash), whose session it continues and whose answer it records."""
        arrived, started = time.time(), time.perf_counter()
        route = self.routes.resolve(request.model, owner)
        conversation = self._check_chat(request)
        self._admit(route, owner)
        opened = await self.memory.open(owner, conversation, request.session_id, bool(request.store))
        async with route.holder.use() as state:
            self._check_mode(state, request.mode)
            sampling = self._sampling(state, request)
            reply = await self._on_backend(
                state, lambda: state.engine.respond(opened.conversation, request.k, request.mode, sampling)
            )
            g = reply.generation
            prompt_tokens, completion_tokens = (g.prompt_tokens, g.completion_tokens) if g else (0, 0)
            mode = request.mode or state.chain.mode
            self._observe(mode, reply.retrieval_s, g.latency_s if g else None, prompt_tokens, completion_tokens)
            answer_id = completion_id()
            self._account(answer_id, state.release_id, reply.decisions)
            sources = _public_sources(state, reply.sources)
            self.request_log.request(
                answer_id=answer_id, state=state, reply=reply, stream=False, session_id=opened.session_id, mode=mode,
                model=route.name, sources=sources, answer=reply.text, finish_reason=reply.finish_reason,
                timing=RequestTiming(arrived, reply.retrieval_s * 1000, (time.perf_counter() - started) * 1000),
                prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            )
            # The question as the guardrails passed it: a session keeps no PII the input checks redacted.
            await self.memory.remember(owner, opened.session_id, reply.question, reply.text, answer_id,
                                       state.release_id)
            return ChatCompletionResponse(
                id=answer_id,
                model=route.name,
                system_fingerprint=state.release_id,
                choices=[Choice(message=ResponseMessage(content=reply.text), finish_reason=reply.finish_reason)],
                usage=Usage(
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    total_tokens=prompt_tokens + completion_tokens,
                ),
                sources=sources,
                refusal=_refusal_info(reply.refusal),
                retrieval_query=reply.query or None,
                session_id=opened.session_id,
            )

    async def open_stream(self, request: ChatCompletionRequest, owner: str = ANONYMOUS) -> "SSEStream":
        """Validate, retrieve, and wait for the backend's first delta; then return the SSE frames.

        Everything that can fail before the first token fails here, while an HTTP status can still say so (a
        backend that is down is a 503, not a 200 with an error inside). Later failures become an error event.
        """
        route = self.routes.resolve(request.model, owner)
        conversation = self._check_chat(request)
        self._admit(route, owner)
        arrived, started = time.time(), time.perf_counter()
        opened = await self.memory.open(owner, conversation, request.session_id, bool(request.store))
        holder = route.holder
        state = holder.acquire()
        try:
            self._check_mode(state, request.mode)
            sampling = self._sampling(state, request)

            async def first_delta() -> tuple[ChatStream, StreamDelta | None]:
                stream = await state.engine.stream(opened.conversation, request.k, request.mode, sampling)
                try:
                    return stream, await anext(stream.deltas, None)
                except BaseException:
                    await stream.deltas.aclose()
                    raise

            stream, first = await self._on_backend(state, first_delta)
        except BaseException:
            holder.release(state)
            raise
        mode = request.mode or state.chain.mode
        self.metrics.retrieval.labels(mode).observe(stream.retrieval_s)
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        done = _Once(lambda: holder.release(state))
        remember = functools.partial(self.memory.remember, owner, opened.session_id, stream.question)
        log_request = functools.partial(self.request_log.request, state=state, reply=stream, stream=True,
                                        session_id=opened.session_id, mode=mode, model=route.name)
        frames = self._frames(route.name, state, stream, first, (arrived, started), include_usage, done,
                              opened.session_id, remember, log_request)
        return SSEStream(frames, stream.deltas, done)

    async def _frames(
        self,
        model: str,
        state: ReleaseState,
        stream: ChatStream,
        first: StreamDelta | None,
        arrival: tuple[float, float],
        include_usage: bool,
        done: Callable[[], None],
        session_id: str | None,
        remember: Callable[[str, str, str], Awaitable[None]],
        log_request: Callable[..., None],
    ) -> AsyncIterator[bytes]:
        """The SSE frames; a completed stream is remembered (`remember(answer, answer_id, release)`) before
        `[DONE]`, so a client that saw `[DONE]` finds it in its session. `arrival`: (Unix s, perf_counter) when the
        request came. Every stream is logged at its end (`log_request`), one cut short with what was sent."""
        arrived, started = arrival
        answer_id = completion_id()
        frames = ChunkFrames(answer_id, int(time.time()), model, state.release_id)
        answer: list[str] = []
        generation_started = time.perf_counter()
        finish_reason, prompt_tokens, completion_tokens = None, None, None
        first_token_seen, ttft_s, logged_finish = False, None, CANCELLED
        deltas = stream.deltas
        try:
            yield frames.role()
            delta = first
            while delta is not None:
                if delta.text:
                    if not first_token_seen:
                        first_token_seen = True
                        ttft_s = time.perf_counter() - started
                        self.metrics.ttft.observe(ttft_s)
                    answer.append(delta.text)
                    yield frames.content(delta.text)
                finish_reason = delta.finish_reason or finish_reason
                prompt_tokens = delta.prompt_tokens if delta.prompt_tokens is not None else prompt_tokens
                if delta.completion_tokens is not None:
                    completion_tokens = delta.completion_tokens
                delta = await anext(deltas, None)
            sources = _public_sources(state, stream.sources)
            if stream.refusal is not None:
                finish_reason, sources = stream.refusal.finish_reason, []  # withheld: no sources to show
            logged_finish = finish_reason or "stop"
            yield frames.finish(finish_reason or "stop", sources, _refusal_info(stream.refusal), stream.query or None,
                                session_id)
            if include_usage and prompt_tokens is not None and completion_tokens is not None:
                yield frames.usage(Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                         total_tokens=prompt_tokens + completion_tokens))
            text = stream.refusal.message if stream.refusal is not None else "".join(answer).strip()
            await remember(text, answer_id, state.release_id)
            yield sse_frame("[DONE]")
            # no prompt: refused before generation (input guardrail, not in the documents), nothing was generated
            self._observe(None, stream.retrieval_s,
                          time.perf_counter() - generation_started if stream.prompt is not None else None,
                          prompt_tokens or 0, completion_tokens or 0)
        except Exception as e:  # noqa: BLE001 - whatever it is, the client must learn the stream failed
            # Headers are sent: the failure travels as an error event (what vLLM and OpenAI do); clients raise it.
            self.metrics.backend_errors.labels(type(e).__name__).inc()
            _, info = error_info(e)
            logged_finish = FAILED
            yield sse_frame(ErrorResponse(error=info).model_dump(mode="json"))
            yield sse_frame("[DONE]")
        finally:
            done()
            # Before the first await: a cancelled task would skip the rest of this block at it.
            self._account(answer_id, state.release_id, stream.decisions)  # a stream cut short: what was decided
            refused = stream.refusal is not None and logged_finish not in (CANCELLED, FAILED)
            log_request(
                answer_id=answer_id, sources=[] if stream.refusal is not None else _public_sources(state, stream.sources),
                answer=stream.refusal.message if refused else "".join(answer).strip(), finish_reason=logged_finish,
                timing=RequestTiming(arrived, stream.retrieval_s * 1000, (time.perf_counter() - started) * 1000,
                                     None if ttft_s is None else ttft_s * 1000),
                prompt_tokens=prompt_tokens or 0, completion_tokens=completion_tokens or 0,
            )
            await deltas.aclose()

    # ------------------------------------------------------------------------------------------------- helpers

    def _account(self, answer_id: str, release_id: str, decisions) -> None:
        """Count every guardrail decision and write it to the audit log."""
        for d in decisions:
            self.metrics.guardrail_decisions.labels(d.stage, d.policy, d.action).inc()
        self.audit.record(answer_id, release_id, decisions)

    async def _on_backend(self, state: ReleaseState, call: Callable[[], Awaitable[T]]) -> T:
        """Run a generation call; when the backend no longer knows the release's adapter (a restarted vLLM forgets
        adapters loaded at run time), register it again and retry once."""
        try:
            return await call()
        except ModelNotFoundError as e:
            self.metrics.backend_errors.labels("adapter_missing").inc()
            if state.reregister is None:
                raise BackendUnavailableError(f"the generation backend does not serve this release's model: {e}") from e
            try:
                await state.reregister()
                return await call()
            except ModelNotFoundError as again:
                raise BackendUnavailableError(
                    f"the generation backend does not serve adapter {state.adapter_name!r} of release "
                    f"{state.release_id}, even after registering it again: {again}"
                ) from again
        except BackendUnavailableError:
            self.metrics.backend_errors.labels("unavailable").inc()
            raise

    def _check_chat(self, request: ChatCompletionRequest) -> Conversation:
        self._check_k(request.k)
        conversation = request.conversation()
        if not conversation.question.strip():
            raise InvalidRequestError(
                "messages must contain a user message with text: its last one is the question that is answered",
                param="messages",
            )
        return conversation

    def _check_k(self, k: int | None) -> None:
        if k is not None and not 1 <= k <= self.config.max_k:
            raise InvalidRequestError(
                f"k must be between 1 and {self.config.max_k} (serving.max_k), got {k}", param="k", code="k_out_of_range"
            )

    @staticmethod
    def _check_mode(state: ReleaseState, mode: str | None) -> None:
        if mode in ("lexical", "hybrid") and state.retriever.manifest.lexical is None:
            raise InvalidRequestError(
                f"mode {mode!r} needs a lexical index, and the served index {state.retriever.version} has none: "
                "use mode 'dense'",
                param="mode",
            )

    @staticmethod
    def _sampling(state: ReleaseState, request: ChatCompletionRequest) -> SamplingConfig:
        update: dict = {}
        if request.temperature is not None:
            update["temperature"] = request.temperature
        if request.top_p is not None:
            update["top_p"] = request.top_p
        max_tokens = request.max_completion_tokens or request.max_tokens
        if max_tokens is not None:
            update["max_tokens"] = max_tokens
        if request.stop is not None:
            update["stop"] = tuple(request.stop)
        if request.seed is not None:
            update["seed"] = request.seed
        return state.chain.sampling.model_copy(update=update)

    def _observe(
        self, mode: str | None, retrieval_s: float, generation_s: float | None, prompt: int, completion: int
    ) -> None:
        """`generation_s` None: the answer was refused before generation, so the generation histogram skips it."""
        if mode is not None:
            self.metrics.retrieval.labels(mode).observe(retrieval_s)
        if generation_s is not None:
            self.metrics.generation.observe(generation_s)
        self.metrics.prompt_tokens.inc(prompt)
        self.metrics.completion_tokens.inc(completion)


def _public_sources(state: ReleaseState, hits) -> list[Source]:
    """The sources as clients see them: numbered from [1], relative to their corpus."""
    return [Source.from_hit(i, h, state.source_roots) for i, h in enumerate(hits, 1)]


def _refusal_info(refusal: Refusal | None) -> RefusalInfo | None:
    if refusal is None:
        return None
    return RefusalInfo(kind=refusal.kind, policy=refusal.policy, stage=refusal.stage, message=refusal.message)


class _Once:
    def __init__(self, fn: Callable[[], None]):
        self._fn: Callable[[], None] | None = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


class SSEStream:
    """The frames of one streamed answer. `aclose` ends it and hands the release back, also when it never started
    (a generator that was never iterated would not run its `finally`)."""

    def __init__(self, frames: AsyncIterator[bytes], deltas: AsyncIterator[StreamDelta], done: Callable[[], None]):
        self._frames = frames
        self._deltas = deltas
        self._done = done

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._frames

    async def aclose(self) -> None:
        try:
            await self._frames.aclose()
            await self._deltas.aclose()
        finally:
            self._done()
