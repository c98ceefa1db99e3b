"""BLEU with sacrebleu: corpus BLEU (`bleu`) plus sentence BLEU per sample, on a 0-1 scale (sacrebleu's / 100).

Each sample is tokenized for its own language (`13a` for English, `ja-mecab` for Japanese, see `text.py`).
Mixed-language sets: corpus BLEU is defined by summed sufficient statistics (n-gram matches and totals, hypothesis
and reference lengths), so each language group is scored with its tokenizer and the groups' statistics are summed
before the single BLEU formula is applied. An all-English or all-Japanese set gives exactly sacrebleu's
`corpus_bleu(..., tokenize=...)`; a mixed set gives the corpus BLEU of the union, each sentence tokenized right.

sacrebleu defaults otherwise: case-sensitive, 4-grams, `exp` smoothing for the corpus score, sentence BLEU with
`effective_order=True` (as sacrebleu recommends for single sentences). So corpus BLEU is 0 when no answer in the set
has 4 tokens, even if every answer is exact (per-sample BLEU is 1 then): for short-span answer sets (SQuAD) gate on
ROUGE or BERTScore, not BLEU. Multiple references per sample are
sacrebleu's multi-reference BLEU (clipped counts against the max over references, closest reference length).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from eval.metrics.base import EvalSample, Metric, MetricValue, SampleFailure, SampleScore, SampleSkip, summarize
from eval.metrics.tokenizers import bleu_tokenizer

__all__ = ["BleuMetric", "corpus_bleu"]


class BleuMetric(Metric):
    name = "bleu"
    keys = ("bleu",)
    primary_metric = "bleu"
    higher_is_better = {"bleu": True}

    def compute(self, samples: Sequence[EvalSample]) -> dict[str, MetricValue]:
        from sacrebleu.metrics.bleu import BLEU

        scores: list[SampleScore] = []
        notes: set[str] = set()
        groups: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(samples):
            references = [r for r in s.references if r.strip()]
            if not references:
                scores.append(SampleSkip("no reference answer"))
                continue
            tokenizer, note = bleu_tokenizer(s.lang)
            if note:
                notes.add(note)
            try:
                sentence = BLEU(tokenize=tokenizer, effective_order=True).sentence_score(s.answer, references)
            except Exception as e:
                scores.append(SampleFailure(f"sacrebleu: {type(e).__name__}: {e}"))
                continue
            scores.append(sentence.score / 100.0)
            groups[tokenizer].append(i)

        corpus = corpus_bleu(samples, groups) if groups else None
        value = summarize("bleu", scores, [s.qid for s in samples], True, aggregate=corpus)
        if value.measured and notes:
            note = "; ".join(sorted(notes))
            value = MetricValue(value.name, value.value, True, f"{value.reason}; {note}" if value.reason else note,
                                value.per_sample)
        return {"bleu": value}


def corpus_bleu(samples: Sequence[EvalSample], groups: dict[str, list[int]]) -> float:
    """Corpus BLEU (0-1) over the samples indexed in `groups` ({sacrebleu tokenizer: sample indices})."""
    from sacrebleu.metrics.bleu import BLEU, MAX_NGRAM_ORDER

    order = MAX_NGRAM_ORDER
    correct, total = [0] * order, [0] * order
    sys_len = ref_len = 0
    for tokenizer, indices in groups.items():
        hyps = [samples[i].answer for i in indices]
        refs = [[r for r in samples[i].references if r.strip()] for i in indices]
        width = max(len(r) for r in refs)
        # sacrebleu takes reference *streams*; None pads samples with fewer references.
        streams = [[r[j] if j < len(r) else None for r in refs] for j in range(width)]
        score = BLEU(tokenize=tokenizer).corpus_score(hyps, streams)
        correct = [a + b for a, b in zip(correct, score.counts)]
        total = [a + b for a, b in zip(total, score.totals)]
        sys_len += score.sys_len
        ref_len += score.ref_len
    return BLEU.compute_bleu(correct, total, sys_len, ref_len, smooth_method="exp").score / 100.0
