"""The request log writer on a local folder and on `memory://` (the object-store path: no append, one put per file):
layout and round trip through the reader, rotation by size, age and UTC day, a full queue, a failing store, close."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from pathlib import Path

import fsspec
import pytest

from llmops.config import RequestLogConfig
from llmops.requestlog.reader import read_window
from llmops.requestlog.record import FeedbackRecord, RequestLatency, RequestRecord
from llmops.requestlog.writer import RequestLogWriter

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc).timestamp()
NAME = r"[A-Za-z0-9._]+-\d+-\d{8}T\d{6}Z-\d{6}\.jsonl"


class Clock:
    """The writer's wall clock, moved by the test (files are dated and aged by it)."""

    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def request(n: int, t: float = T0) -> RequestRecord:
    return RequestRecord(
        response_id=f"chatcmpl-{n:032x}", time=t, model="rag", release="r1", index_version="v1", lang="en",
        question=f"question {n}", retrieval_query=f"question {n}", mode="dense", answer="an answer",
        finish_reason="stop", latency=RequestLatency(retrieval_ms=1.0, total_ms=2.0),
    )


@pytest.fixture(params=["local", "memory"])
def root(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "log")
    return f"memory://requestlog-{uuid.uuid4().hex}"


def finished(root: str) -> list[str]:
    fs, base = fsspec.core.url_to_fs(root)
    return sorted(fs.glob(f"{base}/*/*/*/*.jsonl"))


def writer(root: str, clock: Clock | None = None, **cfg) -> RequestLogWriter:
    config = RequestLogConfig(path=root, flush_interval_s=cfg.pop("flush_interval_s", 3600), **cfg)
    return RequestLogWriter(config, clock=clock or Clock())


def test_round_trip_layout_and_join(root):
    w = writer(root)
    for n in range(5):
        assert w.submit(request(n, T0 + n))
    w.submit(FeedbackRecord(response_id=request(3).response_id, time=T0 + 10, rating="down", comment="wrong"))
    w.close()
    files = finished(root)
    assert len(files) == 1 and "/2026/03/01/" in files[0]
    assert __import__("re").fullmatch(NAME, files[0].rsplit("/", 1)[1])
    window = read_window(root, T0, T0 + 60)
    assert [r.response_id for r in window.requests] == [request(n).response_id for n in range(5)]
    assert window.requests[0] == request(0, T0)
    assert window.rating(request(3).response_id) == "down" and window.skipped_lines == 0
    assert w.written == 6 and w.dropped == 0 and w.write_errors == 0


def test_the_open_file_is_not_read_until_finished(root):
    clock = Clock()
    w = writer(root, clock)
    w.submit(request(1))
    w.flush()
    assert read_window(root, T0 - 1, T0 + 1).requests == []  # still open: `.part` locally, in memory on a store
    clock.now += 3601  # rotate_interval_s defaults to an hour
    w.flush()
    assert [r.response_id for r in read_window(root, T0 - 1, T0 + 1).requests] == [request(1).response_id]
    w.close()
    assert len(finished(root)) == 1  # nothing written since: no empty file


def test_rotation_by_size(root):
    w = writer(root, rotate_bytes=1000)
    for n in range(12):
        w.submit(request(n))
        w.flush()
    w.close()
    files = finished(root)
    assert len(files) > 2
    fs, _ = fsspec.core.url_to_fs(root)
    sizes = [fs.size(f) for f in files]
    line = len(request(0).model_dump_json()) + 1
    assert all(size < 1000 + line for size in sizes)  # a file is finished at the flush that reaches the size
    assert len(read_window(root, T0, T0 + 1).requests) == 12


def test_rotation_by_age(root):
    clock = Clock()
    w = writer(root, clock, rotate_interval_s=60)
    w.submit(request(1))
    w.flush()
    clock.now += 30
    w.submit(request(2))
    w.flush()
    assert finished(root) == []
    clock.now += 31  # the file is 61 s old
    w.submit(request(3))
    w.flush()
    assert len(finished(root)) == 1
    w.close()
    files = finished(root)
    assert len(files) == 2 and files[0] < files[1]  # sequence numbers sort
    assert len(read_window(root, T0, T0 + 1).requests) == 3


