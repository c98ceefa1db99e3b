"""Promotion gates: floors, regression against the production baseline, missing and not-measured metrics, skipped
gates and the verdict that checked nothing."""

import json

import pytest

from pydantic import ValidationError

from eval.gates import GateResult, GateVerdict, evaluate_gates
from eval.schemas import VerdictRecord
from eval.metrics.base import MetricValue
from llmops.config import GatesConfig


def gates(*rules) -> GatesConfig:
    return GatesConfig(rules=rules)


def mv(name, value, higher=True, reason=None):
    return MetricValue(name=name, value=value, higher_is_better=higher, reason=reason)


def only(verdict: GateVerdict) -> GateResult:
    assert len(verdict.gates) == 1
    return verdict.gates[0]


# ------------------------------------------------------------------------------------------------ floors


def test_floor_passes_at_and_above_and_fails_below():
    cfg = gates({"metric": "rouge_l", "floor": 0.3})
    assert evaluate_gates({"rouge_l": mv("rouge_l", 0.3)}, cfg, None).passed  # the floor itself passes
    assert evaluate_gates({"rouge_l": 0.42}, cfg, None).passed
    low = evaluate_gates({"rouge_l": mv("rouge_l", 0.29)}, cfg, None)
    assert not low.passed
    g = only(low)
    assert (g.metric, g.value, g.floor, g.status) == ("rouge_l", 0.29, 0.3, "failed")
    assert g.reason == "floor 0.3: 0.29 < 0.3 FAILED"


def test_floor_is_a_ceiling_for_lower_is_better_metrics():
    cfg = gates({"metric": "latency.p95_s", "floor": 2.0})
    ok = evaluate_gates({"latency.p95_s": mv("latency.p95_s", 1.5, higher=False)}, cfg, None)
    assert ok.passed and only(ok).higher_is_better is False and "ceiling 2" in only(ok).reason
    assert not evaluate_gates({"latency.p95_s": mv("latency.p95_s", 2.5, higher=False)}, cfg, None).passed
    # A bare float takes its direction from `directions`.
    assert not evaluate_gates({"latency.p95_s": 2.5}, cfg, None, {"latency.p95_s": False}).passed
    assert evaluate_gates({"latency.p95_s": 1.5}, cfg, None, {"latency.p95_s": False}).passed


def test_bare_float_of_unknown_direction_fails_asking_for_it():
    g = only(evaluate_gates({"my_metric": 0.9}, gates({"metric": "my_metric", "floor": 0.5}), None))
    assert not g.passed and "direction unknown" in g.reason and "directions=" in g.reason


def test_known_keys_have_directions_without_metric_values():
    cfg = gates({"metric": "retrieval.recall@5", "floor": 0.8}, {"metric": "bertscore_f1", "floor": 0.5})
    assert evaluate_gates({"retrieval.recall@5": 0.9, "bertscore_f1": 0.6}, cfg, None).passed
    assert not evaluate_gates({"retrieval.recall@5": 0.7, "bertscore_f1": 0.6}, cfg, None).passed


# ------------------------------------------------------------------------------------------------ regression


@pytest.mark.parametrize(
    "value, baseline, max_drop, passed",
    [
        (0.75, 0.80, 0.05, True),  # a drop of exactly max_drop passes (float noise tolerated)
        (0.74, 0.80, 0.05, False),
        (0.90, 0.80, 0.00, True),  # improvements always pass
        (0.80, 0.80, 0.00, True),
    ],
)
def test_absolute_drop_higher_is_better(value, baseline, max_drop, passed):
    cfg = gates({"metric": "rouge_l", "max_drop": max_drop})
    g = only(evaluate_gates({"rouge_l": mv("rouge_l", value)}, cfg, {"rouge_l": baseline}))
    assert g.passed is passed and g.baseline == baseline and g.max_drop == max_drop
    assert ("FAILED" in g.reason) is (not passed)


