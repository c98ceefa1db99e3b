"""The monitor's files (metrics.json, metrics.prom, report.json, latest.json) on a local folder and memory://, and
the gauges pushed over HTTP to a recording Pushgateway stand-in."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import fsspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from llmops.config import DriftConfig
from llmops.monitor.drift import retrieval_drift
from llmops.monitor.gaps import Gaps
from llmops.monitor.judge import JudgeResult
from llmops.monitor.report import (
    GAUGES, LogSummary, MonitorReport, MonitorWindow, flat_metrics, push_gauges, read_latest, write_monitor_files,
)
from llmops.monitor.trends import DAY_S, compute_trends
from llmops.requestlog.reader import LogWindow
from tests.llmops.monitor.synthetic import DAY0, feedback, request


def make_report(end: float = DAY0, drift_shift: float = 0.0, rated: bool = True) -> MonitorReport:
    reqs = [request(i, end - 100 + i, relevance=0.5 + drift_shift) for i in range(30)]
    reqs.append(request(30, end - 10, refusal="not_in_documents", relevance=0.01))
    window = LogWindow(start=end - DAY_S, end=end, requests=reqs,
                       feedback={f.response_id: f for f in [feedback(reqs[0], "down"), feedback(reqs[1], "up")]}
                       if rated else {})
    ref = [0.5] * 30 + [0.01]  # what production scores without a shift
    return MonitorReport(
        created_at=end + 60, window=MonitorWindow(start=end - DAY_S, end=end, days=1.0),
        log=LogSummary(files=1, skipped_lines=0, skip_reasons=[]), release="r-0000000000000001", alias="production",
        index_version="idx", trends=compute_trends(window),
        drift=retrieval_drift([r.relevance for r in reqs], ref, DriftConfig()),
        gaps=Gaps(threshold=0.2, threshold_from="config", questions=1, not_in_documents=1, clustered=0),
        judge=JudgeResult(configured=False, reason="not configured"),
    )


@pytest.mark.parametrize("root", ["local", "memory"])
def test_files_are_written_beside_each_other_and_latest_moves_only_forward(root, tmp_path):
    root = str(tmp_path / "artifacts") if root == "local" else "memory://monitor-files"
    later = write_monitor_files(make_report(DAY0), root)
    assert later.folder.endswith("monitor/20260302T000000Z") and later.latest_moved
    fs, _ = fsspec.core.url_to_fs(later.metrics)
    metrics = json.loads(fs.cat(later.metrics))
    assert metrics["requests"] == 31 and metrics["no_answer_rate"] == pytest.approx(1 / 31)
    assert metrics["negative_feedback_rate"] == 0.5 and metrics["drift_exceeded"] == 0.0
    assert metrics["window"] == {"start": "2026-03-01T00:00:00+00:00", "end": "2026-03-02T00:00:00+00:00", "days": 1.0}
    assert metrics["release"] == "r-0000000000000001"
    assert all(isinstance(v, float) for k, v in metrics.items() if k not in ("window", "release"))
    assert MonitorReport.model_validate_json(fs.cat(later.report)) == make_report(DAY0)
    # A backfill of an earlier window writes its folder but leaves latest.json on the later one.
    earlier = write_monitor_files(make_report(DAY0 - DAY_S), root)
    assert not earlier.latest_moved and read_latest(root)["metrics"] == later.metrics
    assert write_monitor_files(make_report(DAY0 + DAY_S), root).latest_moved


def test_metrics_prom_holds_the_shared_gauges(tmp_path):
    files = write_monitor_files(make_report(drift_shift=0.3), str(tmp_path))
    families = {f.name: f.samples[0].value for f in text_string_to_metric_families(open(files.prometheus).read())}
    assert set(families) == set(GAUGES)
    assert families["llmops_monitor_drift_exceeded"] == 1.0 and families["llmops_monitor_retrieval_drift"] > 0.9
    assert families["llmops_monitor_last_run_timestamp_seconds"] == DAY0 + 60


def test_what_was_not_measured_is_left_out_not_zero():
    metrics = flat_metrics(make_report(rated=False))
    assert "negative_feedback_rate" not in metrics  # nothing rated: no rate, not a 0 rate
    assert metrics["feedback_coverage"] == 0.0  # ... while no answer being rated is a coverage of 0
    assert "ragas_faithfulness" not in metrics and "latency_ttft_p50_ms" not in metrics


def test_gauges_are_pushed_to_the_pushgateway():
    received: list[tuple[str, str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):
            received.append(("PUT", self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        push_gauges(make_report(), f"http://127.0.0.1:{server.server_address[1]}", "llmops_monitor")
    finally:
        server.shutdown()
    ((method, path, body),) = received
    assert (method, path) == ("PUT", "/metrics/job/llmops_monitor")
    assert b"llmops_monitor_no_answer_rate" in body and b"llmops_monitor_drift_exceeded 0.0" in body
