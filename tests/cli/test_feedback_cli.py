"""`llmops feedback export` and `merge` from the terminal, on a request log laid out as serving writes it and a real
index + release registry (the default relevance threshold is the answering release's index threshold)."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from llmops.corpus.qa import read_qa
from llmops.release.registry import ReleaseRegistry
from tests.conftest import write_corpus
from tests.helpers import CORPUS, build, make_config
from tests.llmops.feedback.logs import rating, request, write_log
from tests.serving.conftest import release_for

runner = CliRunner()
THRESHOLD = 0.3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("feedback-cli")
    (tmp / "qa.jsonl").write_text(json.dumps({"question": "What is matcha?", "answers": ["powdered green tea"]}) + "\n")
    sections = {"answerability": {"threshold": THRESHOLD}, "eval": {"qa_path": str(tmp / "qa.jsonl")},
                "llm": {"model": "tiny", "backend": "transformers"},
                "monitoring": {"request_log": {"path": str(tmp / "log")}}}
    cfg = make_config(tmp, write_corpus(tmp / "corpus", CORPUS), **sections)
    out, _, _ = build(cfg)
    release = release_for(ReleaseRegistry(cfg.artifacts.registry_root), cfg, out.artifact_uri, out.version)
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), allow_unicode=True))
    now = time.time()
    write_log(tmp / "log", [
        request("ok", "Which volcano is in Sicily?", t=now - 600, relevance=0.6, release=release.release),
        request("low", "Who built the Shinkansen?", t=now - 500, relevance=0.25, release=release.release),
        request("down", "What is matcha?", t=now - 400, relevance=0.7, release=release.release),
        request("down2", "what is  MATCHA?", t=now - 300, relevance=0.2, release=release.release),
        request("unknown", "Old release question?", t=now - 200, relevance=0.01, release="r-gone"),
        rating("down", "down", t=now - 350, comment="too vague"),
    ])
    return tmp, path


def test_export_selects_by_feedback_and_the_release_threshold_then_merge_and_rerun(setup):
    tmp, config = setup
    review = tmp / "review.jsonl"
    res = runner.invoke(app, ["feedback", "export", "--config", str(config), "--days", "1", "--out", str(review)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in review.read_text().splitlines()]
    assert [r["response_id"] for r in rows] == ["low"]
    assert rows[0]["reasons"] == ["low_relevance"] and rows[0]["threshold"] == THRESHOLD
    # "what is MATCHA?" (rated down twice) is an eval question already: left out, so nobody reviews it again.
    # "unknown" (relevance 0.01) was answered by a release this registry does not know: no threshold to judge it
    output = " ".join(res.output.split())
    assert "1 question(s) to review (1 requests selected, 0 duplicate(s)" in output
    assert "1 question(s) left out: already in the eval set or the fine-tune data" in output
    print(res.output)

    rows[0]["reference"] = "JNR, the Japanese National Railways"
    # a reviewer who pastes in a question the eval set has: the merge skips it and says why
    rows.append({**rows[0], "response_id": "pasted", "question": "what is MATCHA?", "reference": None,
                 "irrelevant": True})
    review.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dry = runner.invoke(app, ["feedback", "merge", str(review), "--config", str(config), "--dry-run"])
    assert dry.exit_code == 0 and "would add 1 answerable and 0 unanswerable" in " ".join(dry.output.split())
    assert len(read_qa(tmp / "qa.jsonl")) == 1  # dry run: nothing written
    assert "already in the eval set" in dry.output  # "what is MATCHA?" is an eval question already
    res = runner.invoke(app, ["feedback", "merge", str(review), "--config", str(config)])
    assert res.exit_code == 0, res.output
    print(res.output)
    merged = read_qa(tmp / "qa.jsonl")
    assert [q.question for q in merged] == ["What is matcha?", "Who built the Shinkansen?"]
    assert merged[1].provenance.response_id == "low"
    again = runner.invoke(app, ["feedback", "merge", str(review), "--config", str(config)])
    assert again.exit_code == 0 and "added 0 answerable and 0 unanswerable" in " ".join(again.output.split())


def test_export_with_min_relevance_and_since(setup, tmp_path):
    tmp, shared = setup
    data = yaml.safe_load(shared.read_text())
    data["eval"]["qa_path"] = str(tmp_path / "empty-qa.jsonl")  # nothing known yet, whatever the test above merged
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True))
    review = tmp_path / "review-all.jsonl"
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    res = runner.invoke(app, ["feedback", "export", "--config", str(config), "--since", since,
                              "--min-relevance", "0.65", "--out", str(review)])
    assert res.exit_code == 0, res.output
    ids = [json.loads(line)["response_id"] for line in review.read_text().splitlines()]
    assert ids == ["ok", "low", "down2", "unknown"]  # 0.65 for every request, whichever release answered it


def test_errors_are_one_line_with_the_fix(setup, tmp_path):
    tmp, config = setup
    bad = tmp_path / "review.jsonl"
    bad.write_text('{"response_id": "x"}\n')
    res = runner.invoke(app, ["feedback", "merge", str(bad), "--config", str(config)])
    assert res.exit_code == 2 and "line 1: field `time`" in res.output
    res = runner.invoke(app, ["feedback", "export", "--config", str(config), "--since", "yesterday"])
    assert res.exit_code == 2 and "not an ISO date" in res.output
    no_log = tmp_path / "config.yaml"
    data = yaml.safe_load(config.read_text())
    data["monitoring"]["request_log"].pop("path")
    no_log.write_text(yaml.safe_dump(data, allow_unicode=True))
    res = runner.invoke(app, ["feedback", "export", "--config", str(no_log)])
    assert res.exit_code == 2 and "monitoring.request_log.path is not set" in res.output