@pytest.mark.parametrize(
    "value, baseline, passed",
    [(1.1, 1.0, True), (1.11, 1.0, False), (0.5, 1.0, True)],  # lower is better: an increase is the regression
)
def test_absolute_drop_lower_is_better(value, baseline, passed):
    cfg = gates({"metric": "latency.p95_s", "max_drop": 0.1})
    metrics = {"latency.p95_s": mv("latency.p95_s", value, higher=False)}
    assert only(evaluate_gates(metrics, cfg, {"latency.p95_s": baseline})).passed is passed


@pytest.mark.parametrize(
    "value, baseline, higher, passed",
    [
        (0.45, 0.50, True, True),  # 10% relative drop, limit 10%
        (0.44, 0.50, True, False),  # 12%
        (1.10, 1.00, False, True),  # lower is better: +10% is a 10% regression
        (1.12, 1.00, False, False),
        (0.00, 0.00, True, True),  # baseline 0, no regression
        (-0.1, 0.00, True, False),  # baseline 0, any regression is infinitely large
    ],
)
def test_relative_drop_both_directions(value, baseline, higher, passed):
    cfg = gates({"metric": "m", "max_relative_drop": 0.1})
    g = only(evaluate_gates({"m": mv("m", value, higher)}, cfg, {"m": baseline}))
    assert g.passed is passed, g.reason
    assert g.max_relative_drop == 0.1


def test_all_checks_must_pass_and_each_is_reported():
    cfg = gates({"metric": "rouge_l", "floor": 0.3, "max_drop": 0.05, "max_relative_drop": 0.05})
    g = only(evaluate_gates({"rouge_l": mv("rouge_l", 0.35)}, cfg, {"rouge_l": 0.38}))
    # floor passes, absolute drop 0.03 <= 0.05 passes, relative drop 7.9% > 5% fails.
    assert not g.passed
    floor, absolute, relative = g.reason.split("; ")
    assert floor.endswith("ok") and absolute.endswith("ok") and relative.endswith("FAILED")
    assert "-0.03" not in absolute and "+0.03" in absolute


# ------------------------------------------------------------------------------------------------ baselines


def test_no_baseline_applies_floors_and_reports_regression_checks_as_skipped():
    cfg = gates({"metric": "rouge_l", "floor": 0.3, "max_drop": 0.01}, {"metric": "bleu", "max_relative_drop": 0.0})
    verdict = evaluate_gates({"rouge_l": mv("rouge_l", 0.35), "bleu": mv("bleu", 0.01)}, cfg, None,
                             baseline_source="s3://bucket/prod/report.json")
    assert verdict.passed and verdict.baseline_source is None  # no baseline was used
    rouge, bleu = verdict.gates
    # The floor ran, so the gate passed; its skipped regression check is named in the reason.
    assert rouge.status == "passed" and rouge.reason == "floor 0.3: 0.35 >= 0.3 ok; max_drop 0.01: skipped: no baseline"
    # Nothing could run for bleu: skipped, which is not a pass.
    assert bleu.status == "skipped" and not bleu.passed and not bleu.failed and bleu.baseline is None
    assert bleu.reason == "max_relative_drop 0: skipped: no baseline"
    assert verdict.counts() == {"passed": 1, "failed": 0, "skipped": 1}
    assert verdict.summary() == "passed: 1 of 2 gates checked, skipped: bleu (no baseline)"
    # ... while the floor still fails on its own.
    assert not evaluate_gates({"rouge_l": mv("rouge_l", 0.2), "bleu": 0.01}, cfg, None).passed


def test_baseline_without_the_metric_skips_its_regression_check():
    cfg = gates({"metric": "ragas.faithfulness", "floor": 0.5, "max_drop": 0.0})
    for baseline in ({"rouge_l": 0.4}, {"ragas.faithfulness": None}):
        verdict = evaluate_gates({"ragas.faithfulness": mv("ragas.faithfulness", 0.6)}, cfg, baseline,
                                 baseline_source="prod")
        g = only(verdict)
        assert g.passed and "max_drop 0: skipped: baseline has no value for this metric" in g.reason
        assert verdict.baseline_source == "prod"


