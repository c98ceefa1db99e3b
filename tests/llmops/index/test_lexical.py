import json
import pickle

import numpy as np
import pytest

from llmops.config import LexicalConfig
from llmops.errors import ArtifactNotFoundError, ConfigError, IndexBuildError
from llmops.index.lexical import LexicalIndex, titled, tokenize

JA_DOCS = [
    "富士山は静岡県と山梨県にまたがる活火山で、標高は3776メートルである。日本の最高峰として知られる。",
    "東京大学は1877年に設立された日本の国立大学である。本郷キャンパスは文京区にある。",
    "梅雨は北海道を除く日本で5月から7月にかけて見られる雨の多い期間のことである。",
    "将棋は二人で行うボードゲームの一種で、駒を動かして相手の玉将を詰ませることを目指す。",
]
EN_DOCS = [
    "The Super Bowl is the annual championship game of the National Football League.",
    "Photosynthesis converts light energy into chemical energy in plants.",
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "Football fans watch the Super Bowl; the Super Bowl halftime show draws large audiences.",
]


def test_word_tokens_are_normalized_lowercased_without_stopwords():
    assert tokenize("The ＲＡＧ pipeline, in 2024: Top-5 of THE results!", "word") == [
        "rag", "pipeline", "2024", "top", "5", "results"
    ]


def test_mecab_drops_punctuation_and_particles():
    tokens = tokenize("東京大学は1877年に設立された。", "mecab")
    assert tokens[:2] == ["東京", "大学"] and "設立" in tokens and "1877" in tokens
    assert not {"は", "に", "。"} & set(tokens)


def test_bigram_and_auto_modes():
    assert tokenize("北京大学 Peking University", "bigram") == ["北京", "京大", "大学", "peking", "university"]
    assert tokenize("北京大学", "auto") == ["北京", "京大", "大学"]  # no kana: Chinese (or kanji-only) -> bigrams
    ja = tokenize("東京大学はTokyoにある。", "auto")  # kana: MeCab words plus bigrams, Latin as words
    assert {"東京", "大学", "京大", "tokyo"} <= set(ja) and "は" not in ja
    assert tokenize("The Super Bowl", "auto") == tokenize("The Super Bowl", "word") == ["super", "bowl"]
    with pytest.raises(ValueError, match="allowed"):
        tokenize("x", "spaces")


def test_japanese_query_without_spaces_finds_its_document():
    index = LexicalIndex.build(JA_DOCS, LexicalConfig())
    ids, scores = index.search(["日本で一番高い山の標高は？", "東京大学が設立されたのは何年か", "将棋の駒"], 2)
    assert ids[:, 0].tolist() == [0, 1, 3]
    assert (scores[:, 0] > 0).all() and (scores[:, 0] >= scores[:, 1]).all()
    # a kanji-only query (no kana, so tokenized as bigrams) still matches the Japanese passages
    assert index.search(["東京大学設立"], 1)[0][0, 0] == 1


@pytest.mark.parametrize("mode", ["mecab", "bigram"])
def test_japanese_retrieval_in_explicit_modes(mode):
    index = LexicalIndex.build(JA_DOCS, LexicalConfig(tokenizer=mode))
    assert index.search(["梅雨の時期", "富士山の標高"], 1)[0][:, 0].tolist() == [2, 0]


def test_english_ranking_prefers_more_and_rarer_matches():
    index = LexicalIndex.build(EN_DOCS, LexicalConfig(tokenizer="word"))
    ids, scores = index.search(["Super Bowl halftime show", "energy in plants"], 4)
    assert ids[0, :2].tolist() == [3, 0]  # doc 3 also matches the rare "halftime show"
    assert ids[0, 2:].tolist() == [-1, -1] and scores[0, 2:].tolist() == [0.0, 0.0]  # only positive scores
    assert ids[1, 0] == 1 and ids[1, 1] == -1
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == scores.shape == (2, 4)


def test_k_larger_than_corpus_pads_and_ties_break_by_position():
    index = LexicalIndex.build(["alpha beta", "gamma", "alpha beta", "alpha beta"], LexicalConfig())
    ids, scores = index.search(["alpha"], 10)
    assert ids.shape == (1, 10)
    assert ids[0].tolist() == [0, 2, 3] + [-1] * 7
    assert scores[0, 0] == scores[0, 1] == scores[0, 2] > 0 and not scores[0, 3:].any()
    assert index.search(["alpha"], 2)[0][0].tolist() == [0, 2]


