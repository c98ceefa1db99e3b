"""The shared metric contract (`base.py`) and `compute_metrics`: aggregation policy, keys, failure isolation."""

import json

import pytest

from eval.metrics import DIRECTIONS, build_metrics, compute_metrics
from eval.metrics.base import EvalSample, Metric, MetricValue, SampleFailure, SampleSkip, summarize
from eval.metrics.bleu import BleuMetric
from llmops.config import MetricsConfig, RagasConfig
from tests.conftest import MINILM

QIDS = ["q1", "q2", "q3"]


def test_summarize_means_valid_scores():
    value = summarize("m", [0.2, 0.4, 0.9], QIDS)
    assert value.value == pytest.approx(0.5) and value.measured and value.reason is None
    assert value.per_sample == (0.2, 0.4, 0.9)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), SampleFailure("judge returned invalid JSON")])
def test_one_failed_sample_makes_the_aggregate_not_measured(bad):
    value = summarize("m", [0.2, bad, 0.9], QIDS)
    assert value.value is None and not value.measured
    assert value.reason.startswith("1 of 3 samples failed; first (q2): ")
    assert value.per_sample == (0.2, None, 0.9)  # what did succeed stays visible per sample


def test_skipped_samples_are_left_out_and_counted():
    value = summarize("m", [0.2, SampleSkip("no reference contexts"), 0.6], QIDS)
    assert value.value == pytest.approx(0.4)
    assert value.reason == "scored 2 of 3 samples; left out: 1 with no reference contexts"
    none = summarize("m", [SampleSkip("no reference contexts")] * 3, QIDS)
    assert not none.measured and none.reason == "no sample applies: 3 with no reference contexts"
    assert summarize("m", [], []).reason == "no samples to score"


def test_corpus_aggregate_is_withheld_when_a_sample_failed():
    assert summarize("bleu", [0.1, 0.2, 0.3], QIDS, aggregate=0.25).value == 0.25
    assert summarize("bleu", [0.1, SampleFailure("x"), 0.3], QIDS, aggregate=0.25).value is None


def test_metric_value_round_trips_through_json():
    value = MetricValue("rouge_l", None, True, "library error", (0.5, None))
    assert MetricValue.from_dict(json.loads(json.dumps(value.to_dict()))) == value
    assert MetricValue("bleu", 0.3, True).to_dict()["per_sample"] is None


SAMPLES = [
    EvalSample("q1", "Where is Etna?", "Mount Etna is in Sicily.", ("Etna is on Sicily",),
               ("Mount Etna is an active volcano in Sicily.",), ("Mount Etna is an active volcano in Sicily.",)),
    EvalSample("q2", "富士山の高さは？", "富士山の標高は3776メートルです。", ("3776メートル",),
               ("富士山の標高は3776メートルである。",), (), lang="ja"),
]


def test_compute_metrics_reports_every_enabled_key_with_aligned_per_sample_scores():
    values = compute_metrics(SAMPLES, MetricsConfig(), MINILM)
    expected = {"bleu", "rouge_1", "rouge_2", "rouge_l", "ragas.context_recall", "ragas.context_precision",
                "ragas.semantic_similarity"}  # no bertscore configured, no judge
    assert set(values) == expected
    for key, value in values.items():
        assert value.name == key and value.higher_is_better is DIRECTIONS[key]
        assert value.per_sample is not None and len(value.per_sample) == len(SAMPLES)
    assert values["rouge_1"].measured and values["ragas.semantic_similarity"].measured
    # The Japanese sample has no reference contexts: it is left out of the context metrics, not scored 0.
    assert values["ragas.context_recall"].per_sample == (1.0, None)


def test_disabled_families_are_absent():
    config = MetricsConfig(bleu=False, rouge=True, ragas=RagasConfig(enabled=False))
    assert set(compute_metrics(SAMPLES, config, MINILM)) == {"rouge_1", "rouge_2", "rouge_l"}
    assert [m.name for m in build_metrics(MetricsConfig(), MINILM)] == ["bleu", "rouge", "ragas"]


def test_a_failing_family_is_not_measured_and_the_others_still_run(monkeypatch):
    def broken(self, samples):
        raise RuntimeError("sacrebleu exploded")

    monkeypatch.setattr(BleuMetric, "compute", broken)
    values = compute_metrics(SAMPLES, MetricsConfig(ragas=RagasConfig(enabled=False)), MINILM)
    assert not values["bleu"].measured
    assert values["bleu"].reason == "bleu failed: RuntimeError: sacrebleu exploded"
    assert values["bleu"].per_sample == (None, None)
    assert values["rouge_l"].measured


def test_a_family_that_omits_an_announced_key_is_reported(monkeypatch):
    class Partial(Metric):
        name, keys, primary_metric, higher_is_better = "partial", ("a", "b"), "a", {"a": True, "b": False}

        def compute(self, samples):
            return {"a": MetricValue("a", 1.0, True)}

    monkeypatch.setattr("eval.metrics.build_metrics", lambda config, model: [Partial()])
    values = compute_metrics(SAMPLES, MetricsConfig(), MINILM)
    assert values["a"].value == 1.0
    assert not values["b"].measured and values["b"].higher_is_better is False and "no b" in values["b"].reason


def test_directions_cover_every_documented_key():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "eval" / "README.md").read_text(encoding="utf-8")
    for key in DIRECTIONS:
        assert f"`{key}`" in readme, f"{key} is not documented in eval/README.md"
