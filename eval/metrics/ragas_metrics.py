"""RAGAS 0.4.3 metrics: the offline ones always, the LLM-judged ones when a judge endpoint is configured.

Always (no LLM, no network):
- `ragas.context_recall`: NonLLMContextRecall, the share of reference contexts that some retrieved context matches.
- `ragas.context_precision`: NonLLMContextPrecisionWithReference, average precision of the retrieved contexts
  (in rank order) judged against the reference contexts.
  Both use ragas' default string match: 1 - normalized Levenshtein distance >= 0.5 (precision) / > 0.5 (recall).
  Reference contexts are the sample's `reference_contexts`: the eval set's own, or (filled in by the runner) the
  gold paragraph a SQuAD question was written on. Levenshtein similarity is relative to the longer string, so a
  retrieved chunk much shorter than half its gold paragraph does not match it: with small chunks these two
  metrics understate retrieval (the `retrieval.*` metrics judge by gold document id instead).
- `ragas.semantic_similarity`: SemanticSimilarity, cosine similarity of answer and reference embeddings (best
  over references), embedded with the local sentence-transformers model (the index's by default), passage side
  of its profile on both texts so the comparison stays symmetric.

With `RagasConfig.judge` (any OpenAI-compatible `base_url`, e.g. a vLLM server), ragas' collections API with an
instructor-patched AsyncOpenAI client (JSON mode):
- `ragas.faithfulness`: Faithfulness (answer claims supported by the retrieved contexts),
- `ragas.answer_relevancy`: AnswerRelevancy, called ResponseRelevancy in ragas' older API (questions generated back
  from the answer vs the question, embedded with the same local model),
- `ragas.llm_context_precision`: ContextPrecisionWithReference (LLM verdict per retrieved context),
- `ragas.llm_context_recall`: ContextRecall (reference-answer claims attributable to the contexts).
  The reference answer given to the judge is the sample's first reference.
A judge reply that fails (invalid JSON after instructor's retries -> InstructorRetryException, HTTP error,
timeout, NaN score) fails that sample, and under the shared policy (`base.py`) the metric is not measured with the
first failure as its reason; the other metrics and samples go on. Without a judge these four keys are absent.

Not applicable (left out of the mean, see `base.py`): samples without reference contexts (non-LLM context metrics),
without a reference answer (semantic similarity, LLM context metrics), with an empty answer or no retrieved
contexts (faithfulness: there is no claim / no context to check). Nothing retrieved scores 0 for the context
metrics, an empty answer 0 for answer relevancy.

`RAGAS_DO_NOT_TRACK=true` is set before ragas is imported (and its cached setting reset), so no analytics leave.
"""

from __future__ import annotations

import asyncio
import os
import threading
import warnings
from typing import Awaitable, Callable, Sequence, TypeVar

os.environ["RAGAS_DO_NOT_TRACK"] = "true"  # before any ragas import; ragas caches the setting on first use

import numpy as np  # noqa: E402

from eval.metrics.base import (  # noqa: E402
    EvalSample,
    Metric,
    MetricValue,
    SampleFailure,
    SampleScore,
    SampleSkip,
    summarize,
)
from llmops.config import EmbeddingConfig, JudgeConfig, RagasConfig  # noqa: E402

__all__ = ["JUDGE_KEYS", "NON_LLM_KEYS", "RagasMetric", "local_embeddings", "run_sync"]

NON_LLM_KEYS = ("ragas.context_recall", "ragas.context_precision", "ragas.semantic_similarity")
JUDGE_KEYS = ("ragas.faithfulness", "ragas.answer_relevancy", "ragas.llm_context_precision", "ragas.llm_context_recall")
_REASON_CHARS = 300  # judge errors quote the model's reply; keep reasons readable

T = TypeVar("T")