def test_queries_without_known_terms_return_padding():
    index = LexicalIndex.build(EN_DOCS + JA_DOCS, LexicalConfig())
    ids, scores = index.search(["", "the of and", "zyxwv qqq", "。、！"], 3)
    assert (ids == -1).all() and (scores == 0).all()
    # a corpus of stopwords only has no terms at all, and still answers
    empty = LexicalIndex.build(["the", ""], LexicalConfig())
    assert (empty.search(["the anything"], 2)[0] == -1).all()


def test_build_needs_texts():
    with pytest.raises(IndexBuildError, match="no texts"):
        LexicalIndex.build([], LexicalConfig())


def test_save_load_round_trip_is_identical_and_deterministic(tmp_path):
    cfg = LexicalConfig()
    texts = EN_DOCS + JA_DOCS
    queries = ["Super Bowl football", "東京大学の設立", "梅雨", "nothing-known-here"]
    index = LexicalIndex.build(texts, cfg)
    names = index.save(tmp_path / "a")
    assert names == sorted(p.name for p in (tmp_path / "a").iterdir())
    assert index.save(tmp_path / "a") == names  # overwriting reports the same files
    LexicalIndex.build(list(texts), cfg).save(tmp_path / "b")
    for name in names:
        content = (tmp_path / "a" / name).read_bytes()
        assert content == (tmp_path / "b" / name).read_bytes(), f"{name} differs between identical builds"
        assert str(tmp_path).encode() not in content, f"{name} holds an absolute path"

    loaded = LexicalIndex.load(tmp_path / "a", cfg)
    for got, want in zip(loaded.search(queries, 5), index.search(queries, 5)):
        np.testing.assert_array_equal(got, want)
    # no tagger or other unpicklable state on the object (Flyte tasks pickle their inputs and outputs)
    again = pickle.loads(pickle.dumps(loaded))
    np.testing.assert_array_equal(again.search(queries, 5)[0], index.search(queries, 5)[0])


def test_load_refuses_a_different_tokenizer_or_missing_index(tmp_path):
    LexicalIndex.build(EN_DOCS, LexicalConfig(tokenizer="word")).save(tmp_path / "lex")
    with pytest.raises(ConfigError, match="lexical.tokenizer.*'word'.*'auto'"):
        LexicalIndex.load(tmp_path / "lex", LexicalConfig(tokenizer="auto"))
    with pytest.raises(ArtifactNotFoundError, match="vocab.index.json"):
        LexicalIndex.load(tmp_path / "missing", LexicalConfig())


def test_titled_heads_text_with_the_title_and_leaves_untitled_text_alone():
    assert titled("Super_Bowl_50", "The game was played in 2016.") == "Super Bowl 50\nThe game was played in 2016."
    assert titled("", "text") == titled(None, "text") == titled(" _ ", "text") == "text"


def test_titles_let_queries_match_what_only_the_title_names():
    texts = ["Its capital is Vientiane, on the Mekong.", "Its capital is Hanoi, in the north.", "Tea grows here."]
    titles = ["Laos", "Vietnam", None]  # a document without a title is indexed by its text alone
    plain = LexicalIndex.build(texts, LexicalConfig())
    with_titles = LexicalIndex.build(texts, LexicalConfig(), titles=titles)
    assert plain.search(["Laos"], 1)[0][0, 0] == -1  # the word is in no text
    assert with_titles.search(["capital of Laos", "Vietnam capital", "tea"], 1)[0][:, 0].tolist() == [0, 1, 2]
    assert (plain.fields, with_titles.fields) == ("text", "title + text")
    ja = LexicalIndex.build(["首都はビエンチャンである。", "首都はハノイである。"], LexicalConfig(), titles=["ラオス", "ベトナム"])
    assert ja.search(["ラオスの首都は？"], 1)[0][0, 0] == 0
    with pytest.raises(IndexBuildError, match="2 titles for 3 texts"):
        LexicalIndex.build(texts, LexicalConfig(), titles=titles[:2])


def test_saved_index_records_what_it_indexed(tmp_path):
    LexicalIndex.build(EN_DOCS, LexicalConfig(), titles=["a", "b", "c", "d"]).save(tmp_path / "t")
    assert json.loads((tmp_path / "t" / "lexical.json").read_text())["fields"] == "title + text"
    assert LexicalIndex.load(tmp_path / "t", LexicalConfig()).fields == "title + text"
