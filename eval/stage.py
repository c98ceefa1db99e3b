"""The evaluation and gate stages as plain functions (the Flyte tasks in tasks/evaluate.py wrap them).

`evaluate_model` runs the shared RAG chain for one model (base, or base + adapter) over the held-out eval set,
scores it and writes `report.json` + per-sample parquet. `decide` picks the candidate (the fine-tuned model when
there is one), applies the gates against the production baseline and writes the verdict.
"""

from __future__ import annotations

import shutil
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

from eval.conversations import summarize_conversations
from eval.gates import evaluate_gates
from eval.guardrails import guardrail_metrics, guardrail_summary, percentile
from eval.metrics import compute_metrics, metric_direction, sample_ranking_metric
from eval.metrics.answerability import RefusalCounts, refusal_metrics
from eval.metrics.base import EvalSample, MetricValue
from eval.runner import SampleRecord, run_engine
from eval.schemas import (
    AnswerabilitySummary,
    EvalLineage,
    GateDecision,
    LatencySummary,
    MetricRecord,
    ModelUnderTest,
    RagEvalReport,
    RetrievalEvalReport,
    VerdictRecord,
    load_eval_record,
)
from llmops.index.artifact import git_sha, library_versions, utc_now
from llmops.index.tuning import select_questions
from llmops.config import PipelineConfig
from llmops.corpus.documents import QAExample
from llmops.errors import EvalDataError
from llmops.llm.runtime import open_client
from llmops.release.promotion import Candidate
from llmops.release.registry import GateOutcome
from llmops.chat.engine import ChatEngine
from llmops.rag.chain import RagChain
from llmops.index.retriever import Retriever
from llmops.provenance.stage_inputs import config_record, stage_code
from llmops.storage import atomic_write_json, digest_of, join_uri, publish_directory, staging_dir
from llmops.llm.tiny_llm import random_weights_info

__all__ = [
    "EvalRun",
    "decide",
    "evaluate_model",
    "load_gate_decision",
    "load_rag_eval_report",
    "release_candidate",
    "store_decision",
    "store_eval_run",
]

# The primary metric when no answer metric was measured: whether retrieval found a relevant chunk.
RETRIEVAL_HIT = "retrieval_hit"


@dataclass
class EvalRun:
    report: RagEvalReport
    samples: list[SampleRecord]


