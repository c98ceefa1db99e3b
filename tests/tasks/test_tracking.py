"""What the tasks log to a real MLflow server: the evaluate task run by flytekit (local execution, Flyte's local
cache) with the tiny LLM, a fine-tune's manifest with its loss curves, and a comparison with a nested run per variant.

Also the decision that `tracking` is outside every stage key: changing where runs go re-runs nothing, so the second
evaluation with another experiment is a cache hit, and a cache hit logs nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.schemas import RetrievalEvalReport
from llmops.provenance.stage_inputs import UndeclaredConfigRead, stage_keys
from tasks.common import decode_config
from tasks.tracking import evaluation_run, finetune_run, log_comparison
from llmops.config import TrackingConfig, parse_config
from llmops.tracking.mlflow_log import log_run
from tests.conftest import MINILM, REPO_ROOT, write_corpus
from tests.helpers import CORPUS, build
from tests.mlflow_server import mlflow_client as client, mlflow_server_uri, runs_of
from tests.tasks.test_finetune import TRAIN, VALIDATION, manifest

QA = [
    {"question": "When did the first Shinkansen line open?", "answers": ["1964"]},
    {"question": "Which volcano in Sicily is very active?", "answers": ["Mount Etna"]},
]


@pytest.fixture(scope="module")
def server() -> str:
    return mlflow_server_uri()


def config(tmp: Path, corpus: Path, qa: Path, **tracking):
    return parse_config({
        "corpus": {"sources": [{"kind": "directory", "path": str(corpus)}]},
        "embedding": {"model": MINILM, "shard_size": 4},
        "chunking": {"max_tokens": 64, "overlap_tokens": 8},
        "retrieval": {"k": 3, "fusion": {"dense_weight": 0.5}},  # fixed weight: no calibration split
        "answerability": {"threshold": 0.0},
        "eval": {"qa_path": str(qa), "metrics": {"bertscore": None}},
        "artifacts": {"root": str(tmp / "artifacts")},
        "llm": {"model": str(REPO_ROOT / "examples/tiny-llm"), "backend": "transformers", "max_model_len": 1024,
                "max_lora_rank": 8, "device": "cpu", "dtype": "float32"},
        "sampling": {"max_tokens": 8},
        "tracking": tracking,
    }).resolved()


@pytest.mark.slow
def test_the_evaluate_task_logs_its_report_and_a_cache_hit_logs_nothing(server, tmp_path, monkeypatch):
    from flytekit.core import local_cache
    from flytekit.types.directory import FlyteDirectory
    from flytekit.types.file import FlyteFile

    from tasks.evaluate import evaluate_model

    monkeypatch.setattr(local_cache, "CACHE_LOCATION", str(tmp_path / "flyte-cache"))
    monkeypatch.setattr(local_cache.LocalTaskCache, "_initialized", False)
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(q) + "\n" for q in QA), encoding="utf-8")
    corpus = write_corpus(tmp_path / "corpus", CORPUS)
    first = config(tmp_path, corpus, qa, mlflow_uri=server, experiment="evaluate-first")
    # required: had the task run again, it would have logged here or failed (not passed with nothing logged)
    elsewhere = config(tmp_path, corpus, qa, mlflow_uri=server, experiment="evaluate-elsewhere", required=True)
    # where runs go is in no stage's key, and no cached stage can read it
    assert stage_keys(first) == stage_keys(elsewhere) == stage_keys(config(tmp_path, corpus, qa))
    with pytest.raises(UndeclaredConfigRead):
        decode_config(first.model_dump_json(), "evaluate").tracking.mlflow_uri

    built, ingested, _ = build(first)
    report_file = tmp_path / "retrieval.json"
    report_file.write_text(RetrievalEvalReport(index_version=built.version, default_mode="hybrid", modes={"hybrid": {
        "mode": "hybrid", "metrics": {"recall@5": 1.0}, "questions": 2, "unjudgeable": 0,
        "primary_metric": "recall@5", "greater_is_better": True}}).model_dump_json(), encoding="utf-8")

    def evaluate(cfg):
        return evaluate_model(config_json=cfg.model_dump_json(), stage_key=stage_keys(cfg)["evaluate"],
                              index=FlyteDirectory(built.artifact_uri), qa_uri=ingested.qa_uri,
                              documents_uri=ingested.documents_uri, retrieval_report=FlyteFile(str(report_file)),
                              label="base")

    out = evaluate(first)
    (run,) = runs_of(server, "evaluate-first")
    stored = json.loads(Path(out.report_uri).read_text(encoding="utf-8"))
    assert run.info.run_name == "evaluate-base"
    params, metrics = run.data.params, run.data.metrics
    assert params["index_version"] == built.version and params["adapter_version"] == "none"
    assert params["git_sha"] == stored["lineage"]["git_sha"] == run.data.tags["mlflow.source.git.commit"]
    assert params["config.retrieval.k"] == "3" and params["config.sampling.max_tokens"] == "8"
    assert not any(p.startswith(("config.tracking", "config.serving", "config.corpus")) for p in params)  # not read
    assert metrics["retrieval.recall_at_5"] == 1.0
    assert metrics["rouge_l"] == stored["metrics"]["rouge_l"]["value"]
    assert metrics["questions"] == 2 and run.data.tags["llmops.random_weights"] == "true"
    artifacts = {a.path for a in client(server).list_artifacts(run.info.run_id)}
    assert artifacts == {"report.json", "samples.parquet", "deck.html"}
    logged = client(server).download_artifacts(run.info.run_id, "report.json", str(tmp_path / "down"))
    assert json.loads(Path(logged).read_text(encoding="utf-8")) == stored

    again = evaluate(elsewhere)  # served from Flyte's cache: no code runs, nothing is logged
    assert again == out
    assert runs_of(server, "evaluate-elsewhere") == []


def test_a_finetune_logs_its_loss_curves_by_step(server, tmp_path):
    adapter = manifest()
    manifest_file = tmp_path / "adapter_manifest.json"
    manifest_file.write_text(adapter.model_dump_json(), encoding="utf-8")
    run = finetune_run(adapter, config={"finetune": {"learning_rate": 2e-4}, "llm": {"model": "Qwen"}}, reused=False,
                       deck_html="<section><h2>Adapter</h2></section>", manifest_file=manifest_file)
    run_id = log_run(TrackingConfig(mlflow_uri=server, experiment="finetune"), run)

    (found,) = runs_of(server, "finetune")
    assert found.info.run_id == run_id and found.info.run_name == f"finetune-{adapter.version}"
    mlflow_client = client(server)
    assert [(m.step, m.value) for m in mlflow_client.get_metric_history(run_id, "train_loss")] == \
        [tuple(p) for p in TRAIN]
    assert [(m.step, m.value) for m in mlflow_client.get_metric_history(run_id, "validation_loss")] == \
        [tuple(p) for p in VALIDATION]
    assert found.data.metrics["final_validation_loss"] == 6.1
    params = found.data.params
    assert params["adapter_version"] == adapter.version and params["config.finetune.learning_rate"] == "0.0002"
    assert params["trained.lora.r"] == "8" and params["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert found.data.tags["llmops.reused"] == "false"
    assert {a.path for a in mlflow_client.list_artifacts(run_id)} == {"adapter_manifest.json", "deck.html"}


def test_a_comparison_is_a_parent_run_with_a_nested_run_per_variant(server, tmp_path):
    """On a hand-built record shaped like eval.comparison's ComparisonReport JSON (model_dump(mode="json"))."""
    from tests.tasks.test_eval_decks import report

    stored = tmp_path / "evals" / "greedy" / "report.json"
    stored.parent.mkdir(parents=True)
    stored.write_text(report(rouge=0.4).model_dump_json(), encoding="utf-8")
    variant = {"prompt": "config", "model": "tiny", "model_name": "examples/tiny-llm", "backend": "transformers",
               "endpoint": "self-hosted", "latency_p95_s": 0.5, "prompt_tokens": 600, "completion_tokens": 64,
               "currency": None, "seconds": 3.0}
    record = {
        "kind": "comparison", "id": "cmp123", "index_version": "idx-1", "questions": 2, "disagreement_rouge_l": 0.5,
        "variants": [
            {**variant, "name": "greedy", "sampling": "greedy", "report_uri": str(stored), "samples_uri": None,
             "metrics": {"rouge_l": 0.4, "retrieval.recall@5": 1.0}, "latency_p50_s": 0.3, "cost": None},
            {**variant, "name": "hot", "sampling": "hot", "report_uri": str(tmp_path / "gone" / "report.json"),
             "samples_uri": None, "metrics": {"rouge_l": 0.2, "retrieval.recall@5": 1.0}, "latency_p50_s": 0.2,
             "cost": 0.01},
        ],
        "columns": [{"name": "rouge_l", "higher_is_better": True, "best": ["greedy"]},
                    {"name": "latency_p50_s", "higher_is_better": False, "best": ["hot"]},
                    {"name": "bertscore_f1", "higher_is_better": True, "best": []}],
        "per_question": [],
    }
    cfg = TrackingConfig(mlflow_uri=server, experiment="compare")
    parent_id = log_comparison(cfg, record, "<section><h2>Metrics</h2></section>")

    runs = {r.info.run_name: r for r in runs_of(server, "compare")}
    assert set(runs) == {"compare-cmp123", "variant-greedy", "variant-hot"}
    parent = runs["compare-cmp123"]
    assert parent.info.run_id == parent_id
    assert parent.data.tags["llmops.best.rouge_l"] == "greedy" and parent.data.tags["llmops.best.latency_p50_s"] == "hot"
    assert parent.data.params["variants"] == "greedy, hot"
    assert {a.path for a in client(server).list_artifacts(parent_id)} == {"comparison.json", "deck.html"}
    greedy, hot = runs["variant-greedy"], runs["variant-hot"]
    assert greedy.data.tags["mlflow.parentRunId"] == hot.data.tags["mlflow.parentRunId"] == parent_id
    assert greedy.data.metrics["rouge_l"] == 0.4 and hot.data.metrics["cost"] == 0.01
    assert "cost" not in greedy.data.metrics  # unpriced
    assert greedy.data.params["sampling"] == "greedy" and greedy.data.params["model.name"] == "examples/tiny-llm"
    assert {a.path for a in client(server).list_artifacts(greedy.info.run_id)} == {"report.json"}
    assert client(server).list_artifacts(hot.info.run_id) == []  # its report is gone: logged from the comparison
