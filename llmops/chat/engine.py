"""The one chat path of serving and evaluation: a conversation in, an answer (whole or streamed) out.

    input guardrails -> query rewrite -> retrieval -> answerability -> prompt with the history that fits
    -> generation -> output guardrails

`RagChain` does retrieval, the prompt budget and generation; this module adds what a conversation needs around it.
Evaluation runs `respond` over its eval set, the API runs `respond` or `stream` per request, so refusals, rewrites and
their costs are measured on the path that is served. A refusal is an answer too: its message, the policy that fired
and no sources.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Literal, Protocol, Sequence

from llmops.chat.conversation import Conversation
from llmops.chat.rewrite import QueryRewriter, Rewrite
from llmops.config import ChatConfig, PipelineConfig, SamplingConfig
from llmops.guardrails.pipeline import Guardrails
from llmops.index.retriever import Mode, SearchHit
from llmops.llm.client import Generation, StreamDelta
from llmops.rag.chain import RagChain
from llmops.rag.prompt import Prompt

__all__ = ["ChatEngine", "ChatReply", "ChatStream", "Refusal"]

RefusalKind = Literal["content_filter", "not_in_documents"]
Stage = Literal["input", "output", "retrieval"]


@dataclass(frozen=True)
class Refusal:
    kind: RefusalKind  # content_filter: a guardrail fired; not_in_documents: retrieval found nothing relevant
    policy: str  # the guardrail policy that fired, or "answerability"
    stage: Stage
    message: str  # what the user is told, in the conversation's language

    @property
    def finish_reason(self) -> str:
        return "content_filter" if self.kind == "content_filter" else "stop"


class Guard(Protocol):
    """What the engine needs of `llmops.guardrails` (its `Guardrails`)."""

    async def check_input(self, text: str, lang: str) -> Any: ...  # GuardOutcome: text, decisions, refusal, elapsed_s
    async def check_output(self, text: str, lang: str) -> Any: ...
    def output_stream(self, lang: str) -> Any: ...  # feed(text) / finish() -> StreamCheck: emit, refusal
    def refusal_message(self, decision: Any, lang: str) -> str: ...
    @property
    def moderates_streams(self) -> bool: ...  # a moderation model checks streamed output (once it is complete)
    async def moderate(self, text: str, stage: str) -> Any: ...  # GuardDecision | None


class AnswerabilityGate(Protocol):
    """What the engine needs of `llmops.chat.answerability`: is there anything relevant to answer from?"""

    async def assess(self, query: str) -> Any: ...  # AnswerabilityCheck: answerable, score, threshold
    def message(self, lang: str) -> str: ...


@dataclass(frozen=True)
class ChatReply:
    text: str
    finish_reason: str
    lang: str
    query: str  # what retrieval searched for (the rewrite of a follow-up)
    rewrite: Rewrite | None  # None when the input was refused before the rewrite
    sources: tuple[SearchHit, ...]  # the contexts the model saw ([1] is sources[0]); none for a refusal
    refusal: Refusal | None = None
    prompt: Prompt | None = None
    generation: Generation | None = None
    retrieval_s: float = 0.0
    guard_s: float = 0.0  # time in the guardrails, input and output
    decisions: tuple[Any, ...] = ()  # every guardrail decision (GuardDecision), allowed ones included
    question: str = ""  # the question as the input guardrails passed it (PII redacted): what a session keeps
    relevance: float | None = None  # best dense cosine of the query (the answerability score); None: refused before retrieval


@dataclass(eq=False)
class ChatStream:
    """A streamed answer: everything before generation is done; `deltas` yields the (checked) text. `refusal`,
    `decisions` and `guard_s` are final once `deltas` is exhausted (an output guardrail can fire mid-stream)."""

    lang: str
    query: str
    rewrite: Rewrite | None
    sources: tuple[SearchHit, ...]
    prompt: Prompt | None
    retrieval_s: float
    deltas: AsyncIterator[StreamDelta] = field(repr=False)
    refusal: Refusal | None = None
    guard_s: float = 0.0
    decisions: list[Any] = field(default_factory=list)
    question: str = ""  # as the input guardrails passed it (PII redacted)
    relevance: float | None = None  # as ChatReply.relevance


@dataclass(frozen=True)
class _Prepared:
    """A request that reached generation: its prompt and what led to it."""

    lang: str
    rewrite: Rewrite
    sources: tuple[SearchHit, ...]
    prompt: Prompt
    retrieval_s: float
    guard_s: float
    decisions: tuple[Any, ...]
    question: str
    relevance: float | None


class ChatEngine:
    def __init__(
        self,
        chain: RagChain,
        config: ChatConfig,
        *,
        guardrails: Guard | None = None,
        answerability: AnswerabilityGate | None = None,
    ):
        self.chain = chain
        self.config = config
        self.guardrails = guardrails
        self.answerability = answerability
        self.rewriter = QueryRewriter(chain.client, config, chain.prompts.config.fallback_language)

    @classmethod
    def from_config(cls, cfg: PipelineConfig, chain: RagChain) -> "ChatEngine":
        """The engine of a release (serving) or an eval run: the config's `chat` section around `chain`, the config's
        guardrails, and the answerability check with the threshold its index resolved (`enabled: false`: none)."""
        from llmops.chat.answerability import Answerability

        guardrails = Guardrails.from_config(cfg.guardrails) if cfg.guardrails.enabled else None
        answerability = Answerability.for_retriever(chain.retriever, cfg.answerability)
        return cls(chain, cfg.chat, guardrails=guardrails, answerability=answerability)

    @property
    def sampling(self) -> SamplingConfig:
        return self.chain.sampling

    # ------------------------------------------------------------------------------------------------ whole

    async def respond(
        self,
        conversation: Conversation,
        k: int | None = None,
        mode: Mode | None = None,
        sampling: SamplingConfig | None = None,
    ) -> ChatReply:
        sampling = sampling or self.chain.sampling
        prepared = await self._prepare(conversation, k, mode, sampling)
        if isinstance(prepared, ChatReply):
            return prepared
        (generation,) = await self.chain.client.agenerate([prepared.prompt.messages], sampling)
        text, guard_s, decisions = generation.text.strip(), prepared.guard_s, list(prepared.decisions)
        if self.guardrails is not None:
            outcome = await self.guardrails.check_output(text, prepared.lang)
            guard_s += outcome.elapsed_s
            decisions.extend(outcome.decisions)
            if outcome.refusal is not None:
                refusal = self._guard_refusal(outcome.refusal, "output", prepared.lang)
                return self._refused(refusal, prepared.lang, prepared.rewrite, prepared.retrieval_s, guard_s,
                                     decisions, question=prepared.question, prompt=prepared.prompt,
                                     generation=generation, relevance=prepared.relevance)
            text = outcome.text
        return ChatReply(
            text=text,
            relevance=prepared.relevance,
            finish_reason=generation.finish_reason or "stop",
            lang=prepared.lang,
            query=prepared.rewrite.query,
            rewrite=prepared.rewrite,
            sources=prepared.sources,
            prompt=prepared.prompt,
            generation=generation,
            retrieval_s=prepared.retrieval_s,
            guard_s=guard_s,
            decisions=tuple(decisions),
            question=prepared.question,
        )

    # ------------------------------------------------------------------------------------------------ stream

    async def stream(
        self,
        conversation: Conversation,
        k: int | None = None,
        mode: Mode | None = None,
        sampling: SamplingConfig | None = None,
    ) -> ChatStream:
        """Everything up to generation now; the answer when `deltas` is iterated (nothing is sent to the model
        before). A refused request streams its message as one delta."""
        sampling = sampling or self.chain.sampling
        prepared = await self._prepare(conversation, k, mode, sampling)
        if isinstance(prepared, ChatReply):
            reply = prepared
            return ChatStream(
                lang=reply.lang, query=reply.query, rewrite=reply.rewrite, sources=(), prompt=None,
                retrieval_s=reply.retrieval_s, deltas=_one(StreamDelta(reply.text, reply.finish_reason, 0, 0)),
                refusal=reply.refusal, guard_s=reply.guard_s, decisions=list(reply.decisions), question=reply.question,
                relevance=reply.relevance,
            )
        stream = ChatStream(
            lang=prepared.lang, query=prepared.rewrite.query, rewrite=prepared.rewrite, sources=prepared.sources,
            prompt=prepared.prompt, retrieval_s=prepared.retrieval_s, deltas=_none(),
            guard_s=prepared.guard_s, decisions=list(prepared.decisions), question=prepared.question,
            relevance=prepared.relevance,
        )
        deltas = self.chain.client.astream_deltas(prepared.prompt.messages, sampling)
        stream.deltas = deltas if self.guardrails is None else self._checked(deltas, stream)
        return stream

    async def _checked(self, deltas: AsyncIterator[StreamDelta], stream: ChatStream) -> AsyncIterator[StreamDelta]:
        """The model's deltas through the output guardrails as they arrive: text that could still become a match is
        held back; a refusal ends the stream at once (the model stops generating). A moderation model, which needs
        the whole answer, judges it before the finishing delta: a refusal then ends the stream as content_filter."""
        guard = self.guardrails.output_stream(stream.lang)
        emitted: list[str] = []
        try:
            async for delta in deltas:
                started = time.perf_counter()
                checks = [guard.feed(delta.text)] if delta.text else []
                if delta.finish_reason is not None:
                    checks.append(guard.finish())
                stream.guard_s += time.perf_counter() - started
                text = "".join(c.emit for c in checks)
                for check in checks:
                    stream.decisions.extend(getattr(check, "decisions", ()))
                refusal = next((c.refusal for c in checks if c.refusal is not None), None)
                if refusal is None and delta.finish_reason is not None and self.guardrails.moderates_streams:
                    refusal = await self._moderate_stream("".join(emitted) + text, stream)
                if refusal is not None:
                    stream.refusal = self._guard_refusal(refusal, "output", stream.lang)
                    yield StreamDelta(text, "content_filter", delta.prompt_tokens, delta.completion_tokens)
                    return
                if text or delta.finish_reason is not None:
                    emitted.append(text)
                    yield replace(delta, text=text)
        finally:
            await deltas.aclose()

    async def _moderate_stream(self, answer: str, stream: ChatStream) -> Any:
        started = time.perf_counter()
        verdict = await self.guardrails.moderate(answer, "output")
        stream.guard_s += time.perf_counter() - started
        if verdict is None:
            return None
        stream.decisions.append(verdict)
        return verdict if verdict.action == "refuse" else None

    # ------------------------------------------------------------------------------------------------ steps

    async def _prepare(
        self, conversation: Conversation, k: int | None, mode: Mode | None, sampling: SamplingConfig
    ) -> _Prepared | ChatReply:
        lang = self.chain.prompts.template_for(conversation.question)[0]
        guard_s, decisions = 0.0, []
        if self.guardrails is not None:
            outcome = await self.guardrails.check_input(conversation.question, lang)
            guard_s += outcome.elapsed_s
            decisions.extend(outcome.decisions)
            if outcome.refusal is not None:
                refusal = self._guard_refusal(outcome.refusal, "input", lang)
                return self._refused(refusal, lang, None, 0.0, guard_s, decisions, question=outcome.text)
            conversation = replace(conversation, question=outcome.text)  # redacted: the model never sees the PII
        rewrite = await self.rewriter.rewrite(conversation, lang)
        hits, retrieval_s = await self.chain.aretrieve(rewrite.query, k, mode)
        # The best dense cosine of the query against the index: the answerability score, and what the request log
        # and the eval samples record for the monitor's drift check, measured the same way with the check off.
        if self.answerability is not None:
            check = await self.answerability.assess(rewrite.query)
            relevance = check.score
            if not check.answerable:
                refusal = Refusal("not_in_documents", "answerability", "retrieval", self.answerability.message(lang))
                return self._refused(refusal, lang, rewrite, retrieval_s, guard_s, decisions,
                                     question=conversation.question, relevance=relevance)
        else:
            (score,) = await asyncio.to_thread(self.chain.retriever.best_dense_similarity, [rewrite.query])
            relevance = float(score)
        history = [t.message() for t in conversation.recent(self.config.max_history_turns)]
        prompt = await asyncio.to_thread(
            self.chain.fit_prompt, conversation.question, hits, sampling, history, self.config.history_budget_fraction
        )
        return _Prepared(
            lang, rewrite, prompt.contexts, prompt, retrieval_s, guard_s, tuple(decisions), conversation.question,
            relevance,
        )

    def _guard_refusal(self, decision: Any, stage: Stage, lang: str) -> Refusal:
        return Refusal("content_filter", decision.policy, stage, self.guardrails.refusal_message(decision, lang))

    @staticmethod
    def _refused(
        refusal: Refusal,
        lang: str,
        rewrite: Rewrite | None,
        retrieval_s: float,
        guard_s: float,
        decisions: Sequence[Any],
        *,
        question: str,
        prompt: Prompt | None = None,
        generation: Generation | None = None,
        relevance: float | None = None,
    ) -> ChatReply:
        return ChatReply(
            text=refusal.message,
            finish_reason=refusal.finish_reason,
            lang=lang,
            query=rewrite.query if rewrite else "",
            rewrite=rewrite,
            sources=(),
            refusal=refusal,
            prompt=prompt,
            generation=generation,
            retrieval_s=retrieval_s,
            guard_s=guard_s,
            decisions=tuple(decisions),
            question=question,
            relevance=relevance,
        )


async def _one(delta: StreamDelta) -> AsyncIterator[StreamDelta]:
    yield delta


async def _none() -> AsyncIterator[StreamDelta]:
    return
    yield  # an async generator that yields nothing
