"""Judging retrieved chunks against a QA set, and the per-question scores built on it.

A retrieved chunk is relevant when it comes from the question's gold document (the SQuAD paragraph it was written
on) or contains one of the gold answer strings (compared after NFKC normalization and case folding). nDCG uses
binary gains; its ideal ranking counts the gold document's chunks plus any other relevant chunk that was retrieved
(chunks that merely contain the answer but were never retrieved are unknown without scanning the corpus).

Fusion tuning (`llmops.index.tuning`) and the retrieval eval stage (`eval.retrieval`) both score with this module,
so the weight chosen at build time is chosen by the metric that is later reported.
"""

from __future__ import annotations

import math
import unicodedata
from collections import Counter
from typing import Sequence

import numpy as np

from llmops.corpus.documents import QAExample
from llmops.index.retriever import Retriever

__all__ = ["MRR_DEPTH", "NDCG_DEPTH", "RelevanceJudge", "aggregate_scores", "judgeable", "score_questions"]

MRR_DEPTH = NDCG_DEPTH = 10


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


class RelevanceJudge:
    """Relevance of chunk positions of one index for each question."""

    def __init__(self, retriever: Retriever):
        self.doc_ids: list[str] = retriever.chunk_column("doc_id")
        self.texts: list[str] = retriever.chunk_column("text")
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


def score_questions(
    judge: RelevanceJudge, examples: Sequence[QAExample], ids: np.ndarray, ks: Sequence[int]
) -> list[dict]:
    """One row per question: first relevant rank, hit@k, reciprocal rank and nDCG at depth 10."""
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
                "query": ex.search_query,  # a follow-up is searched with the previous user message
                "first_relevant_rank": first,
                **{f"hit@{k}": float(first is not None and first <= k) for k in ks},
                "rr@10": 1.0 / first if first and first <= MRR_DEPTH else 0.0,
                "ndcg@10": dcg / idcg if idcg else 0.0,
            }
        )
    return rows


def aggregate_scores(rows: list[dict], ks: Sequence[int]) -> dict[str, float]:
    n = len(rows) or 1
    metrics = {f"recall@{k}": sum(r[f"hit@{k}"] for r in rows) / n for k in ks}
    metrics["mrr@10"] = sum(r["rr@10"] for r in rows) / n
    metrics["ndcg@10"] = sum(r["ndcg@10"] for r in rows) / n
    return metrics


def judgeable(examples: Sequence[QAExample]) -> list[QAExample]:
    """Answerable questions with a gold document or an answer string: the others cannot be judged (an unanswerable
    question's gold document is where it was written, not a chunk that answers it)."""
    return [ex for ex in examples if ex.answerable and (ex.gold_doc_id or any(a.strip() for a in ex.answers))]
