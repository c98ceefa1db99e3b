"""The one QA reader/writer: JSONL eval sets with unanswerable questions, and their round trip."""

from __future__ import annotations

import json

import pytest

from llmops.corpus.documents import split_answerable
from llmops.corpus.qa import read_qa, write_qa
from llmops.errors import EvalDataError


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
