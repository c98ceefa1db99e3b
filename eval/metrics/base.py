"""The metric contract shared by every module in `eval/metrics/`.

In the spirit of sentence-transformers' evaluators: a metric is an object with a `name`, the `keys` it reports, a
`primary_metric` and a `compute(samples) -> dict[str, MetricValue]`. Unlike a bare `dict[str, float]`, a
`MetricValue` carries its direction and can be explicitly *not measured* (value None plus the reason), so a judge
that returned invalid JSON or a library that raised is never silently averaged away or scored as 0.

Aggregation policy (`summarize`), the same for every metric:
- a sample whose score *failed* (exception, NaN or inf) makes the aggregate not measured; the reason counts the
  failures and quotes the first one. `per_sample` still holds the scores that did succeed (None for the others),
  so the per-sample table shows them. A gate on a not-measured metric fails.
- a sample that is *not applicable* (no reference answer, no reference contexts) is left out of the mean; the
  value is then a mean over fewer samples and `reason` says how many were left out and why. When no sample is
  applicable the metric is not measured.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Mapping, Sequence

__all__ = [
    "EvalSample",
    "Metric",
    "MetricValue",
    "SampleFailure",
    "SampleScore",
    "SampleSkip",
    "not_measured",
    "summarize",
]


@dataclass(frozen=True)
class EvalSample:
    """One answered eval question, as the metrics see it."""

    qid: str
    question: str
    answer: str
    references: tuple[str, ...]  # reference answers
    contexts: tuple[str, ...]  # retrieved chunk texts, in rank order (what the prompt showed)
    reference_contexts: tuple[str, ...] = ()  # passages that support the answer (the eval set's, or gold paragraph)
    lang: str = "en"


@dataclass(frozen=True)
class MetricValue:
    """One aggregate score.

    value: the aggregate, or None when it was not measured. reason: why it was not measured, or, for a measured
    value, a note on what it covers (e.g. samples left out). per_sample: one entry per input sample, in input
    order (None where that sample has no score), or None for metrics without per-sample scores.
    """

    name: str
    value: float | None
    higher_is_better: bool
    reason: str | None = None
    per_sample: tuple[float | None, ...] | None = None

    @property
    def measured(self) -> bool:
        return self.value is not None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "value": self.value,
            "higher_is_better": self.higher_is_better,
            "reason": self.reason,
            "per_sample": None if self.per_sample is None else list(self.per_sample),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "MetricValue":
        per_sample = data.get("per_sample")
        return cls(
            name=data["name"],
            value=data["value"],
            higher_is_better=data["higher_is_better"],
            reason=data.get("reason"),
            per_sample=None if per_sample is None else tuple(per_sample),
        )


@dataclass(frozen=True)
class SampleFailure:
    """A per-sample score that could not be computed; makes the aggregate not measured."""

    reason: str


@dataclass(frozen=True)
class SampleSkip:
    """A sample the metric does not apply to (e.g. no reference contexts); left out of the mean."""

    reason: str


SampleScore = float | SampleFailure | SampleSkip


def not_measured(name: str, higher_is_better: bool, reason: str, n_samples: int | None = None) -> MetricValue:
    per_sample = None if n_samples is None else (None,) * n_samples
    return MetricValue(name=name, value=None, higher_is_better=higher_is_better, reason=reason, per_sample=per_sample)


def summarize(
    name: str,
    scores: Sequence[SampleScore],
    qids: Sequence[str],
    higher_is_better: bool = True,
    *,
    aggregate: float | None = None,
) -> MetricValue:
    """Aggregate per-sample scores under the module's policy (see the module docstring).

    `aggregate` replaces the mean when the metric has its own corpus-level definition (corpus BLEU); it is still
    withheld when a sample failed.
    """
    per_sample: list[float | None] = []
    failures: list[tuple[str, str]] = []
    skips: list[tuple[str, str]] = []
    for qid, score in zip(qids, scores, strict=True):
        if isinstance(score, SampleSkip):
            skips.append((qid, score.reason))
            per_sample.append(None)
        elif isinstance(score, SampleFailure):
            failures.append((qid, score.reason))
            per_sample.append(None)
        elif score is None or not math.isfinite(float(score)):
            failures.append((qid, f"score is {score}"))
            per_sample.append(None)
        else:
            per_sample.append(float(score))
    n = len(per_sample)
    if n == 0:
        return not_measured(name, higher_is_better, "no samples to score", 0)
    if failures:
        qid, why = failures[0]
        return MetricValue(
            name=name,
            value=None,
            higher_is_better=higher_is_better,
            reason=f"{len(failures)} of {n} samples failed; first ({qid}): {why}",
            per_sample=tuple(per_sample),
        )
    valid = [v for v in per_sample if v is not None]
    if not valid:
        return MetricValue(
            name=name,
            value=None,
            higher_is_better=higher_is_better,
            reason=f"no sample applies: {_skip_summary(skips)}",
            per_sample=tuple(per_sample),
        )
    value = aggregate if aggregate is not None else math.fsum(valid) / len(valid)
    reason = f"scored {len(valid)} of {n} samples; left out: {_skip_summary(skips)}" if skips else None
    return MetricValue(name, float(value), higher_is_better, reason, tuple(per_sample))


def _skip_summary(skips: list[tuple[str, str]]) -> str:
    reasons: dict[str, int] = {}
    for _, why in skips:
        reasons[why] = reasons.get(why, 0) + 1
    return "; ".join(f"{count} with {why}" for why, count in reasons.items())


class RetrievalScores:
    """The retrieval metrics of an index (eval.retrieval: recall@k, mrr@10, ndcg@10), reported in a RAG eval as
    `retrieval.<name>`. Not a `Metric`: they score the index's hits, not answers."""

    name = "retrieval"
    prefix = "retrieval."
    primary_metric = "recall@5"
    greater_is_better = True  # every key


class Metric(ABC):
    """A metric family: one library call may report several keys (rouge_1, rouge_2, rouge_l)."""

    name: str  # family name, e.g. "rouge"
    keys: tuple[str, ...]  # every key `compute` returns
    primary_metric: str  # the key to rank or gate on by default
    higher_is_better: Mapping[str, bool]  # direction of each key

    @abstractmethod
    def compute(self, samples: Sequence[EvalSample]) -> dict[str, MetricValue]:
        """Score the samples; returns one MetricValue per key in `keys`, per_sample aligned with `samples`."""

    def not_measured(self, reason: str, n_samples: int) -> dict[str, MetricValue]:
        """Every key of this family not measured, with the same reason (a whole-library failure)."""
        return {key: not_measured(key, self.higher_is_better[key], reason, n_samples) for key in self.keys}
