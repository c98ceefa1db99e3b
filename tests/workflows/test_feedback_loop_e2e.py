"""The LLMOps loop end to end: ship, monitor, improve, ship again.

The quickstart pipeline runs into tmp (`pyflyte run workflows/pipeline.py llmops_pipeline`), its release is served
(the real FastAPI app over HTTP, the transformers backend, the request log on), users ask questions and rate
answers, the server logs them, `llmops feedback
export` writes the review file, a scripted reviewer fills it in, `llmops feedback merge` adds the reviewed questions
to the eval set and the fine-tune data, and the pipeline runs again: its evaluation includes the production
questions, and its release card and eval report say how many.

Progress is printed (`pytest -s`) so the run can be quoted.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from eval.stage import load_rag_eval_report
from llmops.config import load_config
from llmops.corpus.qa import read_qa
from llmops.feedback.merge import to_finetune
from llmops.feedback.review import normalize_question as normalize
from llmops.index.artifact import read_manifest
from llmops.index.tuning import select_questions
from llmops.release.registry import ReleaseRegistry
from llmops.requestlog.reader import read_window
from tests.conftest import REPO_ROOT
from tests.helpers import pyflyte_pipeline
from tests.serving.conftest import running_api

pytestmark = pytest.mark.slow

QUICKSTART = REPO_ROOT / "examples" / "quickstart"
FINETUNE_FRACTION = 0.34  # some reviewed answers become training data, the rest eval questions

# (question, rating, what the scripted reviewer does: a reference answer, "irrelevant", or None = skip)
TRAFFIC = [
    ("Which team owns the certificate rotation job?", "down", "The platform security team"),
    ("How do I check the replication lag before a failover?", "down", "Run `nimbusctl db lag` on the primary"),
    ("What happens to running jobs during a database failover?", "down", "They keep running; submissions queue"),
    ("Which Grafana dashboard shows scratch volume usage?", "down", "Nimbus / Node storage"),
    ("Can I bring my dog to the Berlin office?", "down", "irrelevant"),
    ("How long are audit logs kept?", "down", "400 days"),  # already an eval question: not exported again
    ("Which port must be open between worker nodes and the control plane?", "up", None),
    ("how do I check the  replication lag before a failover?", "down", None),  # same question, asked again later
]


def say(message: str) -> None:
    print(f"[loop] {message}", flush=True)


def run_pipeline(config: Path, env: dict) -> dict:
    """One `pyflyte run` of llmops_pipeline; its outputs (report, decision, passed, release)."""
    start = time.monotonic()
    outputs, _ = pyflyte_pipeline(config, env)
    say(f"pipeline done in {time.monotonic() - start:.0f} s: release {outputs['release']}, "
        f"gates passed={outputs['passed']}")
    return outputs


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    # The quickstart config with its data copied into tmp: the merge writes the eval set and the training data.
    qa_path = Path(shutil.copy(QUICKSTART / "qa.jsonl", tmp / "qa.jsonl"))
    train_path = Path(shutil.copy(QUICKSTART / "train.jsonl", tmp / "train.jsonl"))
    data = yaml.safe_load((REPO_ROOT / "configs" / "quickstart.yaml").read_text())
    data["corpus"]["sources"][0]["path"] = str(QUICKSTART / "corpus")
    data["eval"]["qa_path"] = str(qa_path)
    data["artifacts"]["root"] = str(tmp / "artifacts")
    data["llm"]["model"] = str(REPO_ROOT / "examples" / "tiny-llm")
    data["finetune"].update(train_path=str(train_path), max_steps=4)
    data["monitoring"] = {"request_log": {"path": str(tmp / "request-log")},
                          "feedback": {"finetune_fraction": FINETUNE_FRACTION}}
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "RAGAS_DO_NOT_TRACK": "true",
           "FLYTE_SDK_LOGGING_LEVEL": "20", "HOME": str(tmp / "home"),
           "TMPDIR": str(tmp_path_factory.mktemp("flyte-tmp")),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return tmp, config, env


def serve_and_collect(config: Path, registry: ReleaseRegistry, release: str) -> None:
    """Serve the production release with the request log on, ask TRAFFIC's questions over HTTP, rate the answers;
    the server's graceful shutdown finishes the log file."""
    cfg = load_config(config).resolved()
    cfg = cfg.model_copy(update={"serving": cfg.serving.model_copy(update={"watch_interval_s": 0})})
    if registry.resolve("production") is None:  # the gates of the random model may fail: serve it anyway
        registry.promote(release, "production", force=True, reason="feedback loop test")
    with running_api(cfg) as (base, _):
        say(f"serving release {release} at {base}")
        with httpx.Client(base_url=base, timeout=300) as client:
            for question, rating, _ in TRAFFIC:
                r = client.post("/v1/chat/completions",
                                json={"model": "rag", "messages": [{"role": "user", "content": question}]})
                assert r.status_code == 200, r.text
                body = r.json()
                f = client.post("/v1/feedback", json={"response_id": body["id"], "rating": rating,
                                                      "comment": "scripted user"})
                assert f.status_code == 200, f.text
                refusal = (body.get("refusal") or {}).get("kind")
                say(f"asked {question!r}: {'refused (' + refusal + ')' if refusal else 'answered'}, rated {rating}")