def test_a_verdict_whose_every_gate_was_skipped_fails_saying_nothing_was_checked():
    """The quickstart's first release: ROUGE-L 0 behind regression-only gates must not be promoted."""
    cfg = gates({"metric": "rouge_l", "max_drop": 0.05}, {"metric": "bertscore_f1", "max_drop": 0.05})
    verdict = evaluate_gates({"rouge_l": mv("rouge_l", 0.0), "bertscore_f1": mv("bertscore_f1", 0.0)}, cfg, None)
    assert [g.status for g in verdict.gates] == ["skipped", "skipped"]
    assert not verdict.passed and verdict.failed == () and len(verdict.skipped) == 2
    assert verdict.summary().startswith(
        "failed: nothing was checked: all 2 gates skipped: rouge_l (no baseline); bertscore_f1 (no baseline)."
    )
    assert "Add a floor" in verdict.summary()
    # With a baseline, the same gates compare and pass.
    assert evaluate_gates({"rouge_l": 0.0, "bertscore_f1": 0.0}, cfg, {"rouge_l": 0.0, "bertscore_f1": 0.0}).passed


def test_no_rules_is_nothing_checked_and_fails():
    empty = evaluate_gates({"rouge_l": 0.3}, GatesConfig(), None)
    assert not empty.passed and empty.gates == ()
    assert empty.summary().startswith("failed: nothing was checked: no gate rules are configured")


@pytest.mark.parametrize("baseline", [None, {"bleu": 0.3}], ids=["no baseline", "baseline without the metric"])
def test_on_missing_baseline_fail_fails_the_regression_checks_it_cannot_run(baseline):
    rules = ({"metric": "rouge_l", "floor": 0.1, "max_drop": 0.05, "max_relative_drop": 0.1},)
    metrics = {"rouge_l": mv("rouge_l", 0.4)}
    skip = only(evaluate_gates(metrics, GatesConfig(rules=rules, on_missing_baseline="skip"), baseline))
    fail = only(evaluate_gates(metrics, GatesConfig(rules=rules, on_missing_baseline="fail"), baseline))
    missing = "no baseline" if baseline is None else "baseline has no value for this metric"
    assert skip.passed and skip.reason.count(f"skipped: {missing}") == 2
    assert fail.failed and "skipped" not in fail.reason
    assert fail.reason == (f"floor 0.1: 0.4 >= 0.1 ok; max_drop 0.05: {missing} (on_missing_baseline: fail) FAILED; "
                           f"max_relative_drop 0.1: {missing} (on_missing_baseline: fail) FAILED")
    # With a baseline value the policy has nothing to decide.
    assert evaluate_gates(metrics, GatesConfig(rules=rules, on_missing_baseline="fail"), {"rouge_l": 0.4}).passed


def test_on_missing_baseline_is_validated():
    from llmops.errors import ConfigError
    from llmops.config import parse_config

    with pytest.raises(ConfigError, match=r"gates.on_missing_baseline: Input should be 'skip' or 'fail'"):
        parse_config({"corpus": {"sources": [{"kind": "directory", "path": "x"}]}, "embedding": {"model": "m"},
                      "gates": {"on_missing_baseline": "pass", "rules": []}})


# ---------------------------------------------------------------------------------------- missing / not measured


def test_missing_metric_fails():
    g = only(evaluate_gates({"rouge_l": 0.5}, gates({"metric": "bertscore_f1", "floor": 0.1}), None))
    assert g.status == "failed" and g.value is None
    assert "missing" in g.reason and "rouge_l" in g.reason  # names what was reported


