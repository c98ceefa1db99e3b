"""The one QA reader/writer: JSONL eval sets with unanswerable questions and with follow-ups (conversational QA:
`history` round-trips, bad history lines name file and line, one deterministic search form shared with the chat
path's `concat` rewrite)."""

from __future__ import annotations

import json

import pytest

from llmops.chat.conversation import Conversation, Turn
from llmops.chat.rewrite import QueryRewriter
from llmops.corpus.documents import QAExample, followup_query, split_answerable
from llmops.corpus.qa import read_qa, write_qa
from llmops.errors import EvalDataError
from tests.conftest import REPO_ROOT


def jsonl(tmp_path, *records) -> str:
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_unanswerable_questions_are_kept_and_round_trip(tmp_path):
    path = jsonl(
        tmp_path,
        {"question": "How long are audit logs kept?", "answers": ["400 days"]},
        {"question": "What is the office Wi-Fi password?", "answerable": False},
        {"question": "育児休暇は何週間取れますか？", "answers": [], "answerable": False},
    )
    kept, wifi, leave = read_qa(path)
    assert kept.answerable and kept.answers == ("400 days",)
    assert (wifi.answerable, wifi.answers) == (False, ())
    assert (leave.answerable, leave.lang) == (False, "ja")
    answerable, unanswerable = split_answerable([kept, wifi, leave])
    assert answerable == [kept] and unanswerable == [wifi, leave]

    write_qa([kept, wifi, leave], tmp_path / "out.jsonl")
    assert read_qa(tmp_path / "out.jsonl") == [kept, wifi, leave]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"question": "q?", "answers": ["a"], "answerable": False}, "`answers` must be empty when `answerable` is false"),
        ({"question": "q?", "answerable": "no"}, "`answerable` must be true or false"),
    ],
)
def test_contradictory_answerability_is_refused_naming_the_field(tmp_path, record, message):
    with pytest.raises(EvalDataError, match=message) as e:
        read_qa(jsonl(tmp_path, record))
    assert "line 1" in str(e.value)


# ---- conversational QA ----

HISTORY = [
    {"role": "user", "content": "How long are internal service certificates valid?"},
    {"role": "assistant", "content": "30 days."},
]


def test_history_round_trips_through_the_writer(tmp_path):
    path = jsonl(tmp_path, *[
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
    path = jsonl(tmp_path, *[
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


def test_production_provenance_is_read_kept_and_written_only_when_set(tmp_path):
    from llmops.corpus.documents import QAProvenance

    provenance = {"source": "production", "response_id": "chatcmpl-1", "reviewed_at": "2026-03-03T09:00:00Z",
                  "review": "reference"}
    path = jsonl(tmp_path,
                 {"question": "How long are audit logs kept?", "answers": ["400 days"]},
                 {"id": "production-chatcmpl-1", "question": "Who renews certificates?", "answers": ["the job"],
                  "provenance": provenance})
    hand, production = read_qa(path)
    assert hand.provenance is None and production.provenance == QAProvenance(**provenance)
    before = read_qa(jsonl(tmp_path, {"question": "How long are audit logs kept?", "answers": ["400 days"]}))
    assert before[0].qid == hand.qid  # appending a production line leaves the hand-written ids as they were

    write_qa([hand, production], tmp_path / "out.jsonl")
    first, second = (json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines())
    assert "provenance" not in first and second["provenance"] == provenance
    assert read_qa(tmp_path / "out.jsonl") == [hand, production]

    bad = jsonl(tmp_path, {"question": "Q?", "answers": ["a"], "provenance": {"source": 1}})
    with pytest.raises(EvalDataError, match=r"line 1: `provenance` must be an object with a string `source`"):
        read_qa(bad)
