"""Promotion gates: absolute floors and no-regression against the production baseline, like MLflow's
`MetricThreshold`.

Per gate (`GateConfig`), on the candidate's metric value:
- floor: value >= floor for higher-is-better metrics; for lower-is-better ones the floor is a ceiling (value <= floor).
- max_drop: the regression `baseline - value` (`value - baseline` when lower is better) must be <= max_drop.
- max_relative_drop: the regression divided by |baseline| must be <= max_relative_drop. With a baseline of 0 any
  regression is an infinite relative drop (fails) and no regression passes.
Comparisons allow 1e-9 of float noise, so a drop of exactly max_drop passes.

A gated metric that is missing from the candidate's metrics or not measured FAILS with that reason: a metric that
could not be computed must never let a model through. Without a baseline (no production release yet) only floors
apply and the regression checks are "skipped: no baseline"; a baseline without a value for that metric skips them
with that reason. A gate with only regression checks then passes (nothing to compare with), and its reason says so.

Directions come from MetricValue.higher_is_better, else `directions`, else the known keys (`eval.metrics.DIRECTIONS`
and `retrieval.*`); a bare float for an unknown key fails its gate asking for a direction. No rules: the verdict
passes with no gates (the decision to gate nothing is the config's).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping

from llmops.config import GateConfig, GatesConfig

__all__ = ["GateResult", "GateVerdict", "evaluate_gates"]

_EPS = 1e-9


@dataclass(frozen=True)
class GateResult:
    metric: str
    value: float | None
    floor: float | None
    baseline: float | None
    max_drop: float | None
    max_relative_drop: float | None
    passed: bool
    reason: str  # every check and its outcome: "floor 0.3: 0.42 >= 0.3 ok; max_drop 0.05: skipped: no baseline"
    higher_is_better: bool | None = None  # None when unknown (the gate then failed)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> "GateResult":
        fields = {name: data[name] for name in cls.__dataclass_fields__ if name != "higher_is_better"}
        return cls(**fields, higher_is_better=data.get("higher_is_better"))


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    gates: tuple[GateResult, ...]
    baseline_source: str | None  # where the baseline came from (a report URI), None without one

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if not g.passed)

    def summary(self) -> str:
        if not self.gates:
            return "passed: no gates configured"
        if self.passed:
            return f"passed: all {len(self.gates)} gates"
        return "failed: " + "; ".join(f"{g.metric} ({g.reason})" for g in self.failed)

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "gates": [g.to_dict() for g in self.gates],
            "baseline_source": self.baseline_source,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "GateVerdict":
        return cls(
            passed=bool(data["passed"]),
            gates=tuple(GateResult.from_dict(g) for g in data["gates"]),
            baseline_source=data.get("baseline_source"),
        )


def _known_direction(metric: str) -> bool | None:
    from eval.metrics import DIRECTIONS

    if metric in DIRECTIONS:
        return DIRECTIONS[metric]
    if metric.startswith("retrieval."):  # recall@k, mrr@10, ndcg@10: all higher-is-better
        return True
    return None


def _as_float(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def evaluate_gates(
    metrics: Mapping[str, object],
    config: GatesConfig,
    baseline: Mapping[str, float | None] | None,
    directions: Mapping[str, bool] | None = None,
    *,
    baseline_source: str | None = None,
) -> GateVerdict:
    """Apply every rule in `config` to `metrics` ({key: MetricValue | float | None}).

    `baseline`: {key: value} of the current production release's report, or None when there is none.
    """
    results = tuple(_gate(rule, metrics, baseline, directions or {}) for rule in config.rules)
    return GateVerdict(
        passed=all(r.passed for r in results),
        gates=results,
        baseline_source=baseline_source if baseline is not None else None,
    )


def _gate(
    rule: GateConfig,
    metrics: Mapping[str, object],
    baseline: Mapping[str, float | None] | None,
    directions: Mapping[str, bool],
) -> GateResult:
    name = rule.metric
    base_value = _as_float(baseline.get(name)) if baseline is not None else None

    def result(value, passed: bool, reason: str, higher: bool | None) -> GateResult:
        return GateResult(name, value, rule.floor, base_value, rule.max_drop, rule.max_relative_drop, passed, reason,
                          higher)

    if name not in metrics:
        known = ", ".join(sorted(metrics)) or "none"
        return result(None, False, f"metric missing from the evaluation (is it enabled? reported: {known})",
                      directions.get(name, _known_direction(name)))
    raw = metrics[name]
    higher = getattr(raw, "higher_is_better", None)
    if higher is None:
        higher = directions.get(name, _known_direction(name))
    if hasattr(raw, "value"):  # a MetricValue
        why = getattr(raw, "reason", None)
        value = _as_float(raw.value)
        if value is None:
            detail = why or ("value is not finite" if raw.value is not None else "no reason given")
            return result(None, False, f"not measured: {detail}", higher)
    else:
        value = _as_float(raw)
        if value is None:
            return result(None, False, f"not measured: value is {raw!r}", higher)
    if higher is None:
        return result(value, False, f"direction unknown for {name!r}: pass directions={{{name!r}: True|False}}",
                      None)

    checks: list[_Check] = []
    if rule.floor is not None:
        ok = value >= rule.floor - _EPS if higher else value <= rule.floor + _EPS
        op = ">=" if higher else "<="
        kind = "floor" if higher else "ceiling"
        checks.append(_Check(ok, f"{kind} {rule.floor:g}: {value:.4g} {op if ok else _negate(op)} {rule.floor:g}"))
    if rule.max_drop is not None or rule.max_relative_drop is not None:
        checks += _regression_checks(rule, value, base_value, higher, baseline is not None)
    passed = all(c.ok for c in checks)
    reason = "; ".join(c.describe() for c in checks)
    return result(value, passed, reason, higher)


@dataclass(frozen=True)
class _Check:
    ok: bool
    text: str
    skipped: str | None = None  # why the check did not run

    def describe(self) -> str:
        if self.skipped:
            return f"{self.text}: skipped: {self.skipped}"
        return f"{self.text} {'ok' if self.ok else 'FAILED'}"


def _negate(op: str) -> str:
    return {">=": "<", "<=": ">"}[op]


def _regression_checks(
    rule: GateConfig, value: float, base: float | None, higher: bool, have_baseline: bool
) -> list[_Check]:
    limits = [(label, limit) for label, limit in (("max_drop", rule.max_drop),
                                                  ("max_relative_drop", rule.max_relative_drop)) if limit is not None]
    if not have_baseline:
        return [_Check(True, f"{label} {limit:g}", skipped="no baseline") for label, limit in limits]
    if base is None:
        return [_Check(True, f"{label} {limit:g}", skipped="baseline has no value for this metric")
                for label, limit in limits]
    drop = base - value if higher else value - base  # > 0: the candidate is worse than production
    checks = []
    for label, limit in limits:
        if label == "max_drop":
            text = f"max_drop {limit:g}: drop {drop:+.4g} from baseline {base:.4g}"
            checks.append(_Check(drop <= limit + _EPS, text))
        else:
            if base == 0:
                relative = math.inf if drop > _EPS else 0.0
            else:
                relative = drop / abs(base)
            checks.append(_Check(relative <= limit + _EPS,
                                 f"max_relative_drop {limit:g}: drop {relative:+.2%} from baseline {base:.4g}"))
    return checks
