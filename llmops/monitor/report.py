"""The monitor run's report and the files a gate or an alert reads.

    <artifacts.root>/monitor/<window end, %Y%m%dT%H%M%SZ>/
        report.json    the whole MonitorReport (the Deck and `llmops monitor` read it)
        metrics.json   flat {name: number} plus `window` and `release`: what a gate compares against thresholds
        metrics.prom   the gauges in Prometheus text format (node_exporter's textfile collector reads it)
    <artifacts.root>/monitor/latest.json   the newest window's files (a backfill of an older window leaves it)

With `monitoring.monitor.pushgateway_url` set, the same gauges are pushed to a Pushgateway, where the
PrometheusRule alerts in serving/deploy/ find them.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass

import fsspec
from pydantic import BaseModel, ConfigDict

from llmops.monitor.drift import DriftResult
from llmops.monitor.gaps import Gaps
from llmops.monitor.judge import JUDGE_METRICS, JudgeResult
from llmops.monitor.trends import Trends
from llmops.storage import join_uri, put_file
from llmops.workspace import scratch_dir

__all__ = [
    "GAUGES",
    "LogSummary",
    "MonitorFiles",
    "MonitorReport",
    "MonitorWindow",
    "flat_metrics",
    "prometheus_registry",
    "push_gauges",
    "read_latest",
    "write_monitor_files",
]

MONITOR_SCHEMA_VERSION = 1
STAMP = "%Y%m%dT%H%M%SZ"

# Prometheus gauge -> (metrics.json key, help). Names shared with serving/deploy's alerts (docs in common notes).
GAUGES = {
    "llmops_monitor_retrieval_drift": ("retrieval_drift", "retrieval relevance drift statistic vs the eval set"),
    "llmops_monitor_drift_exceeded": ("drift_exceeded", "1 when the drift statistic exceeds its threshold"),
    "llmops_monitor_negative_feedback_rate": ("negative_feedback_rate", "down ratings / rated requests"),
    "llmops_monitor_no_answer_rate": ("no_answer_rate", "not-in-the-documents refusals / requests"),
    "llmops_monitor_refusal_rate": ("refusal_rate", "content-filter refusals / requests"),
    "llmops_monitor_last_run_timestamp_seconds": ("last_run_timestamp_seconds", "when the monitor last ran"),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MonitorWindow(_Model):
    start: float
    end: float
    days: float

    @property
    def stamp(self) -> str:
        return dt.datetime.fromtimestamp(self.end, dt.timezone.utc).strftime(STAMP)

    def iso(self) -> tuple[str, str]:
        return tuple(dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")
                     for t in (self.start, self.end))


class LogSummary(_Model):
    files: int
    skipped_lines: int
    skip_reasons: list[str]
    open_files: int = 0  # local files still being written (`.jsonl.part`), not read
    note: str | None = None  # why records may be missing, and what to do (`llmops.requestlog.reader.unread_note`)


class MonitorReport(_Model):
    schema_version: int = MONITOR_SCHEMA_VERSION
    created_at: float  # Unix seconds
    window: MonitorWindow
    log: LogSummary
    release: str | None  # the reference release (its eval run and index)
    alias: str
    index_version: str | None
    trends: Trends
    drift: DriftResult
    gaps: Gaps
    judge: JudgeResult


@dataclass(frozen=True)
class MonitorFiles:
    folder: str
    report: str
    metrics: str
    prometheus: str
    latest: str
    latest_moved: bool


def flat_metrics(report: MonitorReport) -> dict[str, float]:
    """Every number a gate or an alert may want, flat; a value that was not measured is left out, never 0."""
    t, d, g = report.trends, report.drift, report.gaps
    values: dict[str, float | None] = {
        "requests": t.requests,
        "answered": t.answered,
        "no_answer_rate": t.no_answer_rate,
        "refusal_rate": t.refusal_rate,
        "negative_feedback_rate": t.negative_feedback_rate,
        "feedback_coverage": t.feedback_coverage,
        "rated": t.rated,
        "retrieval_drift": d.value,
        "drift_exceeded": None if d.exceeded is None else float(d.exceeded),
        "drift_threshold": d.threshold,
        "drift_p_value": d.p_value,
        "relevance_mean": d.production_mean,
        "gap_questions": g.questions,
        "gap_clusters": len(g.clusters),
        "skipped_lines": report.log.skipped_lines,
        "last_run_timestamp_seconds": report.created_at,
    }
    for stage in ("retrieval", "ttft", "total"):
        p = getattr(t.latency, stage)
        values |= {f"latency_{stage}_{q}_ms": getattr(p, f"{q}_ms") for q in ("p50", "p95", "p99")}
    for key in JUDGE_METRICS:
        values[key.replace(".", "_")] = report.judge.metrics.get(key)
    return {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}


def prometheus_registry(report: MonitorReport):
    """The monitor's gauges in a registry of their own (not the process's default one)."""
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    metrics = flat_metrics(report)
    for name, (key, help_text) in GAUGES.items():
        if key in metrics:
            Gauge(name, help_text, registry=registry).set(metrics[key])
    return registry


def push_gauges(report: MonitorReport, url: str, job: str) -> None:
    from prometheus_client import push_to_gateway

    push_to_gateway(url, job=job, registry=prometheus_registry(report), timeout=30)


def write_monitor_files(report: MonitorReport, artifacts_root: str) -> MonitorFiles:
    """Write the window's folder, then move latest.json to it unless it points at a later window already."""
    from prometheus_client import generate_latest

    folder = join_uri(artifacts_root, "monitor", report.window.stamp)
    start, end = report.window.iso()
    metrics = {**flat_metrics(report), "window": {"start": start, "end": end, "days": report.window.days},
               "release": report.release}
    latest_uri = join_uri(artifacts_root, "monitor", "latest.json")
    current = read_latest(artifacts_root)
    moves = current is None or current.get("window_end_seconds", 0) <= report.window.end
    with scratch_dir() as scratch:
        files = {
            "report.json": report.model_dump_json(indent=2),
            "metrics.json": json.dumps(metrics, indent=2, sort_keys=True),
            "metrics.prom": generate_latest(prometheus_registry(report)).decode(),
        }
        uris = {}
        for name, text in files.items():
            (scratch / name).write_text(text + ("" if text.endswith("\n") else "\n"), encoding="utf-8")
            uris[name] = put_file(scratch / name, join_uri(folder, name))
        if moves:
            latest = {"window_end": end, "window_end_seconds": report.window.end, "folder": folder,
                      "metrics": uris["metrics.json"], "report": uris["report.json"],
                      "prometheus": uris["metrics.prom"]}
            (scratch / "latest.json").write_text(json.dumps(latest, indent=2) + "\n", encoding="utf-8")
            put_file(scratch / "latest.json", latest_uri)
    return MonitorFiles(folder, uris["report.json"], uris["metrics.json"], uris["metrics.prom"], latest_uri, moves)


def read_latest(artifacts_root: str) -> dict | None:
    uri = join_uri(artifacts_root, "monitor", "latest.json")
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        return None
    with fs.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)
