"""The evaluation and gate stages as plain functions (the Flyte tasks in tasks/evaluate.py wrap them).

`evaluate_model` runs the shared RAG chain for one model (base, or base + adapter) over the held-out eval set,
scores it and writes `report.json` + per-sample parquet. `decide` picks the candidate (the fine-tuned model when
there is one), applies the gates against the production baseline and writes the verdict.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from eval.gates import GateVerdict, evaluate_gates
from eval.metrics import compute_metrics
from eval.metrics.base import EvalSample, MetricValue
from eval.runner import SampleRecord, run_chain
from llmops.index.artifact import git_sha, library_versions, utc_now
from llmops.index.tuning import select_questions
from llmops.config import PipelineConfig
from llmops.corpus.documents import QAExample
from llmops.errors import EvalDataError
from llmops.llm.runtime import open_client
from llmops.rag.chain import RagChain
from llmops.index.retriever import Retriever
from llmops.provenance.stage_inputs import config_record, stage_code
from llmops.storage import atomic_write_json, digest_of, fetch_file, join_uri, publish_directory, staging_dir
from llmops.llm.tiny_llm import random_weights_info

__all__ = [
    "EvalRun",
    "REPORT_SCHEMA_VERSION",
    "decide",
    "evaluate_model",
    "flat_metrics",
    "load_report",
    "store_decision",
    "store_eval_run",
]

REPORT_SCHEMA_VERSION = 1
# Samples are ranked worst-first by this metric in the Deck; the first one that was measured is used.
PRIMARY_METRICS = ("rouge_l", "bertscore_f1", "bleu")


@dataclass
class EvalRun:
    report: dict
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
    retrieval_report: dict | None = None,
    execution_id: str | None = None,
    show_progress: bool = True,
) -> EvalRun:
    if cfg.llm is None:
        raise EvalDataError("evaluation needs an llm section in the config (the model to evaluate)")
    tuned = str(retriever.manifest.retrieval["fusion"].get("chosen_by", "")).startswith("tuned")
    questions = select_questions(
        examples,
        calibration_fraction=cfg.eval.calibration_fraction if tuned else None,
        max_samples=cfg.eval.max_samples,
    )
    if not questions:
        raise EvalDataError(
            "no eval questions left to answer: add eval.qa_path or a squad source to the config, or lower "
            "eval.calibration_fraction"
        )
    start = time.perf_counter()
    with open_client(cfg.llm, adapter_dir=adapter_dir, adapter_name=adapter_version) as client:
        chain = RagChain.from_config(cfg, retriever, client)
        records = run_chain(chain, questions, gold_texts, batch_size=cfg.llm.max_concurrency, show_progress=show_progress)
        model_name = client.model_name
    generation_s = time.perf_counter() - start
    metrics = compute_metrics(
        [_metric_sample(r) for r in records],
        cfg.eval.metrics,
        embedding_model=retriever.manifest.embedding["model"],
    )
    _attach_per_sample(records, metrics)
    metrics.update(_retrieval_metrics(retrieval_report))
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "rag_eval",
        "label": label,
        "created_at": utc_now(),
        "model": {
            "name": model_name,
            "base": cfg.llm.model,
            "adapter_version": adapter_version,
            "adapter_uri": adapter_uri,
            "backend": cfg.llm.backend,
            # A random test model (its folder's tiny_llm.json says so): the Deck says its answers are noise.
            "random_weights": random_weights_info(cfg.llm.model) is not None,
        },
        "index_version": retriever.version,
        "questions": len(records),
        "primary_metric": next((m for m in PRIMARY_METRICS if m in metrics and metrics[m].measured), "retrieval_hit"),
        "metrics": {name: _metric_dict(m) for name, m in sorted(metrics.items())},
        "latency": _latency(records),
        "seconds": round(time.perf_counter() - start, 3),
        "generation_seconds": round(generation_s, 3),
        "retrieval": retrieval_report,
        "config": config_record(cfg),
        "lineage": {
            "index_version": retriever.version,
            "adapter_version": adapter_version,
            "git_sha": git_sha(),
            "code_version": stage_code("evaluate").digest,
            "execution_id": execution_id,
            "libraries": library_versions(),
        },
    }
    if report["primary_metric"] == "retrieval_hit":
        for r in records:
            r.scores["retrieval_hit"] = float(r.retrieval_hit)
    return EvalRun(report, records)


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


def _attach_per_sample(records: list[SampleRecord], metrics: Mapping[str, MetricValue]) -> None:
    for name, m in metrics.items():
        if m.per_sample is None:
            continue
        for record, value in zip(records, m.per_sample, strict=True):
            record.scores[name] = value


def _retrieval_metrics(report: dict | None) -> dict[str, MetricValue]:
    """The index's retrieval metrics in its default mode, as `retrieval.<name>` (gates can use them)."""
    if not report or "modes" not in report:
        return {}
    mode = report["modes"].get(report.get("default_mode")) or next(iter(report["modes"].values()))
    return {
        f"retrieval.{name}": MetricValue(name=f"retrieval.{name}", value=float(value), higher_is_better=True)
        for name, value in mode["metrics"].items()
    }