def evaluate_model(
    cfg: PipelineConfig,
    retriever: Retriever,
    examples: Sequence[QAExample],
    gold_texts: Mapping[str, str],
    *,
    label: str,
    adapter_dir: Path | None = None,
    adapter_version: str | None = None,
    adapter_uri: str | None = None,
    retrieval_report: RetrievalEvalReport | None = None,
    execution_id: str | None = None,
    show_progress: bool = True,
) -> EvalRun:
    if cfg.llm is None:
        raise EvalDataError("evaluation needs an llm section in the config (the model to evaluate)")
    questions = select_questions(
        examples,
        # the calibration split the index tuned its fusion weight or answerability threshold on (None: nothing)
        calibration_fraction=retriever.manifest.calibration_fraction,
        max_samples=cfg.eval.max_samples,
    )
    if not questions:
        raise EvalDataError(
            "no eval questions left to answer: add eval.qa_path or a squad source to the config, or lower "
            "eval.calibration_fraction and rebuild the index (it tuned on the rest)"
        )
    start = time.perf_counter()
    with open_client(cfg.llm, adapter_dir=adapter_dir, adapter_name=adapter_version) as client:
        # Each question is searched, then scored for answerability: one embedding serves both.
        searcher = retriever.with_query_cache(len(questions))
        engine = ChatEngine.from_config(cfg, RagChain.from_config(cfg, searcher, client))
        check = engine.answerability
        records = run_engine(
            engine, questions, gold_texts, concurrency=cfg.llm.max_concurrency, show_progress=show_progress
        )
        model_name = client.model_name
    generation_s = time.perf_counter() - start
    # Answer metrics score the answerable questions (a refused one with the message it got); the unanswerable ones
    # have no reference answer and measure abstention instead.
    answerable = [r for r in records if r.answerable]
    metrics = compute_metrics(
        [_metric_sample(r) for r in answerable],
        cfg.eval.metrics,
        embedding_model=retriever.manifest.embedding.model,
    ) if answerable else {}
    _attach_per_sample(answerable, metrics)
    if len(answerable) < len(records):
        metrics = {name: _noting_left_out(m, len(records) - len(answerable)) for name, m in metrics.items()}
    counts = RefusalCounts.of([r.answerable for r in records], [r.refused for r in records])
    metrics.update(refusal_metrics(counts))
    metrics.update(_retrieval_metrics(retrieval_report))
    guardrails = guardrail_summary(records)
    metrics.update(guardrail_metrics(guardrails))
    primary = sample_ranking_metric(metrics) or RETRIEVAL_HIT
    report = RagEvalReport(
        label=label,
        created_at=utc_now(),
        model=ModelUnderTest(
            name=model_name,
            base=cfg.llm.model,
            adapter_version=adapter_version,
            adapter_uri=adapter_uri,
            backend=cfg.llm.backend,
            # A random test model (its folder's tiny_llm.json says so): the Deck says its answers are noise.
            random_weights=random_weights_info(cfg.llm.model) is not None,
        ),
        index_version=retriever.version,
        questions=len(records),
        primary_metric=primary,
        metrics={name: MetricRecord(value=m.value, higher_is_better=m.higher_is_better, reason=m.reason)
                 for name, m in sorted(metrics.items())},
        latency=_latency(records),
        guardrails=guardrails,
        seconds=round(time.perf_counter() - start, 3),
        generation_seconds=round(generation_s, 3),
        retrieval=retrieval_report,
        conversations=summarize_conversations(records),
        production_questions=sum(1 for q in questions if _from_production(q)),
        answerability=AnswerabilitySummary(
            enabled=check is not None,
            threshold=check.threshold if check is not None else None,
            threshold_from=check.threshold_from if check is not None else None,
            answerable_questions=counts.answerable,
            unanswerable_questions=counts.unanswerable,
            refused_answerable=counts.refused_answerable,
            refused_unanswerable=counts.refused_unanswerable,
        ),
        config=config_record(cfg),
        lineage=EvalLineage(
            index_version=retriever.version,
            adapter_version=adapter_version,
            git_sha=git_sha(),
            code_version=stage_code("evaluate").digest,
            execution_id=execution_id,
            libraries=library_versions(),
        ),
    )
    if primary == RETRIEVAL_HIT:
        for r in records:
            r.scores[RETRIEVAL_HIT] = float(r.retrieval_hit)
    return EvalRun(report, records)


def _from_production(example: QAExample) -> bool:
    return example.provenance is not None and example.provenance.source == "production"


def _metric_sample(r: SampleRecord) -> EvalSample:
    return EvalSample(
        qid=r.qid,
        question=r.question,
        answer=r.answer,
        references=tuple(r.references),
        contexts=tuple(r.contexts),
        reference_contexts=tuple(r.reference_contexts),
        lang=r.lang,
    )


def _noting_left_out(metric: MetricValue, unanswerable: int) -> MetricValue:
    """`metric` with a note that it covers the answerable questions only (never left out silently)."""
    note = f"{unanswerable} unanswerable questions left out"
    return replace(metric, reason=f"{metric.reason}; {note}" if metric.reason else note)


def _attach_per_sample(records: list[SampleRecord], metrics: Mapping[str, MetricValue]) -> None:
    for name, m in metrics.items():
        if m.per_sample is None:
            continue
        for record, value in zip(records, m.per_sample, strict=True):
            record.scores[name] = value


def _retrieval_metrics(report: RetrievalEvalReport | None) -> dict[str, MetricValue]:
    """The index's retrieval metrics in its default mode, as `retrieval.<name>` (gates can use them)."""
    scores = report.default_scores if report is not None else None
    if scores is None:
        return {}
    return {
        f"retrieval.{name}": MetricValue(name=f"retrieval.{name}", value=float(value),
                                         higher_is_better=metric_direction(f"retrieval.{name}"))
        for name, value in scores.metrics.items()
    }


