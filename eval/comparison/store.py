"""Where comparisons live: `<artifacts.root>/comparisons/<id>/comparison.json`, written once, read back validated;
and reading a variant's stored evaluation (report.json + samples.parquet) back for a comparison."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from eval.comparison.report import COMPARISON_SCHEMA_VERSION, ComparedRun, ComparisonReport
from eval.runner import read_samples
from eval.schemas import RagEvalReport, load_eval_record
from llmops.config import PipelineConfig
from llmops.errors import EvalDataError
from llmops.records import validate_record
from llmops.storage import atomic_write_json, fetch_file, is_remote, join_uri, publish_directory, staging_dir

__all__ = ["comparison_uri", "load_comparison", "load_run", "store_comparison"]

COMPARISON_FILE = "comparison.json"
_ID = re.compile(r"^cmp-[0-9a-f]{6,64}$")
# what the compare workflow prints: `<root>/comparisons/cmp-<id>/comparison.json` (or its folder)
_PRINTED = re.compile(r"^(?:.*/)?comparisons/(cmp-[0-9a-f]{6,64})(?:/comparison\.json)?/?$")


def comparison_uri(cfg: PipelineConfig, comparison_id: str) -> str:
    """The stored comparison's URI; the id is checked first, so it cannot name a path outside comparisons/. The path
    the compare workflow prints is taken for its id (the id is a digest of what it compares)."""
    printed = _PRINTED.match(comparison_id)
    if printed:
        comparison_id = printed.group(1)
    if not _ID.match(comparison_id):
        raise EvalDataError(
            f"{comparison_id!r} is not a comparison id (cmp-<hex>): copy it from the compare workflow's output"
        )
    return join_uri(cfg.artifacts.root, "comparisons", comparison_id, COMPARISON_FILE)


def store_comparison(cfg: PipelineConfig, report: ComparisonReport) -> str:
    """Write `report` under the artifact root (once: the id is a digest of what it compares); returns its URI."""
    dest = join_uri(cfg.artifacts.root, "comparisons", report.id)
    stage = staging_dir(cfg.artifacts.root)
    try:
        atomic_write_json(stage / COMPARISON_FILE, report.model_dump(mode="json"))
        published = publish_directory(stage, dest, commit_file=COMPARISON_FILE)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return join_uri(published, COMPARISON_FILE)


def load_comparison(uri: str) -> ComparisonReport:
    import json

    with tempfile.TemporaryDirectory() as tmp:
        path = fetch_file(uri, tmp)
        if not path.is_file():
            raise EvalDataError(f"comparison {uri} does not exist: check the id with `ls <artifacts.root>/comparisons`")
        raw = json.loads(path.read_text(encoding="utf-8"))
    return validate_record(
        raw, ComparisonReport, COMPARISON_SCHEMA_VERSION, where=f"comparison {uri}", what="comparison",
        error=EvalDataError, remedy="Re-run the comparison with this version of llmops",
    )


def _report_uri(path_or_dir: str) -> str:
    """A report.json path, or the eval folder holding one."""
    if not is_remote(path_or_dir) and Path(path_or_dir).is_dir():
        return str(Path(path_or_dir) / "report.json")
    return path_or_dir


def load_run(path_or_dir: str, name: str | None = None, **info) -> ComparedRun:
    """A stored evaluation (report.json, or its folder) with its per-question samples, as one compared run."""
    report_uri = _report_uri(path_or_dir)
    report = load_eval_record(report_uri, RagEvalReport)
    if report.samples is None:
        raise EvalDataError(f"{report_uri} names no per-question samples: compare reports written by the eval stage")
    samples_uri = join_uri(report_uri.rsplit("/", 1)[0], report.samples)
    with tempfile.TemporaryDirectory() as tmp:
        samples = read_samples(fetch_file(samples_uri, tmp))
    return ComparedRun(name=name or report.label, report=report, samples=samples, report_uri=report_uri,
                       samples_uri=samples_uri, **info)
