"""Answer-quality metrics for the RAG eval: BLEU, ROUGE, BERTScore and RAGAS behind one contract (`base.py`).

`compute_metrics` runs the metric families enabled in `MetricsConfig`. A family whose library fails as a whole
(cannot import, model missing, unexpected error) is reported as not measured for all its keys, with the reason,
and the other families still run. Disabled families (and the judge metrics without a judge) are absent.

Keys and directions (all higher-is-better, 0-1 scale unless noted):
    bleu                                  corpus BLEU / 100 (sacrebleu), per-sample sentence BLEU
    rouge_1, rouge_2, rouge_l             ROUGE F1, mean over samples (rouge-score)
    bertscore_f1                          BERTScore F1, mean over samples, raw (not rescaled)
    ragas.context_recall                  NonLLMContextRecall vs reference contexts
    ragas.context_precision               NonLLMContextPrecisionWithReference vs reference contexts
    ragas.semantic_similarity             cosine similarity, answer vs reference (can be < 0 in principle)
    ragas.faithfulness                    judge
    ragas.answer_relevancy                judge + local embedder
    ragas.llm_context_precision           judge
    ragas.llm_context_recall              judge

Abstention (`answerability.py`, from the chat path's refusals, not from a metric family):
    answerability.refusal_rate_unanswerable   share of unanswerable questions refused (higher is better)
    answerability.refusal_rate_answerable     share of answerable questions refused (LOWER is better)
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

from eval.metrics.answerability import DIRECTIONS as ANSWERABILITY_DIRECTIONS
from eval.metrics.base import EvalSample, Metric, MetricValue, RetrievalScores, not_measured
from eval.metrics.bertscore import BertScoreMetric
from eval.metrics.bleu import BleuMetric
from eval.metrics.ragas_metrics import RagasMetric
from eval.metrics.rouge import RougeMetric
from llmops.config import MetricsConfig

__all__ = [
    "DIRECTIONS",
    "EvalSample",
    "Metric",
    "MetricValue",
    "RetrievalScores",
    "metric_direction",
    "sample_ranking_metric",
    "build_metrics",
    "compute_metrics",
]

log = logging.getLogger(__name__)

# The answer-metric families, and the ones whose primary metric ranks samples (worst first in the Deck), in order of
# preference: the first one measured is used.
_FAMILIES: tuple[type[Metric], ...] = (BleuMetric, RougeMetric, BertScoreMetric, RagasMetric)
_SAMPLE_RANKING: tuple[type[Metric], ...] = (RougeMetric, BertScoreMetric, BleuMetric)

# Every key a metric family here can report, with its direction (True: higher is better), from the families
# themselves. Gates use it for values given as bare floats.
DIRECTIONS: dict[str, bool] = {
    **{key: higher for family in _FAMILIES for key, higher in family.higher_is_better.items()},
    **ANSWERABILITY_DIRECTIONS,
}


def metric_direction(key: str) -> bool | None:
    """True when greater is better for `key` (an answer metric or `retrieval.<name>`); None when unknown."""
    if key in DIRECTIONS:
        return DIRECTIONS[key]
    if key.startswith(RetrievalScores.prefix):
        return RetrievalScores.greater_is_better
    return None


def sample_ranking_metric(values: Mapping[str, MetricValue]) -> str | None:
    """The metric to rank samples by: the primary metric of the first ranking family that was measured."""
    return next((family.primary_metric for family in _SAMPLE_RANKING
                 if family.primary_metric in values and values[family.primary_metric].measured), None)


def build_metrics(config: MetricsConfig, embedding_model: str) -> list[Metric]:
    """The metric families enabled in `config`, in report order. Heavy libraries load only in `compute`."""
    metrics: list[Metric] = []
    if config.bleu:
        metrics.append(BleuMetric())
    if config.rouge:
        metrics.append(RougeMetric())
    if config.bertscore is not None:
        metrics.append(BertScoreMetric(config.bertscore))
    if config.ragas.enabled:
        metrics.append(RagasMetric(config.ragas, embedding_model))
    return metrics


def compute_metrics(
    samples: Sequence[EvalSample], config: MetricsConfig, embedding_model: str
) -> dict[str, MetricValue]:
    """Score `samples` with every enabled metric; `embedding_model` is the default for RAGAS' embeddings
    (the index's embedding model). Per-sample scores line up with `samples`."""
    results: dict[str, MetricValue] = {}
    for metric in build_metrics(config, embedding_model):
        try:
            values = metric.compute(samples)
        except Exception as e:  # one library failing must not take the others down
            log.warning("metric %s failed: %s: %s", metric.name, type(e).__name__, e)
            values = metric.not_measured(f"{metric.name} failed: {type(e).__name__}: {e}", len(samples))
        missing = [key for key in metric.keys if key not in values]
        for key in missing:  # a family must report every key it announces; make a gap visible, not silent
            values[key] = not_measured(key, metric.higher_is_better[key], f"{metric.name} reported no {key}",
                                       len(samples))
        results.update(values)
    return results
