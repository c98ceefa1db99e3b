"""Traffic, latency, refusals and feedback over a window of the request log: what production did, in numbers."""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from llmops.requestlog.reader import LogWindow
from llmops.requestlog.record import RequestRecord

__all__ = ["LatencyPercentiles", "LatencyTrends", "TrafficBucket", "Trends", "bucket_seconds", "compute_trends"]

NOT_IN_DOCUMENTS = "not_in_documents"  # the answerability check found nothing relevant (a "no answer")
CONTENT_FILTER = "content_filter"  # a guardrail refused the question or the answer
HOUR_S, DAY_S = 3600, 86400
HOURLY_UP_TO_DAYS = 3  # windows up to this long are charted per hour, longer ones per day


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LatencyPercentiles(_Model):
    count: int
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


class LatencyTrends(_Model):
    retrieval: LatencyPercentiles
    ttft: LatencyPercentiles  # streamed requests only
    total: LatencyPercentiles


class TrafficBucket(_Model):
    start: float  # Unix seconds
    requests: int
    not_in_documents: int
    content_filter: int
    down: int  # negative ratings of this bucket's requests
    total_p95_ms: float | None


class Trends(_Model):
    requests: int
    answered: int  # neither refusal kind
    not_in_documents: int
    content_filter: int
    rated: int  # requests of the window with a rating
    rated_answered: int
    down: int
    up: int
    no_answer_rate: float | None  # not_in_documents / requests
    refusal_rate: float | None  # content_filter / requests
    negative_feedback_rate: float | None  # down / rated
    feedback_coverage: float | None  # rated answers / answered
    latency: LatencyTrends
    bucket_s: int  # HOUR_S or DAY_S
    buckets: list[TrafficBucket]
    by_release: dict[str, int]
    by_model: dict[str, int]


def bucket_seconds(start: float, end: float) -> int:
    return HOUR_S if end - start <= HOURLY_UP_TO_DAYS * DAY_S else DAY_S


def compute_trends(window: LogWindow) -> Trends:
    """The window's numbers; every rate is None when its denominator is 0 (nothing to divide, not a 0 rate)."""
    requests = window.requests
    refused = _count(requests, NOT_IN_DOCUMENTS), _count(requests, CONTENT_FILTER)
    ratings = {r.response_id: window.rating(r.response_id) for r in requests}
    rated = [r for r in requests if ratings[r.response_id] is not None]
    answered = [r for r in requests if r.refusal_kind is None]
    rated_answered = sum(1 for r in answered if ratings[r.response_id] is not None)
    down = sum(1 for r in rated if ratings[r.response_id] == "down")
    step = bucket_seconds(window.start, window.end)
    return Trends(
        requests=len(requests),
        answered=len(answered),
        not_in_documents=refused[0],
        content_filter=refused[1],
        rated=len(rated),
        rated_answered=rated_answered,
        down=down,
        up=len(rated) - down,
        no_answer_rate=_rate(refused[0], len(requests)),
        refusal_rate=_rate(refused[1], len(requests)),
        negative_feedback_rate=_rate(down, len(rated)),
        feedback_coverage=_rate(rated_answered, len(answered)),
        latency=LatencyTrends(
            retrieval=percentiles([r.latency.retrieval_ms for r in requests]),
            ttft=percentiles([r.latency.ttft_ms for r in requests if r.latency.ttft_ms is not None]),
            total=percentiles([r.latency.total_ms for r in requests]),
        ),
        bucket_s=step,
        buckets=_buckets(window, ratings, step),
        by_release=_tally(r.release for r in requests),
        by_model=_tally(r.model for r in requests),
    )


def percentiles(values: Sequence[float]) -> LatencyPercentiles:
    if not values:
        return LatencyPercentiles(count=0)
    p50, p95, p99 = np.percentile(np.asarray(values, dtype=float), [50, 95, 99])
    return LatencyPercentiles(count=len(values), p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99))


def _buckets(window: LogWindow, ratings: dict[str, str | None], step: int) -> list[TrafficBucket]:
    """One bucket per hour (or day) from the window's start, empty ones included, so a quiet hour shows as 0."""
    first = window.start - window.start % step  # aligned to whole UTC hours / days
    count = int(np.ceil((window.end - first) / step))
    members: list[list[RequestRecord]] = [[] for _ in range(count)]
    for r in window.requests:
        members[min(int((r.time - first) // step), count - 1)].append(r)
    return [
        TrafficBucket(
            start=first + i * step,
            requests=len(rs),
            not_in_documents=_count(rs, NOT_IN_DOCUMENTS),
            content_filter=_count(rs, CONTENT_FILTER),
            down=sum(1 for r in rs if ratings[r.response_id] == "down"),
            total_p95_ms=percentiles([r.latency.total_ms for r in rs]).p95_ms,
        )
        for i, rs in enumerate(members)
    ]


def _count(requests: Sequence[RequestRecord], kind: str) -> int:
    return sum(1 for r in requests if r.refusal_kind == kind)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _tally(values) -> dict[str, int]:
    return dict(Counter(values).most_common())
