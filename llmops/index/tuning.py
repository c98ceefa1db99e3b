"""Choosing the hybrid fusion weight on a calibration split of the eval set.

The split is by question id, so the retrieval eval stage can leave out exactly the questions the weight was tuned
on (`split_calibration` with the fraction the index manifest records).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from llmops.corpus.documents import QAExample
from llmops.index.relevance import MRR_DEPTH, RelevanceJudge, aggregate_scores, judgeable, score_questions
from llmops.index.retriever import Retriever

__all__ = ["DEFAULT_GRID", "sample_by_qid", "select_questions", "split_calibration", "tune_dense_weight"]

DEFAULT_GRID = tuple(round(i * 0.05, 2) for i in range(21))


def split_calibration(examples: Sequence[QAExample], fraction: float) -> tuple[list[QAExample], list[QAExample]]:
    """Deterministic split by question id: (calibration, held-out). Calibration questions are never scored."""
    calib, held = [], []
    for ex in examples:
        bucket = int(hashlib.sha256(ex.qid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (calib if bucket < fraction else held).append(ex)
    return calib, held


def sample_by_qid(examples: Sequence[QAExample], n: int) -> list[QAExample]:
    """A deterministic sample of `n` questions: ordered by the sha256 of their id, so independent of input order."""
    return sorted(examples, key=lambda ex: hashlib.sha256(ex.qid.encode()).hexdigest())[:n]


def select_questions(
    examples: Sequence[QAExample], *, calibration_fraction: float | None, max_samples: int | None
) -> list[QAExample]:
    """The questions to score: the held-out split (when `calibration_fraction` is given), then a deterministic
    sample of at most `max_samples`. Questions used to tune the fusion weight (calibration split) are never scored,
    in retrieval eval or in generation eval."""
    selected = list(examples)
    if calibration_fraction is not None:
        _, selected = split_calibration(selected, calibration_fraction)
    if max_samples is not None and len(selected) > max_samples:
        selected = sample_by_qid(selected, max_samples)
    return selected


def tune_dense_weight(
    retriever: Retriever, examples: Sequence[QAExample], grid: Sequence[float] = DEFAULT_GRID
) -> tuple[float, dict[float, float]]:
    """Pick the convex-fusion dense weight that maximizes MRR@10 on `examples` (the calibration split).

    The grid includes 0 (lexical only) and 1 (dense only), so on these questions fusion is never worse than the
    better single retriever. Candidates are retrieved once; only the fusion is repeated per weight. Ties go to the
    weight closest to 0.5.
    """
    grid = list(grid)
    usable = judgeable(examples)
    n = max(retriever.candidates, MRR_DEPTH)
    # Follow-ups (conversational QA) in their deterministic `concat` form: tuning runs without an LLM, and the
    # served path falls back to that form when its LLM rewrite fails.
    questions = [ex.search_query for ex in usable]
    d_ids, d_scores = retriever.dense(questions, n)
    l_ids, l_scores = retriever.lexical(questions, n)
    judge = RelevanceJudge(retriever)
    scores = {}
    for w in grid:
        ids, _ = retriever.fuse_candidates(d_ids, d_scores, l_ids, l_scores, MRR_DEPTH, w)
        scores[w] = aggregate_scores(score_questions(judge, usable, ids, (1,)), (1,))["mrr@10"]
    best = max(grid, key=lambda w: (round(scores[w], 6), -abs(w - 0.5)))
    return best, scores
