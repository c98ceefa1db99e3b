"""The comparison of several variants' evaluations: one metric table with the best per column, and per question
each variant's answer and sources with where they disagree.

Built from what the eval stage wrote for each variant (report.json + samples.parquet), so a comparison of variants
run by `workflows/compare.py` and one of any stored reports (`llmops compare A B`) are the same record.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict

from eval.guardrails import percentile
from eval.metrics.tokenizers import RougeTokenizer
from eval.runner import SampleRecord
from eval.schemas import RagEvalReport
from llmops.config import ModelPrice
from llmops.storage import digest_of

__all__ = [
    "COMPARISON_SCHEMA_VERSION",
    "ComparedRun",
    "ComparisonReport",
    "Disagreement",
    "MetricColumn",
    "QuestionComparison",
    "VariantAnswer",
    "VariantResult",
    "build_comparison",
]

COMPARISON_SCHEMA_VERSION = 1
DisagreementKind = Literal["refusal", "top_source", "answer"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariantResult(_Record):
    name: str
    prompt: str  # the names the variant was built from ("config": the config's own section)
    model: str
    sampling: str
    model_name: str  # what answered: the served or provider model id
    backend: str
    endpoint: str  # where it was reached: "self-hosted", or the provider's base URL
    report_uri: str
    samples_uri: str | None
    metrics: dict[str, float | None]
    latency_p50_s: float | None
    latency_p95_s: float | None
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # tokens x price per 1k, None where unpriced
    currency: str | None
    seconds: float  # the evaluation's wall time


class MetricColumn(_Record):
    name: str
    higher_is_better: bool
    best: tuple[str, ...]  # the variants with the best value (ties: all of them); empty when none was measured


class VariantAnswer(_Record):
    answer: str
    refusal_kind: str | None
    sources: tuple[str, ...]  # the retrieved contexts' sources, in prompt order
    latency_s: float
    prompt_tokens: int
    completion_tokens: int
    cost: float | None


class Disagreement(_Record):
    kinds: tuple[DisagreementKind, ...]
    min_rouge_l: float | None  # the lowest pairwise ROUGE-L F1 between the answers (None: fewer than 2 answers)


class QuestionComparison(_Record):
    qid: str
    question: str
    references: tuple[str, ...]
    answers: dict[str, VariantAnswer]  # variant name -> its answer
    disagreement: Disagreement


class ComparisonReport(_Record):
    schema_version: int = COMPARISON_SCHEMA_VERSION
    kind: Literal["comparison"] = "comparison"
    id: str
    created_at: str
    index_version: str
    questions: int
    disagreement_rouge_l: float
    variants: tuple[VariantResult, ...]
    columns: tuple[MetricColumn, ...]  # every metric, then latency and cost (lower is better)
    per_question: tuple[QuestionComparison, ...]

    def disagreement_counts(self) -> dict[str, int]:
        """Questions per disagreement kind, and in all (`any`)."""
        counts = {kind: 0 for kind in ("refusal", "top_source", "answer")}
        for q in self.per_question:
            for kind in q.disagreement.kinds:
                counts[kind] += 1
        return {**counts, "any": sum(1 for q in self.per_question if q.disagreement.kinds)}

    def value(self, variant: VariantResult, column: str) -> float | None:
        """A column's value for a variant: a metric, or latency / cost."""
        extra = {"latency_p50_s": variant.latency_p50_s, "latency_p95_s": variant.latency_p95_s, "cost": variant.cost}
        return extra[column] if column in extra else variant.metrics.get(column)


@dataclass(frozen=True)
class ComparedRun:
    """One variant's stored evaluation and what it was built from."""

    name: str
    report: RagEvalReport
    samples: Sequence[SampleRecord]
    report_uri: str
    samples_uri: str | None = None
    prompt: str = "config"
    model: str = "config"
    sampling: str = "config"
    endpoint: str = "self-hosted"
    price: ModelPrice | None = None


