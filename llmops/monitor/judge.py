"""Which production answers the RAGAS judge scores, and what it said. The scoring itself is eval's
(`eval/monitor.py` runs eval's RAGAS judge metrics): this package stays below eval in the layers."""

from __future__ import annotations

import random
from typing import Sequence

from pydantic import BaseModel, ConfigDict

from llmops.requestlog.record import RequestRecord

__all__ = ["JUDGE_METRICS", "JudgeResult", "JudgedAnswer", "judge_sample"]

JUDGE_METRICS = ("ragas.faithfulness", "ragas.answer_relevancy")


class JudgedAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    response_id: str
    question: str
    answer: str
    scores: dict[str, float | None]


class JudgeResult(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    configured: bool  # eval.metrics.ragas.judge is set and judge_sample_size > 0
    judge_model: str | None = None
    sampled: int = 0
    eligible: int = 0  # answered requests with sources from the reference index
    metrics: dict[str, float | None] = {}  # mean per metric; None: not measured (reasons say why)
    reasons: dict[str, str] = {}
    answers: list[JudgedAnswer] = []
    reason: str | None = None  # why nothing was judged


def judge_sample(requests: Sequence[RequestRecord], size: int, seed: int) -> list[RequestRecord]:
    """`size` of `requests`, the same ones for the same log and seed (ordered by response id before sampling)."""
    ordered = sorted(requests, key=lambda r: r.response_id)
    return ordered if len(ordered) <= size else random.Random(seed).sample(ordered, size)
