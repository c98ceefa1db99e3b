"""Retrieval score drift: are production's questions as well covered by the index as the eval set's were?

The quantity is the relevance score, a question's best dense (cosine) match in the index: what the answerability
check thresholds, logged per request (`RequestRecord.relevance`) and stored per eval question
(`SampleRecord.relevance`). It exists for refused questions too, which is where drift shows first (a top source
score would leave exactly those out).

The statistic is the two-sample Kolmogorov-Smirnov D: the largest gap between the two empirical cumulative
distributions, from 0 (same) to 1 (disjoint). It needs no bins (PSI's result depends on them, and on smoothing for
empty ones), is defined for the few dozen questions an eval set gives, and its threshold reads directly: 0.2 = at
some score, the shares of questions below it differ by 20 points. The p-value is reported beside it but not gated
on: with thousands of requests any difference is "significant".
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from llmops.config import DriftConfig

__all__ = ["DRIFT_STATISTICS", "DriftResult", "retrieval_drift"]

DRIFT_STATISTICS = {"ks": "two-sample Kolmogorov-Smirnov D"}
HISTOGRAM_BINS = 10  # the Deck's side-by-side distribution (display only; the statistic uses no bins)


class DriftResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    quantity: str = "relevance (best dense cosine of the question against the index)"
    statistic: str  # the config's key, e.g. "ks"
    statistic_name: str
    threshold: float
    value: float | None = None  # None: not measured (reason says why)
    exceeded: bool | None = None
    p_value: float | None = None
    production: int  # scored production requests
    reference: int  # scored eval questions
    reference_source: str | None = None  # the eval report the reference scores come from
    production_mean: float | None = None
    reference_mean: float | None = None
    bin_edges: list[float] = []
    production_share: list[float] = []
    reference_share: list[float] = []
    reason: str | None = None

    @property
    def measured(self) -> bool:
        return self.value is not None


def retrieval_drift(
    production: Sequence[float],
    reference: Sequence[float] | None,
    cfg: DriftConfig,
    *,
    reference_source: str | None = None,
    missing_reference: str = "no reference scores",
) -> DriftResult:
    """D between the production and reference scores, or not measured (with why) when either side is too small."""
    prod = np.asarray([p for p in production if np.isfinite(p)], dtype=float)
    ref = np.asarray([r for r in reference or () if np.isfinite(r)], dtype=float)
    base = dict(statistic=cfg.statistic, statistic_name=DRIFT_STATISTICS[cfg.statistic], threshold=cfg.threshold,
                production=len(prod), reference=len(ref), reference_source=reference_source,
                production_mean=float(prod.mean()) if len(prod) else None,
                reference_mean=float(ref.mean()) if len(ref) else None, **_histograms(prod, ref))
    if reference is None:
        return DriftResult(**base, reason=missing_reference)
    small = [f"{n} {what}" for n, what in ((len(prod), "scored production requests"), (len(ref), "eval questions"))
             if n < cfg.min_samples]
    if small:
        return DriftResult(**base, reason=f"too few to compare: {' and '.join(small)} (needs "
                                          f"monitoring.monitor.drift.min_samples = {cfg.min_samples})")
    from scipy.stats import ks_2samp

    result = ks_2samp(prod, ref)
    value = float(result.statistic)
    return DriftResult(**base, value=value, exceeded=value > cfg.threshold, p_value=float(result.pvalue))


def _histograms(prod: np.ndarray, ref: np.ndarray) -> dict:
    both = np.concatenate([prod, ref])
    if not len(both):
        return {}
    lo, hi = float(both.min()), float(both.max())
    if hi <= lo:
        hi = lo + 1e-6
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)

    def share(x: np.ndarray) -> list[float]:
        return (np.histogram(x, edges)[0] / len(x)).tolist() if len(x) else [0.0] * HISTOGRAM_BINS

    return {"bin_edges": edges.tolist(), "production_share": share(prod), "reference_share": share(ref)}