def _metric_dict(m: MetricValue) -> dict:
    return {"value": m.value, "higher_is_better": m.higher_is_better, "reason": m.reason}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def _latency(records: Sequence[SampleRecord]) -> dict:
    latencies = [r.latency_s for r in records]
    return {
        "p50_s": _percentile(latencies, 0.5),
        "p95_s": _percentile(latencies, 0.95),
        "retrieval_mean_s": statistics.fmean(r.retrieval_s for r in records) if records else None,
        "prompt_tokens_mean": statistics.fmean(r.prompt_tokens for r in records) if records else None,
        "completion_tokens_mean": statistics.fmean(r.completion_tokens for r in records) if records else None,
    }


def flat_metrics(report: Mapping) -> dict[str, float | None]:
    """{metric: value} from a report.json (a production baseline, say)."""
    return {name: m["value"] for name, m in report.get("metrics", {}).items()}


def decide(
    cfg: PipelineConfig,
    reports: Mapping[str, dict],
    baseline_report: dict | None,
    baseline_source: str | None,
) -> dict:
    """Apply the gates to the candidate: the fine-tuned model when one was evaluated, else the base model."""
    candidate = "finetuned" if "finetuned" in reports else "base"
    report = reports[candidate]
    metrics = {
        name: MetricValue(name=name, value=m["value"], higher_is_better=m["higher_is_better"], reason=m["reason"])
        for name, m in report["metrics"].items()
    }
    baseline = flat_metrics(baseline_report) if baseline_report else None
    verdict: GateVerdict = evaluate_gates(metrics, cfg.gates, baseline, baseline_source=baseline_source)
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "kind": "gate_decision",
        "created_at": utc_now(),
        "candidate": candidate,
        "candidate_model": report["model"],
        "index_version": report["index_version"],
        "verdict": verdict.to_dict(),
        "on_missing_baseline": cfg.gates.on_missing_baseline,
        "compared": {label: {n: m["value"] for n, m in r["metrics"].items()} for label, r in reports.items()},
        "baseline": baseline,
    }


def store_eval_run(cfg: PipelineConfig, run: EvalRun) -> tuple[str, str]:
    """Write report.json + samples.parquet as one immutable folder under evals/; returns (report, samples) URIs."""
    from eval.runner import write_samples

    report = run.report
    name = f"{report['label']}-{digest_of({k: v for k, v in report.items() if k != 'created_at'}, 12)}"
    dest = join_uri(cfg.artifacts.root, "evals", report["index_version"], name)
    stage = staging_dir(cfg.artifacts.root)
    try:
        write_samples(run.samples, stage / "samples.parquet")
        atomic_write_json(stage / "report.json", {**report, "samples": "samples.parquet"})
        published = publish_directory(stage, dest, commit_file="report.json")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return join_uri(published, "report.json"), join_uri(published, "samples.parquet")


def store_decision(cfg: PipelineConfig, decision: dict) -> str:
    name = f"{decision['index_version']}-{digest_of({k: v for k, v in decision.items() if k != 'created_at'}, 12)}"
    dest = join_uri(cfg.artifacts.root, "decisions", name)
    stage = staging_dir(cfg.artifacts.root)
    try:
        atomic_write_json(stage / "decision.json", decision)
        published = publish_directory(stage, dest, commit_file="decision.json")
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return join_uri(published, "decision.json")


def load_report(uri: str) -> dict:
    """A report.json (or decision.json) from the artifact store or a local path."""
    with tempfile.TemporaryDirectory() as tmp:
        path = fetch_file(uri, tmp)
        if not path.is_file():
            raise EvalDataError(f"report {uri} does not exist")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise EvalDataError(f"report {uri} is not valid JSON ({e.msg})") from None
