"""Promotion gates: absolute floors and no-regression against the production baseline, like MLflow's
`MetricThreshold`.

Per gate (`GateConfig`), on the candidate's metric value:
- floor: value >= floor for higher-is-better metrics; for lower-is-better ones the floor is a ceiling (value <= floor).
- max_drop: the regression `baseline - value` (`value - baseline` when lower is better) must be <= max_drop.
- max_relative_drop: the regression divided by |baseline| must be <= max_relative_drop. With a baseline of 0 any
  regression is an infinite relative drop (fails) and no regression passes.
Comparisons allow 1e-9 of float noise, so a drop of exactly max_drop passes.

Every gate ends in one of three statuses, and only "passed" is a pass:
- failed: a check failed, or the metric is missing from the candidate's metrics, or not measured (None, NaN, inf):
  a metric that could not be computed must never let a model through;
- skipped: none of its checks could run. Floors always run, so only a gate made of regression checks is skipped, when
  there is no baseline value to compare with (no production release yet, or a baseline without that metric) and
  `on_missing_baseline` is "skip". With "fail" such a check fails instead;
- passed: at least one check ran and every check that ran passed (the reason lists the skipped ones).

The verdict passes when no gate failed and at least one gate passed. A verdict that checked nothing (no rules, or
every rule skipped) FAILS and says so: "nothing was checked" is not an approval.

Directions come from MetricValue.higher_is_better, else `directions`, else the metric classes'
(`eval.metrics.metric_direction`); a bare float for an unknown key fails its gate asking for a direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict

from llmops.config import GateConfig, GatesConfig

__all__ = ["GateResult", "GateStatus", "GateVerdict", "evaluate_gates"]

_EPS = 1e-9

GateStatus = Literal["passed", "failed", "skipped"]


class GateResult(BaseModel):
    """One gate's outcome; stored as it is in the gate decision (eval.schemas.GateDecision)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    value: float | None
    floor: float | None
    baseline: float | None
    max_drop: float | None
    max_relative_drop: float | None
    status: GateStatus
    reason: str  # every check and its outcome: "floor 0.3: 0.42 >= 0.3 ok; max_drop 0.05: skipped: no baseline"
    higher_is_better: bool | None = None  # None when unknown (the gate then failed)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"



@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    gates: tuple[GateResult, ...]
    baseline_source: str | None  # where the baseline came from (a report URI), None without one

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if g.failed)

    @property
    def skipped(self) -> tuple[GateResult, ...]:
        return tuple(g for g in self.gates if g.skipped)

    @property
    def checked(self) -> tuple[GateResult, ...]:
        """The gates that compared something (passed or failed)."""
        return tuple(g for g in self.gates if not g.skipped)

    def counts(self) -> dict[str, int]:
        return {status: sum(g.status == status for g in self.gates) for status in ("passed", "failed", "skipped")}

    def summary(self) -> str:
        """One line: the outcome, how many gates were checked, and which were skipped and why."""
        if not self.gates:
            return "failed: nothing was checked: no gate rules are configured (add gates.rules, e.g. a floor)"
        skipped = "; ".join(f"{g.metric} ({_skip_reason(g)})" for g in self.skipped)
        if not self.checked:
            return (f"failed: nothing was checked: all {len(self.gates)} gates skipped: {skipped}. Add a floor, "
                    "or compare with a baseline (gates.baseline_report)")
        parts = [f"{len(self.checked)} of {len(self.gates)} gates checked"]
        if self.failed:
            parts.append("failed: " + "; ".join(f"{g.metric} ({g.reason})" for g in self.failed))
        if skipped:
            parts.append(f"skipped: {skipped}")
        return ("passed: " if self.passed else "failed: ") + ", ".join(parts)


def _skip_reason(gate: GateResult) -> str:
    """"max_drop 0.05: skipped: no baseline" -> "no baseline" (the first skipped check's reason)."""
    marker = ": skipped: "
    first = next((part for part in gate.reason.split("; ") if marker in part), gate.reason)
    return first.split(marker, 1)[-1]


def _known_direction(metric: str) -> bool | None:
    from eval.metrics import metric_direction

    return metric_direction(metric)


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
    results = tuple(
        _gate(rule, metrics, baseline, directions or {}, config.on_missing_baseline) for rule in config.rules
    )
    return GateVerdict(
        # Approval needs evidence: no failure, and at least one gate that compared something.
        passed=any(r.passed for r in results) and not any(r.failed for r in results),
        gates=results,
        baseline_source=baseline_source if baseline is not None else None,
    )


def _gate(
    rule: GateConfig,
    metrics: Mapping[str, object],
    baseline: Mapping[str, float | None] | None,
    directions: Mapping[str, bool],
    on_missing_baseline: str,
) -> GateResult:
    name = rule.metric
    base_value = _as_float(baseline.get(name)) if baseline is not None else None

    def result(value, status: GateStatus, reason: str, higher: bool | None) -> GateResult:
        return GateResult(metric=name, value=value, floor=rule.floor, baseline=base_value, max_drop=rule.max_drop,
                          max_relative_drop=rule.max_relative_drop, status=status, reason=reason,
                          higher_is_better=higher)

    if name not in metrics:
        known = ", ".join(sorted(metrics)) or "none"
        return result(None, "failed", f"metric missing from the evaluation (is it enabled? reported: {known})",
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
            return result(None, "failed", f"not measured: {detail}", higher)
    else:
        value = _as_float(raw)
        if value is None:
            return result(None, "failed", f"not measured: value is {raw!r}", higher)
    if higher is None:
        return result(value, "failed", f"direction unknown for {name!r}: pass directions={{{name!r}: True|False}}",
                      None)

    checks: list[_Check] = []
    if rule.floor is not None:
        ok = value >= rule.floor - _EPS if higher else value <= rule.floor + _EPS
        op = ">=" if higher else "<="
        kind = "floor" if higher else "ceiling"
        checks.append(_Check(ok, f"{kind} {rule.floor:g}: {value:.4g} {op if ok else _negate(op)} {rule.floor:g}"))
    if rule.max_drop is not None or rule.max_relative_drop is not None:
        checks += _regression_checks(rule, value, base_value, higher, baseline is not None, on_missing_baseline)
    reason = "; ".join(c.describe() for c in checks)
    return result(value, _status(checks), reason, higher)


def _status(checks: list[_Check]) -> GateStatus:
    if any(not c.ok for c in checks):
        return "failed"
    if all(c.skipped for c in checks):
        return "skipped"  # nothing was compared: never a pass
    return "passed"


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
    rule: GateConfig, value: float, base: float | None, higher: bool, have_baseline: bool, on_missing_baseline: str
) -> list[_Check]:
    limits = [(label, limit) for label, limit in (("max_drop", rule.max_drop),
                                                  ("max_relative_drop", rule.max_relative_drop)) if limit is not None]
    if base is None:
        missing = "no baseline" if not have_baseline else "baseline has no value for this metric"
        if on_missing_baseline == "fail":
            return [_Check(False, f"{label} {limit:g}: {missing} (on_missing_baseline: fail)")
                    for label, limit in limits]
        return [_Check(True, f"{label} {limit:g}", skipped=missing) for label, limit in limits]
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
