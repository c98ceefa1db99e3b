"""Retrieval metrics: recall@k, MRR@10 and nDCG@10 over a QA set, through the shared Retriever.

Relevance is judged by `llmops.index.relevance` (gold document or answer string), the same judge fusion tuning uses.

Follows the evaluator contract used across `eval/`: metrics come back as `dict[str, float]`, with a named primary
metric for which greater is better.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence


from llmops.corpus.documents import QAExample, split_answerable
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
from llmops.workspace import store_report
from eval.metrics.base import RetrievalScores
from eval.schemas import ModeScores, RetrievalEvalReport

__all__ = [
    "PRIMARY_METRIC",
    "RetrievalEvaluation",
    "evaluate_mode",
    "evaluate_retrieval_modes",
    "store_retrieval_eval_report",
]

PRIMARY_METRIC = RetrievalScores.primary_metric


@dataclass
class RetrievalEvaluation:
    mode: str
    metrics: dict[str, float]
    questions: int
    unjudgeable: int  # questions with neither a gold document nor an answer string
    per_question: list[dict] = field(default_factory=list)
    primary_metric: str = PRIMARY_METRIC

    def scores(self) -> ModeScores:
        return ModeScores(mode=self.mode, metrics=self.metrics, questions=self.questions, unjudgeable=self.unjudgeable,
                          primary_metric=self.primary_metric, greater_is_better=RetrievalScores.greater_is_better)


def evaluate_mode(
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
        # A follow-up is searched in its deterministic `concat` form (previous user message + follow-up), as fusion
        # tuning does: retrieval evaluation runs without an LLM, so it measures the index, not a rewrite.
        ids, _ = retriever.search_ids([ex.search_query for ex in batch], depth, mode)
        rows.extend(score_questions(judge, batch, ids, ks))
    return RetrievalEvaluation(
        mode=mode,
        metrics=aggregate_scores(rows, ks),
        questions=len(usable),
        unjudgeable=len(examples) - len(usable),
        per_question=rows,
    )


def evaluate_retrieval_modes(
    retriever: Retriever,
    examples: Sequence[QAExample],
    ks: Sequence[int] = (1, 5, 10),
    max_questions: int | None = None,
) -> RetrievalEvalReport:
    """Metrics for every mode the index supports, on the held-out questions.

    Unanswerable questions are left out (counted in `excluded_unanswerable_questions`): no chunk is relevant to
    them. When the index tuned something on the eval set (fusion weight, answerability threshold), the calibration
    split it was tuned on (the fraction its manifest records) is excluded, so the numbers are not flattered by it. `max_questions` takes a deterministic
    sample (by question id).
    """
    fusion = retriever.manifest.retrieval.fusion
    answerable, unanswerable = split_answerable(examples)
    held_out = select_questions(answerable, calibration_fraction=retriever.manifest.calibration_fraction,
                                max_samples=None)
    scored = select_questions(held_out, calibration_fraction=None, max_samples=max_questions)
    modes = ["dense"] if retriever.manifest.lexical is None else ["dense", "lexical", "hybrid"]
    results = {mode: evaluate_mode(retriever, scored, mode, ks) for mode in modes}
    return RetrievalEvalReport(
        index_version=retriever.version,
        questions=len(scored),
        excluded_calibration_questions=len(answerable) - len(held_out),
        excluded_unanswerable_questions=len(unanswerable),
        follow_up_questions=sum(1 for ex in scored if ex.history),
        primary_metric=PRIMARY_METRIC,
        default_mode=retriever.default_mode,
        fusion=fusion,
        modes={mode: r.scores() for mode, r in results.items()},
        worst_questions=_worst(results[retriever.default_mode if retriever.default_mode in results else "dense"]),
    )


def store_retrieval_eval_report(artifacts_root: str, report: RetrievalEvalReport) -> str:
    """Store the report under reports/retrieval/, named by index version and content; returns its URI."""
    return store_report(artifacts_root, "retrieval", report.index_version, report.model_dump(mode="json"))


def _worst(evaluation: RetrievalEvaluation, n: int = 20) -> list[dict]:
    missed = [r for r in evaluation.per_question if r["first_relevant_rank"] is None]
    return missed[:n]
