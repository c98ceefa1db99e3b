"""The one RAG chain: Retriever -> prompt template (fitted to `llmops.rag.prompt.prompt_budget`) -> generation client.

Evaluation runs this chain over an eval set; the serving API runs it per request, whole or streamed (through the
client's `astream_deltas`). Nothing else builds prompts or calls the model, so the system that is measured is the
system that is served; fine-tuning formats its records with the same template and budget.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import AsyncIterator, Mapping, Sequence

from llmops.config import LLMConfig, PipelineConfig, SamplingConfig
from llmops.errors import ConfigError, ContextLengthError
from llmops.llm.client import Generation, GenerationClient, StreamDelta
from llmops.rag.retrieval_batcher import RetrievalBatcher
from llmops.rag.prompt import Prompt, PromptBuilder, chat_template_overhead, prompt_budget
from llmops.index.retriever import Mode, Retriever, SearchHit

__all__ = ["RagAnswer", "RagChain", "RagStream", "chat_template_overhead", "client_template_overhead"]


@dataclass(frozen=True)
class RagAnswer:
    question: str
    answer: str
    prompt: Prompt
    generation: Generation
    retrieval_s: float

    @property
    def sources(self) -> tuple[SearchHit, ...]:
        """The contexts the model saw, numbered as in the prompt ([1] is sources[0])."""
        return self.prompt.contexts


class RagChain:
    """Retrieval, the prompt fitted to `prompt_budget`, and generation: the same steps for a batch (evaluation), a
    request (serving, with its own sampling) and a stream."""

    def __init__(
        self,
        retriever: Retriever,
        client: GenerationClient,
        prompts: PromptBuilder,
        sampling: SamplingConfig,
        *,
        k: int,
        mode: Mode,
        max_model_len: int,
        template_overhead: int = 0,
        retrieval_batch_size: int = 1,
    ):
        """`retrieval_batch_size`: the most concurrent `aretrieve` questions searched together (1: one at a time)."""
        self.retriever = retriever
        self.client = client
        self.prompts = prompts
        self.sampling = sampling
        self.k = k
        self.mode = mode
        self.max_model_len = max_model_len
        # Tokens the chat template adds around the messages (roles, special tokens): the server counts them too.
        self.template_overhead = template_overhead
        self._batcher = RetrievalBatcher(self._search, retrieval_batch_size)
        if self.prompt_budget(sampling) <= 0:
            raise ConfigError("config", [
                f"sampling.max_tokens ({sampling.max_tokens}) and the chat template ({template_overhead} tokens) "
                f"leave no room for a prompt in llm.max_model_len ({max_model_len}): lower sampling.max_tokens or "
                "raise llm.max_model_len"
            ])

    @classmethod
    def from_config(
        cls,
        cfg: PipelineConfig,
        retriever: Retriever,
        client: GenerationClient,
        template_overhead: int | None = None,
        *,
        retrieval_batch_size: int = 1,
    ) -> "RagChain":
        """`template_overhead`: the chat template's tokens, measured from the LLM's tokenizer when not given.
        `retrieval_batch_size` is the caller's (serving's), not read from `cfg`: the eval stage's cache key does not
        cover serving settings."""
        if cfg.llm is None:
            raise ConfigError("config", ["the RAG chain needs an llm section (the model that answers)"])
        if template_overhead is None:
            template_overhead = client_template_overhead(cfg.llm, client)
        return cls(
            retriever,
            client,
            PromptBuilder(cfg.prompt, count_tokens=client.count_tokens),
            cfg.sampling,
            k=cfg.retrieval.k,
            mode=cfg.retrieval.mode,
            max_model_len=cfg.llm.max_model_len,
            template_overhead=template_overhead,
            retrieval_batch_size=retrieval_batch_size,
        )

    def retrieve(self, questions: Sequence[str], k: int | None = None, mode: Mode | None = None):
        """Hits per question and the retrieval time per question (batched, so the time is the batch's average)."""
        start = time.perf_counter()
        hits = self.retriever.search_batch(list(questions), k or self.k, mode or self.mode)
        return hits, (time.perf_counter() - start) / max(len(questions), 1)

    def _search(self, questions: Sequence[str], k: int, mode: Mode) -> list[list[SearchHit]]:
        return self.retriever.search_batch(list(questions), k, mode)

    def prompt_budget(self, sampling: SamplingConfig | None = None) -> int:
        """The tokens a prompt's messages may take with `sampling` (the chain's own by default)."""
        return prompt_budget(self.max_model_len, (sampling or self.sampling).max_tokens, self.template_overhead)

    def fit_prompt(
        self,
        question: str,
        hits: Sequence[SearchHit],
        sampling: SamplingConfig | None = None,
        history: Sequence[Mapping[str, str]] = (),
        history_fraction: float = 0.0,
    ) -> Prompt:
        """The one way a prompt is made: the template with the conversation's most recent turns (`history`, at most
        `history_fraction` of the budget) and as many contexts as fit `prompt_budget` (the lowest-ranked are
        dropped); ContextLengthError when even the question alone does not fit."""
        sampling = sampling or self.sampling
        budget = self.prompt_budget(sampling)
        if budget <= 0:
            raise ContextLengthError(
                f"max_tokens ({sampling.max_tokens}) leaves no room for a prompt in the model's context of "
                f"{self.max_model_len} tokens",
                param="max_tokens",
            )
        prompt = self.prompts.build(question, hits, budget, history, int(budget * history_fraction))
        if prompt.tokens is not None and prompt.tokens > budget:
            raise ContextLengthError(
                f"the question needs {prompt.tokens} prompt tokens with no context at all, but the model's context of "
                f"{self.max_model_len} tokens leaves {budget} after max_tokens ({sampling.max_tokens}) and the "
                f"chat template ({self.template_overhead}): shorten the question or ask for fewer tokens"
            )
        return prompt

    def answer_batch(self, questions: Sequence[str], k: int | None = None, mode: Mode | None = None) -> list[RagAnswer]:
        hits, retrieval_s = self.retrieve(questions, k, mode)
        prompts = [self.fit_prompt(q, h) for q, h in zip(questions, hits)]
        generations = self.client.generate([p.messages for p in prompts], self.sampling)
        return [
            RagAnswer(q, g.text.strip(), p, g, retrieval_s) for q, p, g in zip(questions, prompts, generations)
        ]

    # -- async, per-request sampling (the serving API) ------------------------------------------------------------

    async def aretrieve(self, question: str, k: int | None = None, mode: Mode | None = None):
        """Hits for one question and the retrieval time (queueing included). Concurrent calls are searched together
        in a worker thread (`RetrievalBatcher`), with the hits each would get alone."""
        return await self._batcher.search(question, k or self.k, mode or self.mode)

    async def aanswer(
        self, question: str, k: int | None = None, mode: Mode | None = None, sampling: SamplingConfig | None = None
    ) -> RagAnswer:
        sampling = sampling or self.sampling
        hits, retrieval_s = await self.aretrieve(question, k, mode)
        prompt = await asyncio.to_thread(self.fit_prompt, question, hits, sampling)
        (generation,) = await self.client.agenerate([prompt.messages], sampling)
        return RagAnswer(question, generation.text.strip(), prompt, generation, retrieval_s)

    async def astream(
        self, question: str, k: int | None = None, mode: Mode | None = None, sampling: SamplingConfig | None = None
    ) -> RagStream:
        """Retrieval and the prompt now; the answer as `StreamDelta`s when `deltas` is iterated (the last one
        carries the finish reason and token counts). Nothing is sent to the model before the first iteration."""
        sampling = sampling or self.sampling
        hits, retrieval_s = await self.aretrieve(question, k, mode)
        prompt = await asyncio.to_thread(self.fit_prompt, question, hits, sampling)
        return RagStream(prompt, retrieval_s, self.client.astream_deltas(prompt.messages, sampling))


@dataclass(frozen=True)
class RagStream:
    prompt: Prompt
    retrieval_s: float
    deltas: AsyncIterator[StreamDelta]

    @property
    def sources(self) -> tuple[SearchHit, ...]:
        return self.prompt.contexts


def client_template_overhead(llm: LLMConfig, client: GenerationClient) -> int:
    """The chat template overhead for `client`'s model: its loaded tokenizer (in-process), else the base model's."""
    tokenizer = getattr(client, "tokenizer", None)
    if tokenizer is None:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(llm.model, revision=llm.revision)
    return chat_template_overhead(tokenizer)