def _cost(price: ModelPrice | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    if price is None:
        return None
    return prompt_tokens / 1000 * price.prompt_per_1k + completion_tokens / 1000 * price.completion_per_1k


def _variant(run: ComparedRun) -> VariantResult:
    prompt_tokens = sum(s.prompt_tokens for s in run.samples)
    completion_tokens = sum(s.completion_tokens for s in run.samples)
    latencies = [s.latency_s for s in run.samples]
    return VariantResult(
        name=run.name, prompt=run.prompt, model=run.model, sampling=run.sampling,
        model_name=run.report.model.name, backend=run.report.model.backend, endpoint=run.endpoint,
        report_uri=run.report_uri, samples_uri=run.samples_uri, metrics=run.report.metric_values(),
        latency_p50_s=percentile(latencies, 0.5), latency_p95_s=percentile(latencies, 0.95),
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        cost=_cost(run.price, prompt_tokens, completion_tokens),
        currency=run.price.currency if run.price is not None else None, seconds=run.report.seconds,
    )


def _best(values: dict[str, float | None], higher_is_better: bool) -> tuple[str, ...]:
    measured = {name: v for name, v in values.items() if v is not None}
    if not measured:
        return ()
    best = (max if higher_is_better else min)(measured.values())
    return tuple(name for name, v in measured.items() if v == best)


def _columns(runs: Sequence[ComparedRun], variants: Sequence[VariantResult]) -> tuple[MetricColumn, ...]:
    directions: dict[str, bool] = {}
    for run in runs:
        for name, m in run.report.metrics.items():
            directions.setdefault(name, m.higher_is_better)
    columns = [
        MetricColumn(name=name, higher_is_better=up, best=_best({v.name: v.metrics.get(name) for v in variants}, up))
        for name, up in sorted(directions.items())
    ]
    for name, values in (
        ("latency_p50_s", {v.name: v.latency_p50_s for v in variants}),
        ("latency_p95_s", {v.name: v.latency_p95_s for v in variants}),
        ("cost", {v.name: v.cost for v in variants}),
    ):
        columns.append(MetricColumn(name=name, higher_is_better=False, best=_best(values, False)))
    return tuple(columns)


def _pairwise_rouge_l(answers: Sequence[str], lang: str) -> float | None:
    from rouge_score.rouge_scorer import RougeScorer

    if len(answers) < 2:
        return None
    scorer = RougeScorer(["rougeL"], tokenizer=RougeTokenizer(lang))
    return min(scorer.score(a, b)["rougeL"].fmeasure for a, b in itertools.combinations(answers, 2))


def _disagreement(samples: dict[str, SampleRecord], threshold: float) -> Disagreement:
    kinds: list[DisagreementKind] = []
    if len({s.refusal_kind for s in samples.values()}) > 1:
        kinds.append("refusal")
    top = {(s.sources[0].get("source") or s.sources[0].get("doc_id")) if s.sources else None for s in samples.values()}
    if len(top) > 1:
        kinds.append("top_source")
    generated = [s.answer for s in samples.values() if s.refusal_kind is None]
    lang = next(iter(samples.values())).lang
    low = _pairwise_rouge_l(generated, lang)
    if low is not None and low < threshold:
        kinds.append("answer")
    return Disagreement(kinds=tuple(kinds), min_rouge_l=low)


def _questions(runs: Sequence[ComparedRun], threshold: float) -> tuple[QuestionComparison, ...]:
    by_variant = {run.name: {s.qid: s for s in run.samples} for run in runs}
    first = runs[0]
    out = []
    for sample in first.samples:
        samples = {name: per[sample.qid] for name, per in by_variant.items() if sample.qid in per}
        price = {run.name: run.price for run in runs}
        out.append(QuestionComparison(
            qid=sample.qid, question=sample.question, references=tuple(sample.references),
            answers={
                name: VariantAnswer(
                    answer=s.answer, refusal_kind=s.refusal_kind,
                    sources=tuple(str(src.get("source") or src.get("doc_id") or "") for src in s.sources),
                    latency_s=s.latency_s, prompt_tokens=s.prompt_tokens, completion_tokens=s.completion_tokens,
                    cost=_cost(price[name], s.prompt_tokens, s.completion_tokens),
                )
                for name, s in samples.items()
            },
            disagreement=_disagreement(samples, threshold),
        ))
    return tuple(out)


def build_comparison(runs: Sequence[ComparedRun], *, disagreement_rouge_l: float, created_at: str) -> ComparisonReport:
    """Compare `runs` (at least two, with distinct names) question by question."""
    from llmops.errors import EvalDataError

    names = [r.name for r in runs]
    if len(runs) < 2 or len(set(names)) != len(names):
        raise EvalDataError(f"a comparison needs at least 2 distinctly named evaluations, got {names}")
    indexes = {r.report.index_version for r in runs}
    if len(indexes) > 1:
        raise EvalDataError(
            f"the evaluations used different indexes ({', '.join(sorted(indexes))}): compare runs on the same index "
            "(workflows/compare.py evaluates every variant on one)"
        )
    variants = tuple(_variant(r) for r in runs)
    return ComparisonReport(
        id="cmp-" + digest_of({"variants": names, "reports": [r.report_uri for r in runs]}, 12),
        created_at=created_at,
        index_version=runs[0].report.index_version,
        questions=len(runs[0].samples),
        disagreement_rouge_l=disagreement_rouge_l,
        variants=variants,
        columns=_columns(runs, variants),
        per_question=_questions(runs, disagreement_rouge_l),
    )