def _ragas():
    """Import ragas with tracking off even if something imported it earlier with other settings."""
    os.environ["RAGAS_DO_NOT_TRACK"] = "true"
    import ragas._analytics

    ragas._analytics.do_not_track.cache_clear()
    return ragas


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from sync code, also when the caller already runs an event loop (then in a thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    result: dict = {}

    def target():
        try:
            result["value"] = asyncio.run(make())
        except BaseException as e:  # re-raised in the caller's thread
            result["error"] = e

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def _short(e: BaseException) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def _local_embeddings_class():
    from ragas.embeddings.base import BaseRagasEmbedding

    class _LocalEmbeddings(BaseRagasEmbedding):
        """ragas' modern embedding interface over our Embedder, with an in-memory cache primed in batches."""

        def __init__(self, model: str):
            super().__init__()
            self.model = model
            self._cache: dict[str, list[float]] = {}

        def prime(self, texts: Sequence[str]) -> None:
            from llmops.index.embedding import get_embedder

            todo = sorted({t for t in texts if t not in self._cache})
            if not todo:
                return
            # Loaded on first use, so a missing model fails only the metrics that embed (context ones still run).
            embedder = get_embedder(EmbeddingConfig(model=self.model))
            for text, vector in zip(todo, embedder.embed_passages(todo)):
                self._cache[text] = vector.tolist()

        def embed_text(self, text: str, **kwargs) -> list[float]:
            if text not in self._cache:
                self.prime([text])
            return self._cache[text]

        async def aembed_text(self, text: str, **kwargs) -> list[float]:
            return self.embed_text(text)

        def embed_texts(self, texts: list[str], **kwargs) -> list[list[float]]:
            self.prime(texts)
            return [self._cache[t] for t in texts]

        async def aembed_texts(self, texts: list[str], **kwargs) -> list[list[float]]:
            return self.embed_texts(texts)

    return _LocalEmbeddings


def local_embeddings(model: str):
    """ragas `BaseRagasEmbedding` over the local sentence-transformers model `model` (path, `pkg:` ref or id)."""
    _ragas()
    return _local_embeddings_class()(model)


class RagasMetric(Metric):
    name = "ragas"
    primary_metric = "ragas.semantic_similarity"
    keys = NON_LLM_KEYS + JUDGE_KEYS  # every key the family can report; an instance without a judge reports fewer
    higher_is_better = {key: True for key in keys}

    def __init__(self, config: RagasConfig, embedding_model: str):
        self.config = config
        self.embedding_model = config.embedding_model or embedding_model
        self.keys = NON_LLM_KEYS + (JUDGE_KEYS if config.judge is not None else ())
        self.higher_is_better = {key: True for key in self.keys}

    def compute(self, samples: Sequence[EvalSample]) -> dict[str, MetricValue]:
        _ragas()
        qids = [s.qid for s in samples]
        embeddings = local_embeddings(self.embedding_model)
        scores = run_sync(lambda: self._score_all(samples, embeddings))
        return {key: summarize(key, scores[key], qids, True) for key in self.keys}

    async def _score_all(self, samples: Sequence[EvalSample], embeddings) -> dict[str, list[SampleScore]]:
        scores = {
            "ragas.context_recall": [await _context_recall(s) for s in samples],
            "ragas.context_precision": [await _context_precision(s) for s in samples],
            "ragas.semantic_similarity": await _semantic_similarity(samples, embeddings),
        }
        if self.config.judge is not None:
            scores.update(await _judge_scores(samples, self.config.judge, embeddings))
        return scores


# ---------------------------------------------------------------------------------------------------------------
# Non-LLM metrics
# ---------------------------------------------------------------------------------------------------------------


def _non_llm(name: str):
    with warnings.catch_warnings():
        # ragas 0.4.3 flags the `ragas.metrics` import as deprecated but has no collections version of these two.
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.metrics import NonLLMContextPrecisionWithReference, NonLLMContextRecall

    return {"recall": NonLLMContextRecall, "precision": NonLLMContextPrecisionWithReference}[name]()


async def _context_score(s: EvalSample, which: str) -> SampleScore:
    from ragas.dataset_schema import SingleTurnSample

    if not s.reference_contexts:
        return SampleSkip("no reference contexts")
    if not s.contexts:
        return 0.0  # nothing retrieved: no reference context is covered
    try:
        sample = SingleTurnSample(retrieved_contexts=list(s.contexts), reference_contexts=list(s.reference_contexts))
        return float(await _non_llm(which).single_turn_ascore(sample))
    except Exception as e:
        return SampleFailure(_short(e))


async def _context_recall(s: EvalSample) -> SampleScore:
    return await _context_score(s, "recall")


async def _context_precision(s: EvalSample) -> SampleScore:
    return await _context_score(s, "precision")


async def _semantic_similarity(samples: Sequence[EvalSample], embeddings) -> list[SampleScore]:
    from ragas.metrics.collections import SemanticSimilarity

    try:
        embeddings.prime([s.answer for s in samples] + [r for s in samples for r in s.references if r.strip()])
    except Exception as e:  # the model cannot load: every sample fails with the same reason
        return [SampleFailure(_short(e))] * len(samples)
    metric = SemanticSimilarity(embeddings=embeddings)
    scores: list[SampleScore] = []
    for s in samples:
        references = [r for r in s.references if r.strip()]
        if not references:
            scores.append(SampleSkip("no reference answer"))
            continue
        try:
            values = [(await metric.ascore(reference=r, response=s.answer)).value for r in references]
            scores.append(float(max(values)))
        except Exception as e:
            scores.append(SampleFailure(_short(e)))
    return scores


# ---------------------------------------------------------------------------------------------------------------
# LLM-judged metrics
# ---------------------------------------------------------------------------------------------------------------


async def _judge_scores(samples: Sequence[EvalSample], judge: JudgeConfig, embeddings) -> dict[str, list[SampleScore]]:
    from openai import AsyncOpenAI
    from ragas.llms import llm_factory
    from ragas.metrics.collections import AnswerRelevancy, ContextPrecisionWithReference, ContextRecall, Faithfulness

    # The client is created inside the running loop (httpx binds its connection pool to it) and closed after.
    client = AsyncOpenAI(
        base_url=judge.base_url,
        api_key=os.environ.get(judge.api_key_env) or "EMPTY",  # vLLM accepts any key unless started with one
        timeout=judge.timeout_s,
        max_retries=judge.max_retries,
    )
    try:
        # max_retries here: instructor's re-asks after a reply that does not validate against ragas' schema.
        llm = llm_factory(judge.model, client=client, max_tokens=judge.max_tokens, max_retries=judge.max_retries)
        metrics = {
            "ragas.faithfulness": Faithfulness(llm=llm),
            "ragas.answer_relevancy": AnswerRelevancy(llm=llm, embeddings=embeddings),
            "ragas.llm_context_precision": ContextPrecisionWithReference(llm=llm),
            "ragas.llm_context_recall": ContextRecall(llm=llm),
        }
        gate = asyncio.Semaphore(judge.max_concurrency)

        async def one(key: str, s: EvalSample) -> SampleScore:
            call = _judge_call(key, metrics[key], s)
            if not callable(call):
                return call  # a skip or a fixed score decided without the judge
            async with gate:
                try:
                    value = float((await call()).value)
                except Exception as e:  # InstructorRetryException, openai.APIError, timeouts, ragas' ValueErrors
                    return SampleFailure(_short(e))
            return value if np.isfinite(value) else SampleFailure(f"judge gave a {value} score")

        keys = list(metrics)
        results = await asyncio.gather(*(one(key, s) for key in keys for s in samples))
        n = len(samples)
        return {key: list(results[i * n : (i + 1) * n]) for i, key in enumerate(keys)}
    finally:
        await client.close()


def _judge_call(key: str, metric, s: EvalSample):
    """A zero-argument coroutine factory for the judge call, or the score when none is needed."""
    contexts = list(s.contexts)
    reference = next((r for r in s.references if r.strip()), None)
    if key == "ragas.faithfulness":
        if not s.answer.strip():
            return SampleSkip("empty answer")
        if not contexts:
            return SampleSkip("no retrieved contexts")
        return lambda: metric.ascore(user_input=s.question, response=s.answer, retrieved_contexts=contexts)
    if key == "ragas.answer_relevancy":
        if not s.answer.strip():
            return 0.0  # an empty answer addresses nothing
        return lambda: metric.ascore(user_input=s.question, response=s.answer)
    if reference is None:
        return SampleSkip("no reference answer")
    if not contexts:
        return 0.0
    if key == "ragas.llm_context_precision":
        return lambda: metric.ascore(user_input=s.question, reference=reference, retrieved_contexts=contexts)
    return lambda: metric.ascore(user_input=s.question, retrieved_contexts=contexts, reference=reference)
