"""The answerability check on a real index: the manifest's threshold, the fallback for old indexes, the message."""

from __future__ import annotations

import asyncio

import pytest

from llmops.chat.answerability import Answerability
from llmops.config import AnswerabilityConfig
from llmops.index.retriever import Retriever
from tests.conftest import write_corpus
from tests.helpers import CORPUS, build, make_config

ON_TOPIC = "Which Sicilian volcano is one of the most active?"
OFF_TOPIC = "How do I reset my corporate VPN password?"


@pytest.fixture(scope="module")
def retriever(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chat-answerability")
    # no eval set: the index records the config's fallback threshold
    cfg = make_config(tmp, write_corpus(tmp / "corpus", CORPUS), answerability={"fallback_threshold": 0.3})
    return Retriever.load(build(cfg)[0].artifact_uri)


def test_the_threshold_is_the_index_manifests(retriever):
    # the config's own threshold does not override what the index resolved (evaluation measured that one)
    check = Answerability.for_retriever(retriever, AnswerabilityConfig(threshold=0.9))
    assert (check.threshold, check.threshold_from) == (0.3, "fallback")
    on, off = check.assess_batch([ON_TOPIC, OFF_TOPIC])
    assert on.answerable and on.score >= 0.3 and on.threshold == 0.3
    assert not off.answerable and off.score < 0.3
    assert asyncio.run(check.assess(OFF_TOPIC)) == off


def test_disabled_is_none_and_an_index_without_a_threshold_uses_the_configs(retriever):
    assert Answerability.for_retriever(retriever, AnswerabilityConfig(enabled=False)) is None
    old = Retriever(retriever.directory, retriever.manifest.model_copy(update={"answerability": None}),
                    retriever.embedder)
    fixed = Answerability.for_retriever(old, AnswerabilityConfig(threshold=0.5))
    assert (fixed.threshold, fixed.threshold_from) == (0.5, "config")
    auto = Answerability.for_retriever(old, AnswerabilityConfig(fallback_threshold=0.1))
    assert (auto.threshold, auto.threshold_from) == (0.1, "fallback")


def test_message_in_the_configured_language_else_english(retriever):
    config = AnswerabilityConfig(messages={"en": "Not in the documents.", "ja": "文書にありません。"})
    check = Answerability.for_retriever(retriever, config)
    assert check.message("ja") == "文書にありません。"
    assert check.message("ko") == "Not in the documents."


def test_config_refuses_bad_answerability_settings():
    with pytest.raises(ValueError, match="needs an `en` entry"):
        AnswerabilityConfig(messages={"ja": "x"})
    with pytest.raises(ValueError, match="between -1 and 1"):
        AnswerabilityConfig(threshold=1.5)
