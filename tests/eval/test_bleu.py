"""BLEU against hand-worked n-gram counts (English and Japanese), mixed-language corpora and fallbacks."""

import math

import pytest

from eval.metrics import tokenizers
from eval.metrics.base import EvalSample
from eval.metrics.bleu import BleuMetric


def sample(qid, answer, references, lang="en"):
    return EvalSample(qid, "q?", answer, tuple(references), (), lang=lang)


def bleu_from_counts(correct, total, sys_len, ref_len):
    """The BLEU formula (no smoothing needed: every count below is non-zero)."""
    bp = 1.0 if sys_len >= ref_len else math.exp(1 - ref_len / sys_len)
    return bp * math.exp(sum(math.log(c / t) for c, t in zip(correct, total)) / 4)


# "the cat sat on the mat" vs "the cat sat on a mat today":
#   1-grams the(clipped to 1) cat sat on mat = 5/6; 2-grams the·cat cat·sat sat·on = 3/5;
#   3-grams the·cat·sat cat·sat·on = 2/4; 4-grams the·cat·sat·on = 1/3; lengths 6 vs 7 -> BP = e^(1 - 7/6)
EN = sample("en", "the cat sat on the mat", ["the cat sat on a mat today"])
EN_COUNTS = ([5, 3, 2, 1], [6, 5, 4, 3], 6, 7)
# ja-mecab: 私 は 東京 に 住ん で い ます 。 vs 私 は 大阪 に 住ん で い ます 。 (9 tokens each)
#   1-grams 8/9; 2-grams 6/8 (は·東京, 東京·に miss); 3-grams 4/7; 4-grams 3/6; BP = 1
JA = sample("ja", "私は東京に住んでいます。", ["私は大阪に住んでいます。"], lang="ja")
JA_COUNTS = ([8, 6, 4, 3], [9, 8, 7, 6], 9, 9)


def test_english_matches_hand_worked_example():
    expected = bleu_from_counts(*EN_COUNTS)
    assert expected == pytest.approx((1 / 12) ** 0.25 * math.exp(-1 / 6))
    value = BleuMetric().compute([EN])["bleu"]
    assert value.value == pytest.approx(expected, abs=1e-9)  # 0-1 scale, not sacrebleu's 0-100
    assert value.per_sample == (pytest.approx(expected, abs=1e-9),)
    assert value.higher_is_better and value.reason is None


def test_japanese_is_tokenized_with_mecab_and_matches_hand_count():
    tokenizer, note = tokenizers.bleu_tokenizer("ja")
    if tokenizer != "ja-mecab":
        pytest.skip(f"MeCab for sacrebleu is not installed here ({note})")
    from sacrebleu.tokenizers.tokenizer_ja_mecab import TokenizerJaMecab

    assert TokenizerJaMecab()(JA.answer).split() == ["私", "は", "東京", "に", "住ん", "で", "い", "ます", "。"]
    value = BleuMetric().compute([JA])["bleu"]
    assert value.value == pytest.approx(bleu_from_counts(*JA_COUNTS), abs=1e-9)
    assert value.value == pytest.approx((8 / 9 * 6 / 8 * 4 / 7 * 3 / 6) ** 0.25, abs=1e-9)


def test_identical_japanese_scores_one_not_zero():
    same = sample("ja", "富士山は日本で一番高い山です。", ["富士山は日本で一番高い山です。"], lang="ja")
    assert BleuMetric().compute([same])["bleu"].value == pytest.approx(1.0)
    # Scored as English (13a) the unspaced sentence is one token: no 2-gram exists and BLEU collapses.
    as_english = sample("en", same.answer, same.references)
    assert BleuMetric().compute([as_english])["bleu"].value < 0.5


def test_corpus_bleu_sums_statistics_across_languages():
    """A mixed set is one corpus: each sample tokenized for its language, n-gram statistics summed."""
    value = BleuMetric().compute([EN, JA])["bleu"]
    correct = [a + b for a, b in zip(EN_COUNTS[0], JA_COUNTS[0])]
    total = [a + b for a, b in zip(EN_COUNTS[1], JA_COUNTS[1])]
    expected = bleu_from_counts(correct, total, EN_COUNTS[2] + JA_COUNTS[2], EN_COUNTS[3] + JA_COUNTS[3])
    assert value.value == pytest.approx(expected, abs=1e-9)
    # Corpus BLEU is not the mean of sentence BLEU; per-sample scores are each sample's own.
    expected_per_sample = (bleu_from_counts(*EN_COUNTS), bleu_from_counts(*JA_COUNTS))
    assert value.per_sample == pytest.approx(expected_per_sample)
    assert value.value != pytest.approx(sum(value.per_sample) / 2, abs=1e-4)


def test_same_language_corpus_equals_sacrebleu_corpus_bleu():
    import sacrebleu

    samples = [EN, sample("b", "a dog ran in the park", ["the dog ran in a park", "a dog runs in the park"])]
    expected = sacrebleu.corpus_bleu(
        [s.answer for s in samples],
        [[s.references[0] for s in samples], [None, samples[1].references[1]]],
        tokenize="13a",
    ).score / 100
    assert BleuMetric().compute(samples)["bleu"].value == pytest.approx(expected, abs=1e-12)


def test_multiple_references_take_the_best_match():
    exact = sample("m", "the cat sat on the mat", ["a dog barked", "the cat sat on the mat"])
    assert BleuMetric().compute([exact])["bleu"].value == pytest.approx(1.0)


def test_samples_without_references_are_left_out_and_counted():
    value = BleuMetric().compute([EN, sample("none", "anything", [" "])])["bleu"]
    assert value.value == pytest.approx(bleu_from_counts(*EN_COUNTS))
    assert value.per_sample[1] is None
    assert "scored 1 of 2" in value.reason and "no reference answer" in value.reason

    nothing = BleuMetric().compute([sample("none", "anything", [])])["bleu"]
    assert not nothing.measured and "no sample applies" in nothing.reason


def test_empty_answer_scores_zero():
    value = BleuMetric().compute([sample("e", "", ["the cat"])])["bleu"]
    assert value.value == 0.0 and value.measured


def test_unavailable_tokenizer_falls_back_to_char_with_a_note(monkeypatch):
    monkeypatch.setitem(tokenizers._BLEU_TOKENIZERS, "xx", ("no-such-tokenizer", "char"))
    tokenizers.bleu_tokenizer.cache_clear()
    try:
        name, note = tokenizers.bleu_tokenizer("xx")
        assert name == "char" and "no-such-tokenizer" in note
        value = BleuMetric().compute([sample("x", "東京です", ["東京です"], lang="xx")])["bleu"]
        assert value.value == pytest.approx(1.0)
        assert "BLEU tokenizer 'char' used" in value.reason
    finally:
        tokenizers.bleu_tokenizer.cache_clear()


def test_answers_shorter_than_four_tokens_give_corpus_bleu_zero():
    """Standard corpus BLEU (no effective order): without a single 4-gram in the corpus it is 0, even for exact
    answers; sentence BLEU (effective order) still gives them 1. Gate short-answer sets on ROUGE/BERTScore."""
    value = BleuMetric().compute([sample("a", "Paris", ["Paris"]), sample("b", "Mount Etna", ["Mount Etna"])])["bleu"]
    assert value.value == 0.0 and value.measured
    assert value.per_sample == (pytest.approx(1.0), pytest.approx(1.0))
