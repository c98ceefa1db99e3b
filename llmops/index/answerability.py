"""Calibrating the answerability threshold ("answer only from the documents") at index time.

A question is answerable when its best dense match in the index (cosine similarity, `Retriever.best_dense_similarity`)
reaches the threshold. `threshold: auto` picks, on the calibration split of the eval set (the split fusion tuning
uses), the highest threshold that still keeps `target_answerable_recall` of the answerable questions; unanswerable
calibration questions, when there are any, only report the share of them it rejects. The result is recorded in the
index manifest, where serving and evaluation both read it.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from llmops.config import AnswerabilityConfig
from llmops.corpus.documents import QAExample, split_answerable
from llmops.index.artifact import AnswerabilitySection
from llmops.index.retriever import Retriever

__all__ = ["THRESHOLD_RESOLUTION", "calibrate_threshold", "resolve_answerability", "threshold_for_recall"]

# The threshold is rounded down to this step: a calibration question exactly at the boundary stays answerable when
# its score differs in the last float digits on another machine (CPU vs GPU embedding).
THRESHOLD_RESOLUTION = 1e-4


def threshold_for_recall(scores: Sequence[float], target: float) -> float:
    """The highest threshold t (rounded down to THRESHOLD_RESOLUTION) with share(score >= t) >= target."""
    if not len(scores):
        raise ValueError("no scores to calibrate on")
    ranked = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    keep = max(1, math.ceil(target * len(ranked) - 1e-9))  # questions that must stay answerable
    steps = math.floor(round(float(ranked[keep - 1]) / THRESHOLD_RESOLUTION, 6))  # round(): 0.6 / 1e-4 < 6000
    return round(steps * THRESHOLD_RESOLUTION, 10)


def calibrate_threshold(
    retriever: Retriever, calibration: Sequence[QAExample], target: float, fraction: float
) -> AnswerabilitySection | None:
    """The calibrated section, or None when the calibration split holds no answerable question."""
    answerable, unanswerable = split_answerable(calibration)
    if not answerable:
        return None
    # a follow-up in its concat form (no LLM at index time): what the chat path assesses when its rewrite falls back
    scores = retriever.best_dense_similarity([ex.search_query for ex in calibration])
    ok = scores[[ex.answerable for ex in calibration]]
    bad = scores[[not ex.answerable for ex in calibration]]
    threshold = threshold_for_recall(ok, target)
    rejected = float(np.mean(bad < threshold)) if len(bad) else None
    return AnswerabilitySection(
        threshold=threshold,
        threshold_from="calibrated",
        target_answerable_recall=target,
        calibration_fraction=fraction,
        answerable_questions=len(answerable),
        unanswerable_questions=len(unanswerable),
        answerable_kept=round(float(np.mean(ok >= threshold)), 4),
        unanswerable_rejected=None if rejected is None else round(rejected, 4),
        chosen_by=(
            f"calibrated on {len(answerable)} answerable calibration questions (keeps >= {target:.0%})"
            + (f"; rejects {rejected:.0%} of {len(unanswerable)} unanswerable ones" if rejected is not None else
               "; no unanswerable calibration questions")
        ),
    )


def resolve_answerability(
    config: AnswerabilityConfig,
    retriever: Retriever | None,
    calibration: Sequence[QAExample],
    fraction: float,
) -> AnswerabilitySection:
    """The manifest's section: the config's threshold, the calibrated one, or the fallback when `auto` has no
    answerable calibration question (no eval set)."""
    if config.threshold != "auto":
        return AnswerabilitySection(threshold=config.threshold, threshold_from="config", chosen_by="config")
    section = calibrate_threshold(retriever, calibration, config.target_answerable_recall, fraction) \
        if retriever is not None else None
    if section is not None:
        return section
    return AnswerabilitySection(
        threshold=config.fallback_threshold,
        threshold_from="fallback",
        chosen_by="fallback_threshold from the config: no answerable eval question to calibrate on",
    )