def test_production_questions_flow_into_the_next_release(loop):
    tmp, config, env = loop
    runner = CliRunner()
    registry = ReleaseRegistry(str(tmp / "artifacts" / "registry"))
    eval_before = read_qa(tmp / "qa.jsonl")

    say("1/8 ship: the quickstart pipeline into tmp")
    first = run_pipeline(config, env)

    say("2/8 serve the release, send questions, give feedback")
    serve_and_collect(config, registry, first["release"])  # the server logs each request and rating
    logged = read_window(str(tmp / "request-log"), time.time() - 3600, time.time() + 60)
    assert (len(logged.requests), len(logged.feedback), logged.skipped_lines) == (len(TRAFFIC), len(TRAFFIC), 0)
    say(f"request log: {logged.files} file(s), {len(logged.requests)} requests, {len(logged.feedback)} ratings")

    say("3/8 monitor: pyflyte run workflows/monitor.py monitor on the log")
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("pyflyte")), "run", "workflows/monitor.py", "monitor",
         "--config", str(config)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    latest = json.loads((tmp / "artifacts" / "monitor" / "latest.json").read_text())
    metrics = json.loads(Path(latest["metrics"]).read_text())
    assert metrics["requests"] == len(TRAFFIC)
    assert metrics["negative_feedback_rate"] == pytest.approx(7 / 8)
    say(f"monitor: {int(metrics['requests'])} requests, "
        f"negative feedback rate {metrics['negative_feedback_rate']:.3f}, "
        f"no-answer rate {metrics['no_answer_rate']:.3f}, release {metrics.get('release')}")

    say("4/8 export the questions worth a review")
    review = tmp / "review.jsonl"
    res = runner.invoke(app, ["feedback", "export", "--config", str(config), "--days", "1", "--out", str(review)])
    assert res.exit_code == 0, res.output
    print(res.output, flush=True)
    rows = [json.loads(line) for line in review.read_text().splitlines()]
    by_question = {row["question"]: row for row in rows}
    rated_down = {q for q, rating, _ in TRAFFIC if rating == "down"}
    assert "how do I check the  replication lag before a failover?" in by_question  # the later of the two
    assert by_question["how do I check the  replication lag before a failover?"]["duplicates"] == 1
    known = "How long are audit logs kept?"  # in the eval set already: nobody is asked to review it
    assert known not in by_question and "1 question(s) left out: already in the eval set" in " ".join(res.output.split())
    assert rated_down - {"How do I check the replication lag before a failover?", known} <= set(by_question)

    say("5/8 review (scripted): a reference answer for some, one out of scope")
    reviews = {normalize(q): r for q, _, r in TRAFFIC if r is not None}
    for row in rows:
        decision = reviews.get(normalize(row["question"]))
        if decision == "irrelevant":
            row["irrelevant"] = True
        elif decision is not None:
            row["reference"] = decision
    review.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")

    say("6/8 merge into the eval set and the fine-tune data")
    res = runner.invoke(app, ["feedback", "merge", str(review), "--config", str(config)])
    assert res.exit_code == 0, res.output
    print(res.output, flush=True)
    eval_after = read_qa(tmp / "qa.jsonl")
    assert eval_after[:len(eval_before)] == eval_before  # existing questions and ids unchanged
    production = [q for q in eval_after if q.provenance is not None and q.provenance.source == "production"]
    references = {normalize(q) for q, _, r in TRAFFIC if r not in (None, "irrelevant", "400 days")}
    expected_eval = {q for q in references if not to_finetune(q, FINETUNE_FRACTION)}
    dog = normalize("Can I bring my dog to the Berlin office?")
    assert {normalize(q.question) for q in production} == expected_eval | {dog}
    assert [q.answerable for q in production if normalize(q.question) == dog] == [False]
    trained = [q for q in read_qa(tmp / "train.jsonl") if q.provenance is not None]
    assert {normalize(q.question) for q in trained} == references - expected_eval
    say(f"eval set: {len(production)} production question(s) added; fine-tune data: {len(trained)}")
    again = runner.invoke(app, ["feedback", "merge", str(review), "--config", str(config)])
    assert again.exit_code == 0 and read_qa(tmp / "qa.jsonl") == eval_after  # idempotent

    say("7/8 ship again: the pipeline re-runs on the new eval set and training data")
    second = run_pipeline(config, env)

    say("8/8 the new release and its evaluation")
    assert second["release"] != first["release"]
    release = registry.get(second["release"])
    report = load_rag_eval_report(second["report"])
    manifest = read_manifest(release.index_uri)
    cfg = load_config(config).resolved()
    evaluated = select_questions(eval_after, calibration_fraction=manifest.calibration_fraction,
                                 max_samples=cfg.eval.max_samples)
    expected = sum(1 for q in evaluated if q.provenance is not None and q.provenance.source == "production")
    assert report.production_questions == expected and expected > 0
    first_report = load_rag_eval_report(first["report"])
    assert first_report.production_questions == 0
    say(f"release {second['release']}: {report.production_questions} production question(s) of "
        f"{report.questions} evaluated (first release: {first_report.production_questions})")
    card = [p for p in Path(env["TMPDIR"]).rglob("deck.html")
            if "<h2>Release" in (text := p.read_text()) and second["release"] in text]
    assert card and f"{expected} of {report.questions} evaluated questions" in card[-1].read_text()
    say(f"release card: {card[-1]}")
