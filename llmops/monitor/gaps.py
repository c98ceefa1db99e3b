"""What the corpus does not cover: production questions the index found nothing relevant for, grouped by topic.

A gap question was refused as not in the documents, or its relevance (best dense cosine against the index) is below
the low-relevance threshold. The questions are embedded with the index's own embedder (as queries) and grouped by
average-linkage hierarchical clustering on cosine distance, cut at a distance rather than at a number of clusters:
how many topics are missing is what we want to learn, so it is not an input. Each cluster shows its size and the
questions nearest its centre; the biggest come first.
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from llmops.config import MonitorConfig
from llmops.requestlog.record import RequestRecord

__all__ = ["GapCluster", "Gaps", "cluster_questions", "find_gaps", "gap_requests"]

Embed = Callable[[list[str]], np.ndarray]  # questions -> one L2-normalized row each


class GapCluster(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int  # gap requests in the cluster (repeats of a question count each time)
    distinct: int  # distinct questions
    examples: list[str]  # nearest the cluster's centre first
    mean_relevance: float | None = None


class Gaps(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float
    threshold_from: str  # config | index (the reference index's answerability threshold) | fallback
    questions: int  # gap requests in the window
    not_in_documents: int  # of which refused by the answerability check
    clustered: int  # gap requests that went into clustering (max_gap_questions)
    clusters: list[GapCluster] = []
    unclustered: int = 0  # gap requests in clusters beyond max_clusters
    reason: str | None = None  # why nothing was clustered


def gap_requests(requests: Sequence[RequestRecord], threshold: float) -> list[RequestRecord]:
    """Requests the corpus did not cover: refused as not in the documents, or scored below `threshold`."""
    return [r for r in requests
            if r.refusal_kind == "not_in_documents" or (r.relevance is not None and r.relevance < threshold)]


def find_gaps(
    requests: Sequence[RequestRecord], embed: Embed | None, cfg: MonitorConfig, threshold: float, threshold_from: str
) -> Gaps:
    gaps = gap_requests(requests, threshold)
    base = dict(threshold=threshold, threshold_from=threshold_from, questions=len(gaps),
                not_in_documents=sum(1 for r in gaps if r.refusal_kind == "not_in_documents"))
    if len(gaps) > cfg.max_gap_questions:
        gaps = random.Random(cfg.sample_seed).sample(gaps, cfg.max_gap_questions)
    if not gaps:
        return Gaps(**base, clustered=0, reason="no gap questions in the window")
    if embed is None:
        return Gaps(**base, clustered=0, reason="no embedder: no reference release and no embedding model to load")
    clusters = cluster_questions(
        [r.question for r in gaps], [r.relevance for r in gaps], embed, cfg.cluster_max_distance, cfg.cluster_examples
    )
    return Gaps(**base, clustered=len(gaps), clusters=clusters[: cfg.max_clusters],
                unclustered=sum(c.size for c in clusters[cfg.max_clusters:]))


def cluster_questions(
    questions: Sequence[str],
    relevance: Sequence[float | None],
    embed: Embed,
    max_distance: float,
    examples: int,
) -> list[GapCluster]:
    """Clusters of `questions`, largest first. Repeats of a question (case and spacing aside) are embedded once."""
    keys = [" ".join(q.casefold().split()) for q in questions]
    distinct = list(dict.fromkeys(keys))
    shown = {k: q for k, q in zip(reversed(keys), reversed(questions))}  # the first spelling of each question
    vectors = np.asarray(embed([shown[k] for k in distinct]), dtype=np.float32)
    labels = _labels(vectors, max_distance)
    index = {k: i for i, k in enumerate(distinct)}
    sizes = np.bincount([labels[index[k]] for k in keys])
    scores: dict[int, list[float]] = {}
    for k, s in zip(keys, relevance):
        if s is not None:
            scores.setdefault(int(labels[index[k]]), []).append(s)
    out = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        centre = vectors[members].mean(axis=0)
        nearest = members[np.argsort(-(vectors[members] @ centre), kind="stable")]
        out.append(GapCluster(
            size=int(sizes[label]),
            distinct=len(members),
            examples=[shown[distinct[i]] for i in nearest[:examples]],
            mean_relevance=float(np.mean(scores[int(label)])) if scores.get(int(label)) else None,
        ))
    return sorted(out, key=lambda c: (-c.size, c.examples[0]))


def _labels(vectors: np.ndarray, max_distance: float) -> np.ndarray:
    if len(vectors) == 1:
        return np.zeros(1, dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage

    tree = linkage(vectors.astype(np.float64), method="average", metric="cosine")
    return fcluster(tree, t=max_distance, criterion="distance") - 1
