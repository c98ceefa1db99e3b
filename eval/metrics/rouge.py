"""ROUGE-1/2/L F1 with rouge-score and a language-aware tokenizer (`rouge_1`, `rouge_2`, `rouge_l`).

rouge-score's own tokenizer keeps only [a-z0-9], so Japanese scores 0 even for identical strings; each sample is
tokenized for its `lang` instead (`text.py`: MeCab words for Japanese). No stemming (the default of rouge-score and
of Hugging Face `evaluate`'s rouge). Several references: the best F1 over references, per ROUGE type
(`RougeScorer.score_multi`). The aggregate is the mean of per-sample F1.
"""

from __future__ import annotations

from typing import Sequence

from eval.metrics.base import EvalSample, Metric, MetricValue, SampleFailure, SampleScore, SampleSkip, summarize
from eval.metrics.tokenizers import RougeTokenizer

__all__ = ["RougeMetric"]

_TYPES = {"rouge_1": "rouge1", "rouge_2": "rouge2", "rouge_l": "rougeL"}


class RougeMetric(Metric):
    name = "rouge"
    keys = tuple(_TYPES)
    primary_metric = "rouge_l"
    higher_is_better = {key: True for key in _TYPES}

    def compute(self, samples: Sequence[EvalSample]) -> dict[str, MetricValue]:
        from rouge_score.rouge_scorer import RougeScorer

        scorers: dict[str, RougeScorer] = {}
        per_key: dict[str, list[SampleScore]] = {key: [] for key in _TYPES}
        for s in samples:
            references = [r for r in s.references if r.strip()]
            if not references:
                for scores in per_key.values():
                    scores.append(SampleSkip("no reference answer"))
                continue
            if s.lang not in scorers:
                scorers[s.lang] = RougeScorer(list(_TYPES.values()), tokenizer=RougeTokenizer(s.lang))
            try:
                best = scorers[s.lang].score_multi(references, s.answer)
            except Exception as e:
                for scores in per_key.values():
                    scores.append(SampleFailure(f"rouge-score: {type(e).__name__}: {e}"))
                continue
            for key, rouge_type in _TYPES.items():
                per_key[key].append(best[rouge_type].fmeasure)
        qids = [s.qid for s in samples]
        return {key: summarize(key, scores, qids, True) for key, scores in per_key.items()}
