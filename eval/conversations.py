"""The eval report's conversation figures: how the follow-up questions of a conversational QA set fared.

A follow-up ("And how long does that take?") is answered through the chat path with its earlier turns, so its
retrieval depends on the query rewrite; these figures show whether that works, apart from the single questions that
dominate the overall metrics.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Sequence

from eval.runner import SampleRecord
from eval.schemas import ConversationSummary

__all__ = ["MULTI_TURN", "SINGLE_TURN", "summarize_conversations"]

MULTI_TURN = "multi_turn"
SINGLE_TURN = "single_turn"
HIT_RATE = "retrieval_hit_rate"


def summarize_conversations(records: Sequence[SampleRecord]) -> ConversationSummary:
    """Counts, rewrite methods and the main metrics of the answerable follow-ups (`multi_turn.*`) next to the answerable
    single questions' (`single_turn.*`); a metric no record was scored on is absent, one scored on none of a group is
    None."""
    follow_ups = [r for r in records if r.turns]
    # the metrics compare answerable questions only, as the report's answer metrics do (an unanswerable one has no
    # relevant chunk to hit); the counts cover every follow-up
    scored_follow_ups = [r for r in follow_ups if r.answerable]
    singles = [r for r in records if not r.turns and r.answerable]
    names = sorted({name for r in records for name in r.scores if name != "retrieval_hit"})
    metrics: dict[str, float | None] = {}
    for prefix, group in ((MULTI_TURN, scored_follow_ups), (SINGLE_TURN, singles)):
        if not group:
            continue
        metrics[f"{prefix}.{HIT_RATE}"] = statistics.fmean(r.retrieval_hit for r in group)
        for name in names:
            values = [v for r in group if (v := r.scores.get(name)) is not None]
            metrics[f"{prefix}.{name}"] = statistics.fmean(values) if values else None
    return ConversationSummary(
        questions=len(follow_ups),
        turns_mean=statistics.fmean(r.turns for r in follow_ups) if follow_ups else None,
        rewrite=dict(sorted(Counter(r.rewrite for r in follow_ups).items())),
        rewrite_mean_s=statistics.fmean(r.rewrite_s for r in follow_ups) if follow_ups else None,
        metrics=metrics,
    )
