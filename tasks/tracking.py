"""What the tasks log to MLflow (`tracking.mlflow_uri`): their records turned into `llmops.tracking` runs.

Where runs go is outside every stage key: no cached stage declares the `tracking` section (STAGES in
llmops/provenance/stage_inputs.py), and the tasks read it here from the whole config, after their stage's work. So
logging to another server (or turning tracking on) re-runs nothing, and a task that Flyte serves from its cache
runs no code and logs nothing: the run that computed the result was logged when it ran.

| record | MLflow run |
|---|---|
| an evaluation (`RagEvalReport`) | params: the config fields the evaluate stage read (`config.*`), model, adapter and index versions, git sha; metrics: every metric of the report, latency, tokens, time; artifacts: report.json, samples.parquet, deck.html |
| a fine-tune (`AdapterManifest`) | params: the config fields the fine-tune stage read, base model, adapter and index versions, hyperparameters as trained, git sha; metrics: the loss curves by optimizer step and the final losses; artifacts: adapter_manifest.json, deck.html |
| a comparison (`ComparisonReport`) | a parent run (comparison.json, deck.html, the best variant per metric as tags) with one nested run per variant (its metrics, latency, tokens, cost, what it was built from, its report.json and samples.parquet) |
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from eval.schemas import RagEvalReport
from llmops.config import PipelineConfig, TrackingConfig
from llmops.finetune.manifest import ADAPTER_MANIFEST, AdapterManifest
from llmops.htmlkit import page
from llmops.storage import fetch_file
from llmops.tracking.mlflow_log import log_run
from llmops.tracking.run import TrackedRun, flat_params

__all__ = [
    "comparison_runs",
    "evaluation_run",
    "finetune_run",
    "log_comparison",
    "track_evaluation",
    "track_finetune",
    "tracking_config",
]

DECK_FILE = "deck.html"


def tracking_config(config_json: str) -> TrackingConfig:
    """The run's `tracking` section, read from the whole config (a stage's view of it would refuse the field)."""
    return TrackingConfig.model_validate(json.loads(config_json).get("tracking") or {})


def _tags(git_sha: str | None, execution_id: str | None) -> dict[str, str]:
    tags = {"mlflow.source.git.commit": git_sha, "llmops.execution_id": execution_id}
    return {k: v for k, v in tags.items() if v}


def evaluation_run(
    report: RagEvalReport,
    *,
    report_file: Path | None,
    samples_file: Path | None,
    deck_html: str,
    kind: str = "evaluate",
    label: str | None = None,
) -> TrackedRun:
    """An evaluation as an MLflow run (a comparison's variants use it too, with kind "variant")."""
    model, lineage, latency = report.model, report.lineage, report.latency
    params = {
        **flat_params(report.config, "config."),
        "model.name": model.name,
        "model.base": model.base,
        "model.backend": model.backend,
        "adapter_version": model.adapter_version or "none",
        "index_version": report.index_version,
        "questions": str(report.questions),
        "primary_metric": report.primary_metric,
        "git_sha": lineage.git_sha,
        "code_version": lineage.code_version,
    }
    metrics = {name: m.value for name, m in report.metrics.items()} | {
        "latency.p50_s": latency.p50_s,
        "latency.p95_s": latency.p95_s,
        "latency.retrieval_mean_s": latency.retrieval_mean_s,
        "tokens.prompt_mean": latency.prompt_tokens_mean,
        "tokens.completion_mean": latency.completion_tokens_mean,
        "questions": report.questions,
        "seconds": report.seconds,
        "generation_seconds": report.generation_seconds,
    }
    artifacts = {name: path for name, path in (("report.json", report_file), ("samples.parquet", samples_file))
                 if path is not None}
    tags = _tags(lineage.git_sha, lineage.execution_id)
    if model.random_weights:
        tags["llmops.random_weights"] = "true"  # a test model: its scores are noise
    return TrackedRun(
        kind=kind,
        label=label or report.label,
        params=params,
        metrics=metrics,
        artifacts=artifacts,
        texts={DECK_FILE: page(f"Evaluation: {label or report.label}", deck_html)} if deck_html else {},
        tags=tags,
        names={"model": model.name, "index_version": report.index_version,
               "adapter_version": model.adapter_version, "execution": lineage.execution_id},
    )


def finetune_run(
    manifest: AdapterManifest, *, config: Mapping[str, Any], reused: bool, deck_html: str, manifest_file: Path
) -> TrackedRun:
    """A fine-tune as an MLflow run: its loss curves are step series. `config`: the fields the stage read."""
    tr = manifest.training
    params = {
        **flat_params(config, "config."),
        **flat_params(manifest.hyperparameters.model_dump(mode="json"), "trained."),
        "base_model": manifest.base_model.model,
        "base_model.digest": manifest.base_model.digest,
        "adapter_version": manifest.version,
        "index_version": manifest.index_version,
        "data.digest": manifest.data.digest,
        "device": tr.device,
        "precision": tr.precision,
        "git_sha": manifest.lineage.git_sha or "unknown",
    }
    metrics = {
        "final_train_loss": tr.final_train_loss,
        "initial_validation_loss": tr.initial_validation_loss,
        "final_validation_loss": tr.final_validation_loss,
        "steps": tr.steps,
        "epochs": tr.epochs,
        "seconds": tr.seconds,
        "data.train_records": manifest.data.train,
        "data.validation_records": manifest.data.validation,
    }
    tags = _tags(manifest.lineage.git_sha, manifest.lineage.execution_id)
    # A reused adapter was trained by an earlier run (same inputs): this run logs it again, marked, with its curves.
    tags["llmops.reused"] = str(reused).lower()
    return TrackedRun(
        kind="finetune",
        label=manifest.version,
        params=params,
        metrics=metrics,
        series={"train_loss": tr.train_loss, "validation_loss": tr.validation_loss},
        artifacts={ADAPTER_MANIFEST: manifest_file},
        texts={DECK_FILE: page("Fine-tune", deck_html)},
        tags=tags,
        names={"model": manifest.base_model.model, "index_version": manifest.index_version,
               "adapter_version": manifest.version, "execution": manifest.lineage.execution_id},
    )


def track_evaluation(config_json: str, report: RagEvalReport, report_uri: str, samples_uri: str, deck_html: str) -> None:
    """Log the evaluate task's run when `tracking.mlflow_uri` is set (a failure warns unless tracking.required)."""
    cfg = tracking_config(config_json)
    if cfg.mlflow_uri is None:
        return
    with tempfile.TemporaryDirectory(prefix="llmops-tracking-") as scratch:
        run = evaluation_run(report, report_file=fetch_file(report_uri, scratch),
                             samples_file=fetch_file(samples_uri, scratch), deck_html=deck_html)
        log_run(cfg, run)


def track_finetune(config_json: str, stage_config: Mapping[str, Any], manifest: AdapterManifest, reused: bool,
                   deck_html: str) -> None:
    """Log the fine-tune task's run when `tracking.mlflow_uri` is set."""
    cfg = tracking_config(config_json)
    if cfg.mlflow_uri is None:
        return
    with tempfile.TemporaryDirectory(prefix="llmops-tracking-") as scratch:
        manifest_file = Path(scratch, ADAPTER_MANIFEST)
        manifest_file.write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
        log_run(cfg, finetune_run(manifest, config=stage_config, reused=reused, deck_html=deck_html,
                                  manifest_file=manifest_file))


# ---------------------------------------------------------------------------------------------------------------
# Comparisons: one parent run, one nested run per variant
# ---------------------------------------------------------------------------------------------------------------

# A variant's figures besides its metrics, and what it was built from (eval.comparison.report.VariantResult).
VARIANT_FIGURES = ("latency_p50_s", "latency_p95_s", "prompt_tokens", "completion_tokens", "cost", "seconds")
VARIANT_PARAMS = ("prompt", "model", "sampling", "model_name", "backend", "endpoint", "currency")


def comparison_runs(record: Mapping[str, Any], deck_html: str, scratch: Path) -> tuple[TrackedRun, list[TrackedRun]]:
    """A comparison's JSON record (`ComparisonReport.model_dump(mode="json")`) as a parent run and one nested run
    per variant. Each variant's report.json and samples.parquet are fetched into `scratch` where they can be read
    (its config fields become params); a variant whose files are gone is logged from the comparison alone."""
    comparison_file = scratch / "comparison.json"
    comparison_file.write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    variants = list(record.get("variants") or ())
    best = {f"llmops.best.{c['name']}": ", ".join(c["best"]) for c in record.get("columns") or () if c.get("best")}
    parent = TrackedRun(
        kind="compare",
        label=str(record.get("id", "comparison")),
        params={"comparison_id": str(record.get("id")), "index_version": str(record.get("index_version")),
                "questions": str(record.get("questions")), "variants": ", ".join(v["name"] for v in variants),
                "disagreement_rouge_l": str(record.get("disagreement_rouge_l"))},
        metrics={"questions": record.get("questions"), "variants": len(variants)},
        artifacts={"comparison.json": comparison_file},
        texts={DECK_FILE: page("Comparison", deck_html)} if deck_html else {},
        tags=best,
        names={"index_version": record.get("index_version")},
    )
    children = []
    for i, variant in enumerate(variants):
        children.append(_variant_run(variant, record.get("index_version"), scratch / f"variant-{i}"))
    return parent, children


def _variant_run(variant: Mapping[str, Any], index_version: str | None, scratch: Path) -> TrackedRun:
    scratch.mkdir(parents=True, exist_ok=True)
    files = {name: _fetched(variant.get(key), scratch)
             for name, key in (("report.json", "report_uri"), ("samples.parquet", "samples_uri"))}
    params = {key: str(variant[key]) for key in VARIANT_PARAMS if variant.get(key) is not None}
    if files["report.json"] is not None:
        report = RagEvalReport.model_validate_json(files["report.json"].read_bytes())
        run = evaluation_run(report, report_file=files["report.json"], samples_file=files["samples.parquet"],
                             deck_html="", kind="variant", label=variant["name"])
        params = {**run.params, **params}
    metrics = {**(variant.get("metrics") or {}), **{k: variant.get(k) for k in VARIANT_FIGURES}}
    return TrackedRun(
        kind="variant",
        label=variant["name"],
        params=params,
        metrics=metrics,
        artifacts={name: path for name, path in files.items() if path is not None},
        names={"model": variant.get("model_name"), "index_version": index_version},
    )


def _fetched(uri: str | None, scratch: Path) -> Path | None:
    if not uri:
        return None
    try:
        path = fetch_file(uri, scratch)
    except (OSError, ValueError):  # a variant's files are gone from the store: log what the comparison has
        return None
    return path if path.is_file() else None


def log_comparison(cfg: PipelineConfig | TrackingConfig, report: BaseModel | Mapping[str, Any], deck_html: str) -> str | None:
    """Log a comparison (eval.comparison's `ComparisonReport`, or its JSON) as a parent run with one nested run
    per variant; the parent's run id, or None when tracking is off or failed (not required)."""
    tracking = cfg.tracking if isinstance(cfg, PipelineConfig) else cfg
    if tracking.mlflow_uri is None:
        return None
    record = report.model_dump(mode="json") if isinstance(report, BaseModel) else dict(report)
    with tempfile.TemporaryDirectory(prefix="llmops-tracking-") as scratch:
        parent, children = comparison_runs(record, deck_html, Path(scratch))
        return log_run(tracking, parent, children)
