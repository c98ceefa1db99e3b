"""BERTScore F1 with bert-score (`bertscore_f1`): the mean of per-sample F1, no Hub access.

`BertScoreConfig.model` is a local folder, a `pkg:` reference (model files shipped in a Python package, resolved
like the embedding model) or a Hub id already in the local cache; `num_layers` picks the layer whose token
embeddings are matched. No baseline rescaling: bert-score only has baselines for its named Hub models, not for a
path, so scores are raw cosine-based F1 (for MiniLM-style models they sit well above 0 even for unrelated text;
compare runs scored with the same model and layer, never across models). No idf weighting. Several references:
bert-score takes the best over references. An empty answer scores 0 (bert-score's convention). Tokens past the
model's maximum length are truncated by bert-score.
Use a multilingual model for Japanese eval sets (all-MiniLM-L6-v2 is English-only).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

from eval.metrics.base import EvalSample, Metric, MetricValue, SampleScore, SampleSkip, summarize
from llmops.config import BertScoreConfig
from llmops.errors import EmbeddingError

__all__ = ["BertScoreMetric", "resolve_bertscore_model"]


def resolve_bertscore_model(model: str) -> Path:
    """The local folder of the scoring model; raises EmbeddingError naming `metrics.bertscore.model` if absent."""
    from llmops.provenance.model_paths import resolve_model_path

    try:
        return resolve_model_path(model)
    except EmbeddingError as e:
        raise EmbeddingError(f"eval.metrics.bertscore.model: {e}") from None


@lru_cache(maxsize=2)
def _scorer(path: str, num_layers: int, batch_size: int):
    """One loaded scorer per (model, layer) and process: loading dominates the cost for small eval sets."""
    from bert_score import BERTScorer

    return BERTScorer(model_type=path, num_layers=num_layers, batch_size=batch_size, lang=None)


class BertScoreMetric(Metric):
    name = "bertscore"
    keys = ("bertscore_f1",)
    primary_metric = "bertscore_f1"
    higher_is_better = {"bertscore_f1": True}

    def __init__(self, config: BertScoreConfig):
        self.config = config

    def compute(self, samples: Sequence[EvalSample]) -> dict[str, MetricValue]:
        scores: list[SampleScore] = [SampleSkip("no reference answer")] * len(samples)
        scored = []
        for i, s in enumerate(samples):
            if not any(r.strip() for r in s.references):
                continue
            if not s.answer.strip():
                # bert-score's own convention for an empty candidate (its code path for it breaks on
                # transformers 5, so it is applied here): F1 = 0.
                scores[i] = 0.0
                continue
            scored.append(i)
        if scored:
            path = resolve_bertscore_model(self.config.model)
            scorer = _scorer(str(path), self.config.num_layers, self.config.batch_size)
            cands = [samples[i].answer for i in scored]
            refs = [[r for r in samples[i].references if r.strip()] for i in scored]
            _, _, f1 = scorer.score(cands, refs, batch_size=self.config.batch_size)
            for i, value in zip(scored, f1.tolist()):
                scores[i] = float(value)
        return {"bertscore_f1": summarize("bertscore_f1", scores, [s.qid for s in samples], True)}
