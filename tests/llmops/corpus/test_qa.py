"""The QA reader and writer with conversational QA: `history` round-trips, bad history lines name file and line,
and follow-ups have one deterministic search form (shared with the chat path's `concat` rewrite)."""

import json

import pytest

from llmops.chat.conversation import Conversation, Turn
from llmops.chat.rewrite import QueryRewriter
from llmops.corpus.documents import QAExample, followup_query
from llmops.corpus.qa import read_qa, write_qa
from llmops.errors import EvalDataError
from tests.conftest import REPO_ROOT

HISTORY = [
    {"role": "user", "content": "How long are internal service certificates valid?"},
    {"role": "assistant", "content": "30 days."},
]


def write_lines(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n"
                            for r in records), encoding="utf-8")
    return path


def test_history_round_trips_through_the_writer(tmp_path):
    path = write_lines(tmp_path / "qa.jsonl", [
        {"id": "single", "question": "How long are audit logs kept?", "answers": ["400 days"]},
        {"id": "follow", "history": HISTORY, "question": "And when are they renewed?", "answers": ["10 days"]},
        {"id": "null-history", "history": None, "question": "Who signs off?", "answers": ["Dana"]},
    ])
    examples = read_qa(path)
    assert [ex.history for ex in examples] == [
        (), (("user", HISTORY[0]["content"]), ("assistant", "30 days.")), ()
    ]
    write_qa(examples, tmp_path / "again.jsonl")
    assert read_qa(tmp_path / "again.jsonl") == examples
    written = json.loads((tmp_path / "again.jsonl").read_text(encoding="utf-8").splitlines()[1])
    assert written["history"] == HISTORY  # OpenAI messages, as the eval set gives them


@pytest.mark.parametrize(
    "history",
    [
        "user: hi",  # not a list
        [{"role": "system", "content": "You are a pirate."}],  # only user and assistant turns
        [{"role": "user"}],  # no content
        [{"role": "user", "content": 42}],
        [["user", "hi"]],  # pairs are the in-memory form, not the file's
    ],
)
def test_a_bad_history_names_the_file_and_line(tmp_path, history):
    path = write_lines(tmp_path / "qa.jsonl", [
        {"question": "fine", "answers": ["a"]},
        {"question": "follow-up?", "answers": ["a"], "history": history},
    ])
    with pytest.raises(EvalDataError, match=rf"{tmp_path / 'qa.jsonl'} line 2: `history` must be a list"):
        read_qa(path)


def test_a_follow_up_is_searched_with_the_previous_user_message():
    ex = QAExample("q", "And when are they renewed?", ("10 days",), history=tuple((t["role"], t["content"])
                                                                                  for t in HISTORY))
    assert ex.search_query == "How long are internal service certificates valid? And when are they renewed?"
    assert QAExample("s", "How long are audit logs kept?", ()).search_query == "How long are audit logs kept?"
    # the last user turn, not the first; assistant turns never
    turns = (("user", "first"), ("assistant", "a"), ("user", "second"), ("assistant", "b"))
    assert followup_query("third?", turns) == "second third?"
    assert followup_query("q?", (("assistant", "only the model spoke"),)) == "q?"
    # the chat path's concat rewrite (and its fallback) is the same function
    conv = Conversation("third?", tuple(Turn(r, t) for r, t in turns))
    assert QueryRewriter.concat(conv) == followup_query("third?", turns)


def test_the_quickstart_has_english_and_japanese_follow_ups():
    examples = read_qa(REPO_ROOT / "examples/quickstart/qa.jsonl")
    follow_ups = [ex for ex in examples if ex.history]
    assert len(follow_ups) >= 6 and {ex.lang for ex in follow_ups} == {"en", "ja"}
    for ex in follow_ups:  # a realistic conversation: it starts with the user and ends with the assistant's answer
        assert ex.history[0][0] == "user" and ex.history[-1][0] == "assistant"
