"""Reading a window of the request log back, from a local folder or an object store (fsspec).

Layout (what the writer produces): `<root>/YYYY/MM/DD/<file>.jsonl`, partitioned by the UTC day a record was
written, so a window reads only its days' folders. Only finished files end in `.jsonl`; a file still being written
has another suffix and is read by a later window. A line that cannot be read is skipped and reported (file:line and
why), never dropped silently.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import fsspec
from fsspec.implementations.local import LocalFileSystem

from llmops.requestlog.record import FeedbackRecord, RequestLogError, RequestRecord, parse_log_line

__all__ = ["LogWindow", "day_folder", "read_window", "unread_note"]

OPEN_SUFFIX = ".part"  # a local file being written: `<name>.jsonl.part` (the writer's suffix)
MAX_REPORTED_SKIPS = 20  # skipped lines named in the report; the rest are counted


def day_folder(root: str, day: dt.date) -> str:
    """`<root>/YYYY/MM/DD`: where the records written on `day` (UTC) live."""
    return f"{root.rstrip('/')}/{day:%Y/%m/%d}"


@dataclass
class LogWindow:
    """The records of [start, end) (Unix seconds), with feedback joined to its request by `response_id`."""

    start: float
    end: float
    requests: list[RequestRecord] = field(default_factory=list)
    feedback: dict[str, FeedbackRecord] = field(default_factory=dict)  # response_id -> latest rating
    files: int = 0
    open_files: int = 0  # local files still being written (`.jsonl.part`): not read, see `unread_note`
    root_exists: bool = True
    skipped_lines: int = 0
    skip_reasons: list[str] = field(default_factory=list)

    def rating(self, response_id: str) -> str | None:
        f = self.feedback.get(response_id)
        return f.rating if f is not None else None


def read_window(root: str, start: float, end: float) -> LogWindow:
    """The request log under `root` (a path or an fsspec URI) for [start, end). Feedback given up to `end` on a
    request of the window is joined, even when it was logged on a later day than the request."""
    if end <= start:
        raise RequestLogError(f"the log window must end after it starts (start {start}, end {end})")
    fs, base = fsspec.core.url_to_fs(root)
    window = LogWindow(start=start, end=end)
    first = dt.datetime.fromtimestamp(start, dt.timezone.utc).date()
    last = dt.datetime.fromtimestamp(end, dt.timezone.utc).date()
    day = first
    while day <= last:
        folder = day_folder(base, day)
        for path in sorted(fs.glob(f"{folder}/*.jsonl")):
            window.files += 1
            _read_file(fs, path, window)
        window.open_files += len(fs.glob(f"{folder}/*.jsonl{OPEN_SUFFIX}"))
        day += dt.timedelta(days=1)
    if not window.files and isinstance(fs, LocalFileSystem):
        window.root_exists = fs.isdir(base)
    return window


def unread_note(window: LogWindow, root: str) -> str | None:
    """Why a window read less than the user may expect (records that are there but not readable yet), with what to
    do; None when nothing is left unread."""
    if not window.root_exists:
        return (f"the request log folder {root} does not exist: nothing has been logged there yet (check "
                "monitoring.request_log.path against the one serving writes to)")
    if window.open_files:
        return (f"{window.open_files} log file(s) of this window are still being written (`.jsonl.part`, a running "
                "or crashed server's) and were not read: stop the server (it finishes its file) or wait for "
                "monitoring.request_log.rotate_interval_s; a crashed server's file can be renamed to `.jsonl`")
    return None


def _read_file(fs, path: str, window: LogWindow) -> None:
    with fs.open(path, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = parse_log_line(line, where=f"{path}:{n}")
            except RequestLogError as e:
                window.skipped_lines += 1
                if len(window.skip_reasons) < MAX_REPORTED_SKIPS:
                    window.skip_reasons.append(str(e))
                continue
            if not window.start <= record.time < window.end:
                continue
            if isinstance(record, RequestRecord):
                window.requests.append(record)
            else:
                previous = window.feedback.get(record.response_id)
                if previous is None or previous.time <= record.time:  # a second rating replaces the first
                    window.feedback[record.response_id] = record
