"""End to end: `pyflyte run workflows/monitor.py monitor` on a request log in a folder, as a user runs it: the
metrics files land under the artifact root and the task's Deck renders in headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scripts.chromium import dom_text, find_chromium
from tests.conftest import MINILM, REPO_ROOT, write_corpus
from tests.helpers import CORPUS
from tests.llmops.monitor.synthetic import DAY0, OFF_TOPIC, ON_TOPIC, feedback, request, write_log

pytestmark = pytest.mark.slow


def test_pyflyte_run_monitor_writes_metrics_and_a_deck(tmp_path):
    reqs = [request(i, DAY0 - 7200 + i, question=q, relevance=0.6, ttft_ms=20.0) for i, q in enumerate(ON_TOPIC)]
    reqs += [request(100 + i, DAY0 - 3600 + i, question=q, relevance=0.05, refusal="not_in_documents")
             for i, q in enumerate(OFF_TOPIC["billing"])]
    reqs.append(request(200, DAY0 + 600, question="after the window"))  # the window ends at midnight
    write_log(str(tmp_path / "log"), [*reqs, feedback(reqs[0], "down")], extra_lines=["{broken"])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "corpus": {"sources": [{"kind": "directory", "path": str(write_corpus(tmp_path / "corpus", CORPUS))}]},
        "embedding": {"model": MINILM},
        "artifacts": {"root": str(tmp_path / "artifacts")},
        "monitoring": {"request_log": {"path": str(tmp_path / "log")}},
    }))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FLYTE_SDK_LOGGING_LEVEL": "20", "PYTHONPATH": str(REPO_ROOT),
           "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path / "flyte-tmp")}
    Path(env["TMPDIR"]).mkdir()
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("pyflyte")), "run", "workflows/monitor.py", "monitor",
         "--config", str(config), "--window_end", "2026-03-02T00:30:00", "--whole_days"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    folder = tmp_path / "artifacts" / "monitor" / "20260302T000000Z"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["requests"] == 9 and metrics["no_answer_rate"] == pytest.approx(4 / 9)
    assert metrics["negative_feedback_rate"] == 1.0 and metrics["skipped_lines"] == 1
    assert metrics["gap_questions"] == 4 and metrics["gap_clusters"] == 1
    assert "retrieval_drift" not in metrics  # no release to compare with: not measured, not 0
    assert "llmops_monitor_no_answer_rate" in (folder / "metrics.prom").read_text()
    latest = json.loads((tmp_path / "artifacts" / "monitor" / "latest.json").read_text())
    assert latest["metrics"] == str(folder / "metrics.json")

    (deck,) = [p for p in Path(env["TMPDIR"]).rglob("deck.html") if "Retrieval score drift" in p.read_text()]
    if find_chromium() is None:
        pytest.skip("chromium not installed: the deck was checked as HTML only")
    text = dom_text(deck)
    for heading in ("Traffic per hour", "Latency percentiles", "Retrieval score drift", "RAGAS judge",
                    "Questions the corpus does not cover", "Skipped log lines"):
        assert heading in text, heading
    assert "no release behind alias" in text and "not configured" in text
    assert OFF_TOPIC["billing"][0].replace("'", "&#x27;") in text or OFF_TOPIC["billing"][0] in text
    assert "not valid JSON" in text
