"""Abstention ("answer only from the documents"): how often the chat path refused, per kind of question.

    answerability.refusal_rate_unanswerable   refused / unanswerable questions   higher is better
    answerability.refusal_rate_answerable     refused / answerable questions     lower is better

A rate over no question is not measured (a gate on it fails: an eval set without unanswerable questions cannot show
that the system abstains). Refusal does not depend on the LLM: it happens before generation, on the index's
threshold (llmops.chat.answerability).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from eval.metrics.base import MetricValue, not_measured

__all__ = ["DIRECTIONS", "REFUSAL_RATE_ANSWERABLE", "REFUSAL_RATE_UNANSWERABLE", "RefusalCounts", "refusal_metrics"]

REFUSAL_RATE_UNANSWERABLE = "answerability.refusal_rate_unanswerable"
REFUSAL_RATE_ANSWERABLE = "answerability.refusal_rate_answerable"
DIRECTIONS = {REFUSAL_RATE_UNANSWERABLE: True, REFUSAL_RATE_ANSWERABLE: False}


@dataclass(frozen=True)
class RefusalCounts:
    answerable: int
    unanswerable: int
    refused_answerable: int
    refused_unanswerable: int

    @classmethod
    def of(cls, answerable: Sequence[bool], refused: Sequence[bool]) -> "RefusalCounts":
        """Per question: whether it is answerable, and whether the chat path refused it."""
        pairs = list(zip(answerable, refused, strict=True))
        return cls(
            answerable=sum(1 for a, _ in pairs if a),
            unanswerable=sum(1 for a, _ in pairs if not a),
            refused_answerable=sum(1 for a, r in pairs if a and r),
            refused_unanswerable=sum(1 for a, r in pairs if not a and r),
        )


def refusal_metrics(counts: RefusalCounts) -> dict[str, MetricValue]:
    return {
        REFUSAL_RATE_UNANSWERABLE: _rate(REFUSAL_RATE_UNANSWERABLE, counts.refused_unanswerable, counts.unanswerable,
                                         "unanswerable"),
        REFUSAL_RATE_ANSWERABLE: _rate(REFUSAL_RATE_ANSWERABLE, counts.refused_answerable, counts.answerable,
                                       "answerable"),
    }


def _rate(name: str, refused: int, total: int, kind: str) -> MetricValue:
    if not total:
        return not_measured(name, DIRECTIONS[name], f"no {kind} questions in the evaluated set")
    return MetricValue(name=name, value=refused / total, higher_is_better=DIRECTIONS[name],
                       reason=f"{refused} of {total} {kind} questions refused")
