"""Runs logged to a real MLflow server (SQLite backend, served artifacts) and read back through MLflow's client:
params, metrics and their step series, artifacts, nested runs; a server that is down; no mlflow without a URI."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from llmops.config import TrackingConfig, parse_config
from llmops.errors import ConfigError, TrackingError
from llmops.tracking.mlflow_log import log_run, redact_uri
from llmops.tracking.run import TrackedRun, flat_params, metric_key
from tests.conftest import REPO_ROOT
from tests.mlflow_server import closed_port_uri, mlflow_client as client, mlflow_server_uri, runs_of


@pytest.fixture(scope="module")
def server() -> str:
    return mlflow_server_uri()


def a_run(tmp_path: Path) -> TrackedRun:
    report = tmp_path / "report.json"
    report.write_text('{"metrics": {"rouge_l": 0.25}}', encoding="utf-8")
    return TrackedRun(
        kind="evaluate",
        label="base",
        params={**flat_params({"retrieval": {"k": 5, "mode": "hybrid"}, "stop": ["\n"]}, "config."),
                "model.name": "tiny"},
        metrics={"rouge_l": 0.25, "retrieval.recall@5": 1.0, "bertscore_f1": None, "nan": float("nan")},
        series={"train_loss": [(1, 2.5), (2, 2.0), (3, 1.25)]},
        artifacts={"report.json": report, "extra/renamed.json": report},
        texts={"deck.html": "<h1>Evaluation: base</h1>"},
        tags={"mlflow.source.git.commit": "abc123"},
        names={"model": "tiny", "index_version": "idx1"},
    )


def test_a_run_arrives_with_params_metrics_the_loss_curve_and_artifacts(server, tmp_path):
    cfg = TrackingConfig(mlflow_uri=server, experiment="arrives", run_name="{kind}-{label}-{index_version}",
                         tags={"team": "search"})
    run_id = log_run(cfg, a_run(tmp_path))

    (found,) = runs_of(server, "arrives")
    assert found.info.run_id == run_id and found.info.status == "FINISHED"
    assert found.info.run_name == "evaluate-base-idx1"
    assert found.data.params == {"config.retrieval.k": "5", "config.retrieval.mode": "hybrid",
                                 "config.stop": '["\\n"]', "model.name": "tiny"}
    # unmeasured (None) and non-finite values are left out; `@` is not allowed in MLflow keys
    assert found.data.metrics == {"rouge_l": 0.25, "retrieval.recall_at_5": 1.0, "train_loss": 1.25}
    history = client(server).get_metric_history(run_id, "train_loss")
    assert sorted((m.step, m.value) for m in history) == [(1, 2.5), (2, 2.0), (3, 1.25)]
    assert {"team": "search", "llmops.kind": "evaluate", "llmops.label": "base",
            "mlflow.source.git.commit": "abc123"}.items() <= found.data.tags.items()

    mlflow_client = client(server)
    assert {a.path for a in mlflow_client.list_artifacts(run_id)} == {"report.json", "deck.html", "extra"}
    assert [a.path for a in mlflow_client.list_artifacts(run_id, "extra")] == ["extra/renamed.json"]
    got = Path(mlflow_client.download_artifacts(run_id, "report.json", str(tmp_path / "down")))
    assert got.read_text(encoding="utf-8") == '{"metrics": {"rouge_l": 0.25}}'
    deck = Path(mlflow_client.download_artifacts(run_id, "deck.html", str(tmp_path / "down")))
    assert "Evaluation: base" in deck.read_text(encoding="utf-8")


def test_variants_are_runs_nested_under_their_comparison(server):
    cfg = TrackingConfig(mlflow_uri=server, experiment="nested")
    variants = {"qwen-greedy": {"rouge_l": 0.4, "latency_p50_s": 0.2}, "qwen-hot": {"rouge_l": 0.3, "latency_p50_s": 0.3}}
    parent = TrackedRun(kind="compare", label="cmp1", params={"variants": ", ".join(variants)})
    children = [TrackedRun(kind="variant", label=name, metrics=m, params={"sampling": name.split("-")[1]})
                for name, m in variants.items()]

    parent_id = log_run(cfg, parent, children)

    runs = {r.info.run_name: r for r in runs_of(server, "nested")}
    assert set(runs) == {"compare-cmp1", "variant-qwen-greedy", "variant-qwen-hot"}
    assert "mlflow.parentRunId" not in runs["compare-cmp1"].data.tags
    for name, metrics in variants.items():
        child = runs[f"variant-{name}"]
        assert child.data.tags["mlflow.parentRunId"] == parent_id
        assert child.data.metrics == metrics
    found = client(server).search_runs([runs["compare-cmp1"].info.experiment_id],
                                       filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    assert len(found) == 2


def test_a_tracking_server_that_is_down_is_a_warning_and_the_run_goes_on(caplog, tmp_path):
    uri = closed_port_uri()
    cfg = TrackingConfig(mlflow_uri=uri, max_retries=0, request_timeout_s=2)
    with caplog.at_level(logging.WARNING, logger="llmops.tracking"):
        assert log_run(cfg, a_run(tmp_path)) is None
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "llmops.tracking.mlflow_log"]
    assert f"the evaluate run 'evaluate-base' was not logged to MLflow at {uri}" in warning
    assert "tracking.required: true" in warning


def test_required_tracking_fails_the_task_when_the_server_is_down(tmp_path):
    cfg = TrackingConfig(mlflow_uri=closed_port_uri(), max_retries=0, request_timeout_s=2, required=True)
    with pytest.raises(TrackingError, match=r"not logged to MLflow at http://127\.0\.0\.1:\d+: .*tracking.required: false"):
        log_run(cfg, a_run(tmp_path))


def test_without_mlflow_installed_the_warning_says_how_to_install_it(monkeypatch, caplog, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # `import mlflow.tracking` raises ImportError
    with caplog.at_level(logging.WARNING, logger="llmops.tracking"):
        assert log_run(TrackingConfig(mlflow_uri="http://127.0.0.1:1"), a_run(tmp_path)) is None
    assert "pip install 'flyte-llmops[tracking]'" in caplog.text


def test_without_an_mlflow_uri_nothing_imports_mlflow():
    code = (
        "import sys, tempfile, pathlib\n"
        "import tasks.evaluate, tasks.finetune, tasks.tracking\n"
        "from llmops.config import TrackingConfig\n"
        "from llmops.tracking.mlflow_log import log_run\n"
        "from llmops.tracking.run import TrackedRun\n"
        "assert log_run(TrackingConfig(), TrackedRun(kind='evaluate', label='base')) is None\n"
        "tasks.tracking.track_evaluation('{}', None, '', '', '')\n"
        "tasks.tracking.track_finetune('{}', {}, None, False, '')\n"
        "loaded = sorted(m for m in sys.modules if m == 'mlflow' or m.startswith('mlflow.'))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_redacted_uris_keep_the_server_and_drop_credentials():
    assert redact_uri("https://alice:s3cret@mlflow.example.com:8443/base?token=t0k#x") == \
        "https://mlflow.example.com:8443/base"
    assert redact_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert redact_uri("databricks") == "databricks"


@pytest.mark.parametrize(("tracking", "problem"), [
    ({"mlflow_uri": "https://alice:s3cret@mlflow.example.com"}, "tracking.mlflow_uri: Value error, holds credentials"),
    ({"mlflow_uri": "https://mlflow.example.com/?token=abc"}, "tracking.mlflow_uri: Value error, holds credentials"),
    ({"run_name": "{kind}-{variant}"}, "tracking.run_name: Value error, unknown field(s) 'variant': use {kind}"),
    ({"run_name": "{kind"}, "tracking.run_name: Value error, '{kind': expected '}'"),
])
def test_a_bad_tracking_section_is_a_config_error_naming_the_field(tracking, problem):
    with pytest.raises(ConfigError) as err:
        parse_config({"corpus": {"sources": [{"kind": "directory", "path": "docs"}]}, "embedding": {"model": "m"},
                      "tracking": tracking})
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_keys_and_params_are_made_valid_for_mlflow():
    assert metric_key("retrieval.recall@5") == "retrieval.recall_at_5"
    assert metric_key("multi_turn.rouge (l)") == "multi_turn.rouge _l_"
    assert metric_key("../x//y") == "_/x/_/y"
    params = TrackedRun(kind="k", label="l", params={"long": "x" * 7000}).clean_params()
    assert len(params["long"]) == 6000 and params["long"].endswith("...(cut)")
    assert flat_params({"a": {"b": 1, "c": {}}, "d": None, "e": "s"}) == {"a.b": "1", "a.c": "{}", "d": "null", "e": "s"}
