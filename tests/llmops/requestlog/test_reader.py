"""`read_window`: only the window's records, feedback joined to its request across days (the latest rating wins),
unfinished files ignored, unreadable lines reported with file:line and skipped, never fatal."""

from __future__ import annotations

import datetime as dt
import uuid

import fsspec
import pytest

from llmops.requestlog.reader import read_window, unread_note
from llmops.requestlog.record import FeedbackRecord, RequestLogError, RequestLatency, RequestRecord

DAY1 = dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc).timestamp()
DAY = 86400.0


def request(n: int, t: float) -> RequestRecord:
    return RequestRecord(
        response_id=f"chatcmpl-{n:032x}", time=t, model="rag", release="r1", index_version="v1", lang="en",
        question="q", retrieval_query="q", mode="dense", answer="a", finish_reason="stop",
        latency=RequestLatency(retrieval_ms=1.0, total_ms=2.0),
    )


def feedback(n: int, t: float, rating: str) -> FeedbackRecord:
    return FeedbackRecord(response_id=f"chatcmpl-{n:032x}", time=t, rating=rating)


@pytest.fixture(params=["local", "memory"])
def root(request, tmp_path) -> str:
    return str(tmp_path / "log") if request.param == "local" else f"memory://reader-{uuid.uuid4().hex}"


def put(root: str, day: float, name: str, lines: list[str]) -> None:
    fs, base = fsspec.core.url_to_fs(root)
    folder = f"{base}/{dt.datetime.fromtimestamp(day, dt.timezone.utc):%Y/%m/%d}"
    fs.makedirs(folder, exist_ok=True)
    fs.pipe_file(f"{folder}/{name}", "".join(line + "\n" for line in lines).encode())


def test_window_keeps_only_its_records(root):
    put(root, DAY1, "a.jsonl", [request(1, DAY1 + 10).model_dump_json(), request(2, DAY1 + 100).model_dump_json()])
    put(root, DAY1 + DAY, "b.jsonl", [request(3, DAY1 + DAY + 5).model_dump_json()])
    put(root, DAY1 + 3 * DAY, "c.jsonl", [request(4, DAY1 + 3 * DAY).model_dump_json()])  # a day not in the window
    window = read_window(root, DAY1 + 50, DAY1 + DAY + 60)
    assert [r.response_id for r in window.requests] == [request(2, 0).response_id, request(3, 0).response_id]
    assert window.files == 2
    assert len(read_window(root, DAY1, DAY1 + 100).requests) == 1  # end is exclusive


def test_feedback_given_on_a_later_day_is_joined_and_the_latest_rating_wins(root):
    put(root, DAY1, "a.jsonl", [request(1, DAY1 + DAY - 5).model_dump_json()])
    put(root, DAY1 + DAY, "b.jsonl", [feedback(1, DAY1 + DAY + 30, "up").model_dump_json(),
                                      feedback(1, DAY1 + DAY + 60, "down").model_dump_json()])
    window = read_window(root, DAY1, DAY1 + 2 * DAY)
    assert window.rating(request(1, 0).response_id) == "down"
    assert window.rating("chatcmpl-" + "f" * 32) is None
    early = read_window(root, DAY1, DAY1 + DAY + 45)  # feedback after the window's end is not seen
    assert early.rating(request(1, 0).response_id) == "up"


def test_unreadable_lines_are_reported_not_fatal(root):
    good = request(1, DAY1 + 1).model_dump_json()
    put(root, DAY1, "a.jsonl", [
        good,
        "{not json",
        '{"kind": "mystery", "schema_version": 1}',
        good.replace('"schema_version":1', '"schema_version":99'),
        '{"kind": "request", "schema_version": 1}',
        "",
    ])
    window = read_window(root, DAY1, DAY1 + DAY)
    assert len(window.requests) == 1
    assert window.skipped_lines == 4
    assert [reason.split(": ", 1)[0].rsplit("/", 1)[-1] for reason in window.skip_reasons] == [
        "a.jsonl:2", "a.jsonl:3", "a.jsonl:4", "a.jsonl:5",
    ]
    assert "not valid JSON" in window.skip_reasons[0] and "schema_version 99" in window.skip_reasons[2]


def test_unfinished_files_are_not_read_and_are_counted_with_a_note(root):
    put(root, DAY1, "host-1-x-000001.jsonl.part", [request(1, DAY1 + 1).model_dump_json()])
    window = read_window(root, DAY1, DAY1 + DAY)
    assert window.requests == [] and window.files == 0 and window.open_files == 1
    assert "1 log file(s) of this window are still being written" in unread_note(window, root)
    assert "stop the server" in unread_note(window, root)


def test_a_missing_local_folder_is_named_in_the_note(tmp_path):
    root = str(tmp_path / "nothing-here")
    window = read_window(root, DAY1, DAY1 + DAY)
    assert window.files == 0 and not window.root_exists
    assert unread_note(window, root).startswith(f"the request log folder {root} does not exist")
    put(root, DAY1, "host-1-x-000001.jsonl", [request(1, DAY1 + 1).model_dump_json()])
    assert unread_note(read_window(root, DAY1, DAY1 + DAY), root) is None


def test_a_window_must_end_after_it_starts(root):
    with pytest.raises(RequestLogError, match="must end after it starts"):
        read_window(root, DAY1, DAY1)
