"""The review file: which production questions are selected, why, and how duplicates fold; the file's reader names
every bad row and field."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmops.feedback.review import (
    ReviewFileError,
    ReviewRow,
    normalize_question,
    read_review_file,
    select_for_review,
    write_review_file,
)
from llmops.requestlog.reader import read_window
from tests.llmops.feedback.logs import NOW, rating, request, write_log

H = 3600.0


def window(tmp_path, records):
    root = write_log(tmp_path / "log", records)
    return read_window(str(root), NOW - 2 * 86400, NOW + H)


def test_selects_negative_feedback_refusals_and_low_relevance_once_per_question(tmp_path):
    records = [
        request("a1", "Which volcano is active?", t=NOW - 30 * H),  # rated down below
        request("a2", "which  VOLCANO is active?", t=NOW - 2 * H, relevance=0.1),  # same question, later
        request("b", "What is the Wi-Fi password?", t=NOW - 3 * H, relevance=0.05, refusal="not_in_documents"),
        request("c", "Where is Etna?", t=NOW - 4 * H, relevance=0.2),  # low relevance, no feedback
        request("d", "What is matcha?", t=NOW - 5 * H, relevance=0.9),  # rated up: not selected
        request("e", "How do I build a bomb?", t=NOW - 6 * H, relevance=0.9, refusal="content_filter"),
        rating("a1", "down", t=NOW - 29 * H, comment="wrong volcano"),
        rating("d", "up", t=NOW - 4 * H),
        rating("c", "down", t=NOW - 3 * H),
        rating("c", "up", t=NOW - 2 * H),  # the later rating replaces the first
    ]
    export = select_for_review(window(tmp_path, records), lambda record: 0.3)

    by_id = {row.response_id: row for row in export.rows}
    assert set(by_id) == {"a2", "b", "c"}
    volcano = by_id["a2"]  # the latest of the two, with the reasons of both
    assert volcano.reasons == ("negative_feedback", "low_relevance") and volcano.duplicates == 1
    assert volcano.rating is None  # its own request was not rated; the earlier one was
    assert by_id["b"].reasons == ("not_in_documents", "low_relevance")
    assert by_id["c"].reasons == ("low_relevance",) and by_id["c"].rating == "up"
    assert [r.response_id for r in export.rows] == ["c", "b", "a2"]  # oldest first
    assert (export.requests, export.selected, export.duplicates) == (6, 4, 1)
    assert export.reasons == {"negative_feedback": 1, "not_in_documents": 1, "low_relevance": 3}


def test_no_threshold_means_feedback_and_refusals_only(tmp_path):
    records = [request("a", "Where is Etna?", t=NOW - H, relevance=0.01),
               request("b", "Off topic?", t=NOW - H, relevance=0.01, refusal="not_in_documents")]
    export = select_for_review(window(tmp_path, records), lambda record: None)
    assert [(r.response_id, r.reasons) for r in export.rows] == [("b", ("not_in_documents",))]


def test_normalized_questions_fold_width_case_and_spaces():
    wide = "  ＷＨＩＣＨ\tVolcano  is\nactive？ "
    assert normalize_question(wide) == normalize_question("which volcano is active?")
    assert normalize_question("Straße") == normalize_question("STRASSE")


def test_review_file_round_trips_with_empty_reviewer_fields(tmp_path):
    rows = select_for_review(window(tmp_path, [request("a", "Where is Etna?", t=NOW - H, relevance=0.1)]),
                             lambda record: 0.3).rows
    path = tmp_path / "review.jsonl"
    write_review_file(rows, path)
    line = json.loads(path.read_text())
    assert line["reference"] is None and line["irrelevant"] is None and "reviewed_at" not in line
    assert line["time"].endswith("Z") and line["sources"][0]["source"] == "volcano.md"
    [(n, row)] = read_review_file(path)
    assert n == 1 and row == rows[0] and row.review is None


def test_bad_rows_are_all_named_by_line_and_field(tmp_path):
    rows = select_for_review(window(tmp_path, [request("a", "Where is Etna?", t=NOW - H, relevance=0.1)]),
                             lambda record: 0.3).rows
    good = json.loads(rows[0].model_dump_json())
    path = tmp_path / "review.jsonl"
    path.write_text("\n".join([
        json.dumps({**good, "reference": "Sicily"}),
        json.dumps({**good, "reference": "Sicily", "irrelevant": True}),
        json.dumps({**good, "irrelevant": "yes please"}),
        "{not json",
        json.dumps({**good, "question": ""}),
    ]) + "\n")
    with pytest.raises(ReviewFileError) as e:
        read_review_file(path)
    message = str(e.value)
    assert "4 problem(s), nothing was merged" in message
    assert "line 2: field `reference`: set together with `irrelevant: true`" in message
    assert "line 3: field `irrelevant`" in message and "line 4: not valid JSON" in message
    assert "line 5: field `question`" in message and "line 1" not in message
    assert message.endswith("run the merge again")


def test_a_folder_or_a_file_that_is_not_utf8_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ReviewFileError, match="is a directory: pass the JSONL file"):
        read_review_file(tmp_path)
    path = tmp_path / "review.jsonl"
    path.write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(ReviewFileError, match="is not UTF-8 text .*save it as UTF-8 JSONL"):
        read_review_file(path)



JSON = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=10,
)
FIELDS = st.fixed_dictionaries({}, optional={name: JSON for name in ReviewRow.model_fields})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(FIELDS | JSON | st.text(max_size=30), min_size=1, max_size=4))
def test_any_review_file_reads_or_is_refused_with_its_lines_named(tmp_path, lines):
    """Whatever a reviewer's editor leaves in the file: rows, or a ReviewFileError naming lines; never a crash."""
    path = tmp_path / "fuzz.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n",
                    encoding="utf-8")
    try:
        rows = read_review_file(path)
    except ReviewFileError as e:
        assert "line " in str(e) and str(e).endswith("run the merge again")
    else:
        assert all(isinstance(row, ReviewRow) for _, row in rows)
