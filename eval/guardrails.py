"""What the guardrails did in an evaluation run: how many answers they refused (by policy) and the latency they
added, as the report's `guardrails` section and as metrics gates can use (`guardrails.refusal_rate`, ...)."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from eval.metrics.base import MetricValue
from eval.runner import SampleRecord
from eval.schemas import GuardrailSummary

__all__ = ["guardrail_metrics", "guardrail_summary", "percentile"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank `q` quantile of `values` (None for none)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def guardrail_summary(records: Sequence[SampleRecord]) -> GuardrailSummary:
    refused = [r for r in records if r.refusal_kind == "content_filter"]
    added = [r.guard_s for r in records]
    return GuardrailSummary(
        questions=len(records),
        refusals=len(refused),
        refusal_rate=len(refused) / len(records) if records else None,
        by_policy=dict(sorted(Counter(r.refusal_policy or "unknown" for r in refused).items())),
        added_p50_s=percentile(added, 0.5),
        added_p95_s=percentile(added, 0.95),
    )


def guardrail_metrics(summary: GuardrailSummary) -> dict[str, MetricValue]:
    """`guardrails.refusal_rate` and the added latency's p50/p95 (lower is better for all three)."""
    values = {
        "guardrails.refusal_rate": summary.refusal_rate,
        "guardrails.added_p50_s": summary.added_p50_s,
        "guardrails.added_p95_s": summary.added_p95_s,
    }
    return {
        name: MetricValue(name=name, value=value, higher_is_better=False,
                          reason=None if value is not None else "no questions answered")
        for name, value in values.items()
    }