def test_rotation_at_the_utc_day_change(root):
    clock = Clock(dt.datetime(2026, 3, 1, 23, 59, 50, tzinfo=dt.timezone.utc).timestamp())
    w = writer(root, clock)
    w.submit(request(1, clock.now))
    w.flush()
    clock.now += 20  # 00:00:10 the next day
    w.submit(request(2, clock.now))
    w.flush()
    w.close()
    files = finished(root)
    assert [f.split("/")[-4:-1] for f in files] == [["2026", "03", "01"], ["2026", "03", "02"]]
    window = read_window(root, clock.now - 30, clock.now + 1)
    assert [r.response_id for r in window.requests] == [request(1).response_id, request(2).response_id]


def test_a_full_queue_drops_and_counts_never_blocks_or_raises(tmp_path):
    drops = []
    w = RequestLogWriter(RequestLogConfig(path=str(tmp_path / "log"), queue_size=3, flush_interval_s=3600),
                         on_drop=lambda: drops.append(1), clock=Clock())
    accepted = [w.submit(request(n)) for n in range(10)]  # the writer sleeps an hour between flushes
    assert accepted == [True] * 3 + [False] * 7
    assert w.dropped == 7 == len(drops)
    w.close()
    assert len(read_window(str(tmp_path / "log"), T0, T0 + 1).requests) == 3
    assert w.submit(request(99)) is False and w.dropped == 8  # after close: dropped, not raised


def test_a_failing_store_is_counted_logged_once_and_retried(tmp_path, caplog):
    blocker = tmp_path / "log"
    blocker.write_text("a file where the log folder should be")  # the store fails for real: no folder can be made
    errors = []
    w = RequestLogWriter(RequestLogConfig(path=str(blocker), flush_interval_s=3600),
                         on_write_error=lambda: errors.append(1), clock=Clock())
    with caplog.at_level(logging.ERROR, logger="llmops.requestlog"):
        w.submit(request(1))
        w.flush()
        w.submit(request(2))
        w.flush()
    assert w.write_errors == 2 == len(errors)
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1  # the same reason is said once
    assert w.submit(request(3))  # serving goes on
    blocker.unlink()  # the store is back: the kept batch and the queue are written
    w.close()
    assert [r.response_id for r in read_window(str(blocker), T0, T0 + 1).requests] == [
        request(n).response_id for n in (1, 2, 3)
    ]


def test_close_drains_what_is_queued_from_many_threads(root):
    w = writer(root)
    threads = [threading.Thread(target=lambda i=i: [w.submit(request(i * 100 + n)) for n in range(50)])
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.close()
    w.close()  # idempotent
    assert len(read_window(root, T0, T0 + 1).requests) == 200 and w.dropped == 0


def test_a_crashed_local_file_keeps_its_suffix(tmp_path):
    """A file never finished (the process was killed) is not a `.jsonl`: readers skip it, no half-written window."""
    w = writer(str(tmp_path / "log"))
    w.submit(request(1))
    w.flush()
    parts = list(Path(tmp_path / "log").rglob("*.jsonl.part"))
    assert len(parts) == 1 and parts[0].read_text().count("\n") == 1
    w.close()
    assert not list(Path(tmp_path / "log").rglob("*.part"))


def test_the_next_writer_on_the_host_finishes_a_crashed_writers_file(tmp_path):
    """A process killed with its file open leaves `.part`; the next writer started on the host finishes it, so its
    records are read after all. A live writer's open file is left alone."""
    import subprocess
    import sys
    import textwrap

    root = tmp_path / "log"
    crashed = textwrap.dedent(f"""
        import os
        from llmops.config import RequestLogConfig
        from llmops.requestlog.writer import RequestLogWriter
        from tests.llmops.requestlog.test_writer import request
        w = RequestLogWriter(RequestLogConfig(path={str(root)!r}, flush_interval_s=3600))
        w.submit(request(1))
        w.flush()
        os._exit(0)  # no close(): the file stays open, as after a kill -9
    """)
    subprocess.run([sys.executable, "-c", crashed], check=True, cwd=Path(__file__).resolve().parents[3])
    assert len(list(root.rglob("*.jsonl.part"))) == 1 and not finished(str(root))

    live = writer(str(root))  # the live one's own open file (`w`'s) must stay open
    live.submit(request(2))
    live.flush()
    assert len(finished(str(root))) == 1 and len(list(root.rglob("*.jsonl.part"))) == 1
    window = read_window(str(root), T0 - 60, time.time() + 60)  # the crashed writer dated its file by the real clock
    assert [r.question for r in window.requests] == ["question 1"]
    live.close()
    assert len(finished(str(root))) == 2