@pytest.mark.parametrize(
    "value, expected",
    [
        (MetricValue("ragas.faithfulness", None, True, "3 of 5 samples failed; first (q1): InstructorRetryException"),
         "not measured: 3 of 5 samples failed"),
        (MetricValue("ragas.faithfulness", float("nan"), True), "not measured: value is not finite"),
        (None, "not measured: value is None"),
        (float("nan"), "not measured: value is nan"),
    ],
)
def test_not_measured_metric_fails_even_with_only_regression_checks(value, expected):
    cfg = gates({"metric": "ragas.faithfulness", "max_drop": 1.0})
    for baseline in (None, {"ragas.faithfulness": 0.9}):
        for policy in ("skip", "fail"):  # never skipped: a gate on a metric that was not measured fails
            verdict = evaluate_gates({"ragas.faithfulness": value},
                                     GatesConfig(rules=cfg.rules, on_missing_baseline=policy), baseline)
            g = only(verdict)
            assert g.status == "failed" and g.reason.startswith(expected) and not verdict.passed


def test_verdict_fails_if_any_gate_fails():
    cfg = gates({"metric": "rouge_l", "floor": 0.1}, {"metric": "bleu", "floor": 0.5},
                {"metric": "bertscore_f1", "max_drop": 0.1})
    verdict = evaluate_gates({"rouge_l": 0.3, "bleu": 0.2, "bertscore_f1": 0.5}, cfg, None)
    assert not verdict.passed and [g.metric for g in verdict.failed] == ["bleu"]
    assert verdict.summary() == ("failed: 2 of 3 gates checked, failed: bleu (floor 0.5: 0.2 < 0.5 FAILED), "
                                 "skipped: bertscore_f1 (no baseline)")


# ------------------------------------------------------------------------------------------------ serialization


def test_verdict_json_round_trip():
    cfg = gates(
        {"metric": "rouge_l", "floor": 0.3, "max_drop": 0.05},
        {"metric": "ragas.faithfulness", "floor": 0.5},
        {"metric": "latency.p95_s", "floor": 3.0, "max_relative_drop": 0.2},
    )
    metrics = {
        "rouge_l": mv("rouge_l", 0.31),
        "ragas.faithfulness": mv("ragas.faithfulness", None, reason="judge unreachable"),
        "latency.p95_s": mv("latency.p95_s", 2.0, higher=False),
    }
    verdict = evaluate_gates(metrics, cfg, {"rouge_l": 0.34, "latency.p95_s": 1.5}, baseline_source="prod/report.json")
    data = json.loads(VerdictRecord.of(verdict).model_dump_json())
    assert VerdictRecord.model_validate(data).to_verdict() == verdict
    assert data["passed"] is False and data["baseline_source"] == "prod/report.json"
    assert set(data["gates"][0]) == {"metric", "value", "floor", "baseline", "max_drop", "max_relative_drop", "status",
                                     "reason", "higher_is_better"}
    assert [g["status"] for g in data["gates"]] == ["passed", "failed", "failed"]
    assert data["counts"] == {"passed": 1, "failed": 2, "skipped": 0} and data["summary"] == verdict.summary()
    with pytest.raises(ValidationError):
        GateResult.model_validate({k: v for k, v in data["gates"][0].items() if k != "status"})


def test_a_skipped_gate_is_stored_as_skipped_not_as_a_pass():
    cfg = gates({"metric": "retrieval.recall@5", "floor": 0.8}, {"metric": "rouge_l", "max_drop": 0.05})
    data = json.loads(VerdictRecord.of(evaluate_gates({"retrieval.recall@5": 0.9, "rouge_l": 0.0}, cfg, None)).model_dump_json())
    assert data["passed"] is True and [g["status"] for g in data["gates"]] == ["passed", "skipped"]
    assert "passed" not in data["gates"][1]  # no boolean a reader could take for a pass
    assert data["counts"] == {"passed": 1, "failed": 0, "skipped": 1}
    assert data["summary"] == "passed: 1 of 2 gates checked, skipped: rouge_l (no baseline)"