def _latency(records: Sequence[SampleRecord]) -> LatencySummary:
    latencies = [r.latency_s for r in records]
    return LatencySummary(
        p50_s=percentile(latencies, 0.5),
        p95_s=percentile(latencies, 0.95),
        retrieval_mean_s=statistics.fmean(r.retrieval_s for r in records) if records else None,
        prompt_tokens_mean=statistics.fmean(r.prompt_tokens for r in records) if records else None,
        completion_tokens_mean=statistics.fmean(r.completion_tokens for r in records) if records else None,
    )


def decide(
    cfg: PipelineConfig,
    reports: Mapping[str, RagEvalReport],
    baseline_report: RagEvalReport | None,
    baseline_source: str | None,
) -> GateDecision:
    """Apply the gates to the candidate: the fine-tuned model when one was evaluated, else the base model."""
    candidate = "finetuned" if "finetuned" in reports else "base"
    report = reports[candidate]
    metrics = {
        name: MetricValue(name=name, value=m.value, higher_is_better=m.higher_is_better, reason=m.reason)
        for name, m in report.metrics.items()
    }
    baseline = baseline_report.metric_values() if baseline_report else None
    verdict = evaluate_gates(metrics, cfg.gates, baseline, baseline_source=baseline_source)
    return GateDecision(
        created_at=utc_now(),
        candidate=candidate,
        candidate_model=report.model,
        index_version=report.index_version,
        verdict=VerdictRecord.of(verdict),
        on_missing_baseline=cfg.gates.on_missing_baseline,
        compared={label: r.metric_values() for label, r in reports.items()},
        baseline=baseline,
    )


def store_eval_run(cfg: PipelineConfig, run: EvalRun) -> tuple[str, str]:
    """Write report.json + samples.parquet as one immutable folder under evals/; returns (report, samples) URIs."""
    from eval.runner import write_samples

    report = run.report.model_dump(mode="json")
    name = f"{run.report.label}-{digest_of({k: v for k, v in report.items() if k != 'created_at'}, 12)}"
    dest = join_uri(cfg.artifacts.root, "evals", run.report.index_version, name)
    stage = staging_dir(cfg.artifacts.root)
    try:
        write_samples(run.samples, stage / "samples.parquet")
        atomic_write_json(stage / "report.json", {**report, "samples": "samples.parquet"})
        published = publish_directory(stage, dest, commit_file="report.json")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return join_uri(published, "report.json"), join_uri(published, "samples.parquet")


def store_decision(cfg: PipelineConfig, decision: GateDecision) -> str:
    data = decision.model_dump(mode="json")
    name = f"{decision.index_version}-{digest_of({k: v for k, v in data.items() if k != 'created_at'}, 12)}"
    dest = join_uri(cfg.artifacts.root, "decisions", name)
    stage = staging_dir(cfg.artifacts.root)
    try:
        atomic_write_json(stage / "decision.json", data)
        published = publish_directory(stage, dest, commit_file="decision.json")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return join_uri(published, "decision.json")


def load_rag_eval_report(uri: str) -> RagEvalReport:
    """A stored report.json (artifact store or local path)."""
    return load_eval_record(uri, RagEvalReport)


def load_gate_decision(uri: str) -> GateDecision:
    """A stored decision.json (artifact store or local path)."""
    return load_eval_record(uri, GateDecision)


def release_candidate(report: RagEvalReport, report_uri: str, decision: GateDecision, decision_uri: str) -> Candidate:
    """What a release binds from the candidate's report and this run's gate decision."""
    verdict = decision.verdict
    return Candidate(
        index_version=report.index_version,
        base_model=report.model.base,
        adapter_version=report.model.adapter_version,
        adapter_uri=report.model.adapter_uri,
        metrics=report.metric_values(),
        report_uri=report_uri,
        decision_uri=decision_uri,
        gates_passed=verdict.passed,
        gate_outcome=GateOutcome(**verdict.counts.model_dump(), summary=verdict.summary),
    )
