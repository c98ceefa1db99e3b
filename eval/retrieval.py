"""Retrieval metrics: recall@k, MRR@10 and nDCG@10 over a QA set, through the shared Retriever.

A retrieved chunk is relevant when it comes from the question's gold document (the SQuAD paragraph it was written
on) or contains one of the gold answer strings (compared after NFKC normalization and case folding). nDCG uses
binary gains; its ideal ranking counts the gold document's chunks plus any other relevant chunk that was retrieved
(chunks that merely contain the answer but were never retrieved are unknown without scanning the corpus).

Follows the evaluator contract used across `eval/`: metrics come back as `dict[str, float]`, with a named primary
metric for which greater is better.
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from llmops.documents import QAExample
from llmops.retriever import Retriever

__all__ = [
    "PRIMARY_METRIC",
    "RetrievalEvaluation",
    "evaluate_retrieval",
    "split_calibration",
    "tune_dense_weight",
]

PRIMARY_METRIC = "recall@5"
GREATER_IS_BETTER = True
MRR_DEPTH = NDCG_DEPTH = 10


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass
class RetrievalEvaluation:
    mode: str
    metrics: dict[str, float]
    questions: int
    unjudgeable: int  # questions with neither a gold document nor an answer string
    per_question: list[dict] = field(default_factory=list)
    primary_metric: str = PRIMARY_METRIC

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "metrics": self.metrics,
            "questions": self.questions,
            "unjudgeable": self.unjudgeable,
            "primary_metric": self.primary_metric,
            "greater_is_better": GREATER_IS_BETTER,
        }


def split_calibration(examples: Sequence[QAExample], fraction: float) -> tuple[list[QAExample], list[QAExample]]:
    """Deterministic split by question id: (calibration, held-out). Calibration questions are never scored."""
    calib, held = [], []
    for ex in examples:
        bucket = int(hashlib.sha256(ex.qid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (calib if bucket < fraction else held).append(ex)
    return calib, held


class _Judge:
    """Relevance of chunk positions for each question."""

    def __init__(self, retriever: Retriever):
        self.doc_ids: list[str] = retriever._chunks["doc_id"]
        self.texts: list[str] = retriever._chunks["text"]
        self.chunks_per_doc = Counter(self.doc_ids)
        self._norm_text: dict[int, str] = {}

    def relevant(self, ex: QAExample, position: int, answers: list[str]) -> bool:
        if position < 0:
            return False
        if ex.gold_doc_id is not None and self.doc_ids[position] == ex.gold_doc_id:
            return True
        if answers:
            text = self._norm_text.get(position)
            if text is None:
                text = self._norm_text[position] = _norm(self.texts[position])
            return any(a in text for a in answers)
        return False


def _score_rows(judge: _Judge, examples: Sequence[QAExample], ids: np.ndarray, ks: Sequence[int]):
    rows = []
    for ex, row in zip(examples, ids):
        answers = [_norm(a) for a in ex.answers if a.strip()]
        rel = [judge.relevant(ex, int(p), answers) for p in row]
        first = next((r + 1 for r, is_rel in enumerate(rel) if is_rel), None)
        known = judge.chunks_per_doc.get(ex.gold_doc_id, 0) if ex.gold_doc_id else 0
        known += sum(1 for p, is_rel in zip(row, rel) if is_rel and judge.doc_ids[p] != ex.gold_doc_id)
        dcg = sum(1 / math.log2(r + 2) for r, is_rel in enumerate(rel[:NDCG_DEPTH]) if is_rel)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(known, NDCG_DEPTH)))
        rows.append(
            {
                "qid": ex.qid,
                "question": ex.question,
                "first_relevant_rank": first,
                **{f"hit@{k}": float(first is not None and first <= k) for k in ks},
                "rr@10": 1.0 / first if first and first <= MRR_DEPTH else 0.0,
                "ndcg@10": dcg / idcg if idcg else 0.0,
            }
        )
    return rows


def _aggregate(rows: list[dict], ks: Sequence[int]) -> dict[str, float]:
    n = len(rows) or 1
    metrics = {f"recall@{k}": sum(r[f"hit@{k}"] for r in rows) / n for k in ks}
    metrics["mrr@10"] = sum(r["rr@10"] for r in rows) / n
    metrics["ndcg@10"] = sum(r["ndcg@10"] for r in rows) / n
    return metrics


def _judgeable(examples: Sequence[QAExample]) -> list[QAExample]:
    return [ex for ex in examples if ex.gold_doc_id or any(a.strip() for a in ex.answers)]


def evaluate_retrieval(
    retriever: Retriever,
    examples: Sequence[QAExample],
    mode: str | None = None,
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 256,
) -> RetrievalEvaluation:
    mode = mode or retriever.default_mode
    usable = _judgeable(examples)
    depth = max(max(ks), MRR_DEPTH, NDCG_DEPTH)
    judge = _Judge(retriever)
    rows: list[dict] = []
    for start in range(0, len(usable), batch_size):
        batch = usable[start : start + batch_size]
        ids, _ = retriever.search_ids([ex.question for ex in batch], depth, mode)
        rows.extend(_score_rows(judge, batch, ids, ks))
    return RetrievalEvaluation(
        mode=mode,
        metrics=_aggregate(rows, ks),
        questions=len(usable),
        unjudgeable=len(examples) - len(usable),
        per_question=rows,
    )


def tune_dense_weight(
    retriever: Retriever, examples: Sequence[QAExample], grid: Sequence[float] | None = None
) -> tuple[float, dict[float, float]]:
    """Pick the convex-fusion dense weight that maximizes MRR@10 on `examples` (the calibration split).

    The grid includes 0 (lexical only) and 1 (dense only), so on these questions fusion is never worse than the
    better single retriever. Candidates are retrieved once; only the fusion is repeated per weight. Ties go to the
    weight closest to 0.5.
    """
    grid = list(grid or [round(i * 0.05, 2) for i in range(21)])
    usable = _judgeable(examples)
    n = max(retriever.candidates, MRR_DEPTH)
    questions = [ex.question for ex in usable]
    d_ids, d_scores = retriever.dense(questions, n)
    l_ids, l_scores = retriever._lexical.search(questions, n)
    judge = _Judge(retriever)
    scores = {}
    for w in grid:
        ids, _ = retriever.fuse_candidates(d_ids, d_scores, l_ids, l_scores, MRR_DEPTH, w)
        scores[w] = _aggregate(_score_rows(judge, usable, ids, (1,)), (1,))["mrr@10"]
    best = max(grid, key=lambda w: (round(scores[w], 6), -abs(w - 0.5)))
    return best, scores


def retrieval_report(
    retriever: Retriever,
    examples: Sequence[QAExample],
    ks: Sequence[int] = (1, 5, 10),
    calibration_fraction: float | None = None,
    max_questions: int | None = None,
) -> dict:
    """Metrics for every mode the index supports, on the held-out questions.

    When the index's fusion weight was tuned, the calibration split it was tuned on is excluded, so hybrid numbers
    are not flattered by the tuning. `max_questions` takes a deterministic sample (by question id).
    """
    fusion = retriever.manifest.retrieval["fusion"]
    tuned = str(fusion.get("chosen_by", "")).startswith("tuned")
    scored = list(examples)
    if tuned and calibration_fraction is not None:
        _, scored = split_calibration(scored, calibration_fraction)
    if max_questions is not None and len(scored) > max_questions:
        scored = sorted(scored, key=lambda ex: hashlib.sha256(ex.qid.encode()).hexdigest())[:max_questions]
    modes = ["dense"] if retriever.manifest.lexical is None else ["dense", "lexical", "hybrid"]
    results = {mode: evaluate_retrieval(retriever, scored, mode, ks) for mode in modes}
    return {
        "index_version": retriever.version,
        "questions": len(scored),
        "excluded_calibration_questions": len(examples) - len(scored) if tuned else 0,
        "primary_metric": PRIMARY_METRIC,
        "default_mode": retriever.default_mode,
        "fusion": {"method": fusion["method"], "dense_weight": fusion["dense_weight"], "chosen_by": fusion.get("chosen_by")},
        "modes": {mode: r.to_dict() for mode, r in results.items()},
        "worst_questions": _worst(results[retriever.default_mode if retriever.default_mode in results else "dense"]),
    }


def _worst(evaluation: RetrievalEvaluation, n: int = 20) -> list[dict]:
    missed = [r for r in evaluation.per_question if r["first_relevant_rank"] is None]
    return missed[:n]
