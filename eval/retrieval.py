"""Retrieval metrics: recall@k, MRR@10 and nDCG@10 over a QA set, through the shared Retriever.

Relevance is judged by `llmops.index.relevance` (gold document or answer string), the same judge fusion tuning uses.

Follows the evaluator contract used across `eval/`: metrics come back as `dict[str, float]`, with a named primary
metric for which greater is better.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


from llmops.corpus.documents import QAExample
from llmops.index.relevance import (
    MRR_DEPTH,
    NDCG_DEPTH,
    RelevanceJudge,
    aggregate_scores,
    judgeable,
    score_questions,
)
from llmops.index.retriever import Retriever
from llmops.index.tuning import select_questions

__all__ = [
    "PRIMARY_METRIC",
    "RetrievalEvaluation",
    "evaluate_retrieval",
]

PRIMARY_METRIC = "recall@5"
GREATER_IS_BETTER = True


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


def evaluate_retrieval(
    retriever: Retriever,
    examples: Sequence[QAExample],
    mode: str | None = None,
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 256,
) -> RetrievalEvaluation:
    mode = mode or retriever.default_mode
    usable = judgeable(examples)
    depth = max(max(ks), MRR_DEPTH, NDCG_DEPTH)
    judge = RelevanceJudge(retriever)
    rows: list[dict] = []
    for start in range(0, len(usable), batch_size):
        batch = usable[start : start + batch_size]
        ids, _ = retriever.search_ids([ex.question for ex in batch], depth, mode)
        rows.extend(score_questions(judge, batch, ids, ks))
    return RetrievalEvaluation(
        mode=mode,
        metrics=aggregate_scores(rows, ks),
        questions=len(usable),
        unjudgeable=len(examples) - len(usable),
        per_question=rows,
    )


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
    scored = select_questions(
        examples, calibration_fraction=calibration_fraction if tuned else None, max_samples=max_questions
    )
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
