"""ROUGE-1/2/L F1 against hand-counted overlaps, English and Japanese (MeCab words)."""

import pytest

from eval.metrics.base import EvalSample
from eval.metrics.rouge import RougeMetric
from eval.metrics.tokenizers import rouge_tokens


def sample(qid, answer, references, lang="en"):
    return EvalSample(qid, "q?", answer, tuple(references), (), lang=lang)


def f1(p, r):
    return 2 * p * r / (p + r)


def test_english_matches_hand_counts():
    # "the quick brown fox" vs "the fast brown fox jumps": unigrams the/brown/fox = 3 (P 3/4, R 3/5);
    # bigrams brown·fox = 1 (P 1/3, R 1/4); LCS the-brown-fox = 3.
    values = RougeMetric().compute([sample("a", "The quick brown fox.", ["the fast brown fox jumps"])])
    assert values["rouge_1"].value == pytest.approx(f1(3 / 4, 3 / 5))
    assert values["rouge_2"].value == pytest.approx(f1(1 / 3, 1 / 4))
    assert values["rouge_l"].value == pytest.approx(f1(3 / 4, 3 / 5))
    assert all(v.higher_is_better and v.reason is None for v in values.values())


def test_japanese_identical_strings_score_one():
    from rouge_score.rouge_scorer import RougeScorer

    same = "富士山は日本で一番高い山です。"
    # The reason for the custom tokenizer: rouge-score alone deletes every Japanese character.
    assert RougeScorer(["rouge1"]).score(same, same)["rouge1"].fmeasure == 0.0
    values = RougeMetric().compute([sample("ja", same, [same], lang="ja")])
    assert {k: v.value for k, v in values.items()} == {"rouge_1": 1.0, "rouge_2": 1.0, "rouge_l": 1.0}


def test_japanese_matches_hand_counts():
    answer, reference = "東京は日本の首都です", "日本の首都は東京です"
    assert rouge_tokens(answer, "ja") == ["東京", "は", "日本", "の", "首都", "です"]
    assert rouge_tokens(reference, "ja") == ["日本", "の", "首都", "は", "東京", "です"]
    # Same 6 words in another order: ROUGE-1 = 1; bigrams 日本·の, の·首都 of 5 = 0.4; LCS 日本-の-首都-です = 4/6.
    values = RougeMetric().compute([sample("ja", answer, [reference], lang="ja")])
    assert values["rouge_1"].value == pytest.approx(1.0)
    assert values["rouge_2"].value == pytest.approx(0.4)
    assert values["rouge_l"].value == pytest.approx(4 / 6)


def test_japanese_punctuation_and_width_do_not_count():
    # NFKC folds full-width letters and digits; punctuation and symbols are not words.
    assert rouge_tokens("ＡＩは２０２４年に、急速に進歩した！", "ja") == rouge_tokens("AIは2024年に急速に進歩した", "ja")


def test_english_tokens_equal_rouge_scores_own_on_ascii():
    from rouge_score.tokenize import tokenize

    for s in ["The U.S. GDP grew 2.5% in Q3-2024!", "it's a well-known fact", "don't stop_words here"]:
        assert rouge_tokens(s, "en") == tokenize(s, None)
    # ... but non-ASCII letters stay inside their words instead of splitting them.
    assert rouge_tokens("Café crème in Zürich", "en") == ["café", "crème", "in", "zürich"]


def test_chinese_is_scored_per_character():
    assert rouge_tokens("北京是首都 in 2024", "zh") == ["北", "京", "是", "首", "都", "in", "2024"]
    values = RougeMetric().compute([sample("zh", "北京是首都", ["首都是北京"], lang="zh")])
    assert values["rouge_1"].value == pytest.approx(1.0)


def test_multiple_references_take_the_best_per_type():
    values = RougeMetric().compute([sample("m", "the cat sat", ["a dog barked loudly", "the cat sat down"])])
    assert values["rouge_1"].value == pytest.approx(f1(1, 3 / 4))


def test_mean_over_samples_and_left_out_samples():
    samples = [
        sample("a", "the cat sat", ["the cat sat"]),
        sample("b", "nothing alike", ["totally different words"]),
        sample("c", "no reference", []),
    ]
    values = RougeMetric().compute(samples)
    assert values["rouge_1"].value == pytest.approx(0.5)
    assert values["rouge_1"].per_sample == (1.0, 0.0, None)
    assert "scored 2 of 3" in values["rouge_l"].reason
