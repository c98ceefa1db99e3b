"""Writing the request log off the request path: `submit()` puts a record on a bounded queue and returns; a background
thread drains the queue every `flush_interval_s` and appends the batch to the open file.

Layout (what `reader.py` reads): `<root>/YYYY/MM/DD/<host>-<pid>-<start>-<seq>.jsonl`, the UTC day the file was
opened, `<start>` the writer's start (`%Y%m%dT%H%M%SZ`), `<seq>` the file's number. A file is finished (rotated) when
it reaches `rotate_bytes`, when it is `rotate_interval_s` old, when the UTC day changes, and at `close()`.

Two ways to write, chosen by the store, behind one interface:
- a local folder appends each batch to `<name>.jsonl.part` and renames it to `<name>.jsonl` when rotated: what was
  flushed survives a killed process. A crashed process leaves its `.part`, which readers skip; the next writer
  started on the same host finishes it (its process is gone), so its records are read after all.
- an object store (`s3://`, `gs://`, `memory://`: no append) keeps the open file's lines in memory and writes the
  finished object in one put when rotated, so a reader never sees half an object and a failed put is retried whole.
  A killed pod loses the lines of its open file: lower `rotate_interval_s` to bound that (graceful shutdown loses
  nothing).

Nothing here blocks or raises into the caller: a full queue drops the record (`dropped`, `on_drop`); a store that
fails counts (`write_errors`, `on_write_error`), logs the reason when it changes, stops draining the queue (which then
fills and drops) and retries the same batch after `flush_interval_s`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import re
import socket
import threading
import time
from typing import Callable

import fsspec
from fsspec.implementations.local import LocalFileSystem

from llmops.config import RequestLogConfig
from llmops.requestlog.reader import OPEN_SUFFIX, day_folder  # `<name>.jsonl.part` while written
from llmops.requestlog.record import LogRecord

__all__ = ["RequestLogWriter", "log_file_stem"]

log = logging.getLogger("llmops.requestlog")

CLOSE_ATTEMPTS = 3  # puts tried at close() before the open file's lines are given up (and counted)


def log_file_stem(host: str, pid: int, started: float, seq: int) -> str:
    """`<host>-<pid>-<start>-<seq>`: unique per process and file, sorted by start within a day folder."""
    safe_host = re.sub(r"[^A-Za-z0-9.]+", "_", host)[:63] or "host"
    return f"{safe_host}-{pid}-{dt.datetime.fromtimestamp(started, dt.timezone.utc):%Y%m%dT%H%M%SZ}-{seq:06d}"


class _OpenFile:
    """The file being written: its final path, when it was opened (Unix s), its UTC day, its bytes so far."""

    def __init__(self, path: str, opened: float):
        self.path = path
        self.opened = opened
        self.day = dt.datetime.fromtimestamp(opened, dt.timezone.utc).date()
        self.size = 0
        self.pending: list[bytes] = []  # object stores: the lines of the object to put


class RequestLogWriter:
    """`submit(record)` from any thread or the event loop; `close()` at shutdown (drains the queue and finishes the
    open file). `clock` is the wall clock (Unix seconds) that names, dates and ages files."""

    def __init__(
        self,
        config: RequestLogConfig,
        *,
        on_drop: Callable[[], None] | None = None,
        on_write_error: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if not config.path:
            raise ValueError("RequestLogWriter needs monitoring.request_log.path")
        self.config = config
        self.fs, self.root = fsspec.core.url_to_fs(config.path)
        self.appends = isinstance(self.fs, LocalFileSystem)
        self.clock = clock
        self.on_drop = on_drop
        self.on_write_error = on_write_error
        self.dropped = 0
        self.write_errors = 0
        self.written = 0  # records written to the store (flushed lines; object stores: put or pending in memory)
        self.files = 0  # finished files
        self._queue: queue.Queue[LogRecord] = queue.Queue(maxsize=config.queue_size)
        self._started = clock()
        self._host, self._pid, self._seq = socket.gethostname(), os.getpid(), 0
        self._file: _OpenFile | None = None
        self._batch: list[bytes] = []  # drained but not written yet (kept across a failing store)
        self._last_error: str | None = None
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._ticks = threading.Condition()
        self._tick_count = 0
        self._in_tick = False
        self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------- request path

    def submit(self, record: LogRecord) -> bool:
        """Queue `record` for writing; never blocks, never raises. False: dropped (queue full, or closed)."""
        try:
            if self._closing.is_set():
                raise queue.Full
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            self.drop()
            return False

    def drop(self) -> None:
        """Count a record that will not be written (the queue was full, or the caller could not build it)."""
        self.dropped += 1
        if self.on_drop is not None:
            try:
                self.on_drop()
            except Exception:  # noqa: BLE001 - a metric must not fail a request
                pass

    # ------------------------------------------------------------------------------------------- control

    def flush(self, timeout: float = 30.0) -> None:
        """Run one drain-and-write now and wait for it (tests, benchmarks); rotation checks run with it."""
        with self._ticks:
            # A tick already running may have drained before the caller's last submit: wait for the next one too.
            target = self._tick_count + (2 if self._in_tick else 1)
            self._wake.set()
            self._ticks.wait_for(lambda: self._tick_count >= target or not self._thread.is_alive(), timeout)

    def close(self, timeout: float = 60.0) -> None:
        """Drain the queue, write it and finish the open file; later submits are dropped. Idempotent."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout)

    # ------------------------------------------------------------------------------------------- writer thread

    def _run(self) -> None:
        if self.appends:
            self._finish_orphans()
        while not self._closing.is_set():
            self._wake.wait(self.config.flush_interval_s)
            self._wake.clear()
            self._tick()
        self._drain_all()
        for _ in range(CLOSE_ATTEMPTS):
            if self._tick(finish=True):
                return
            time.sleep(min(self.config.flush_interval_s, 1.0))
        lost = len(self._batch) + (len(self._file.pending) if self._file and not self.appends else 0)
        log.error("request log: %d records could not be written before shutdown (%s)", lost, self._last_error)

    def _tick(self, finish: bool = False) -> bool:
        """Rotate if due, write what is queued, finish the file when asked. False: the store failed."""
        with self._ticks:
            self._in_tick = True
        try:
            self._rotate_if_due()
            if not self._batch:
                self._batch = self._drain()
            if self._batch:
                self._write(self._batch)
                self.written += len(self._batch)
                self._batch = []
                if self._file is not None and self._file.size >= self.config.rotate_bytes:
                    self._finish_file()
            if finish and self._file is not None:
                self._finish_file()
            self._healthy()
            return True
        except Exception as e:  # noqa: BLE001 - any store failure: count, say why once, retry the batch later
            self._failed(e)
            return False
        finally:
            with self._ticks:
                self._in_tick = False
                self._tick_count += 1
                self._ticks.notify_all()

    def _drain(self) -> list[bytes]:
        lines = []
        while True:
            try:
                record = self._queue.get_nowait()
            except queue.Empty:
                return lines
            lines.append(record.model_dump_json().encode("utf-8") + b"\n")

    def _drain_all(self) -> None:
        self._batch.extend(self._drain())

    def _rotate_if_due(self) -> None:
        f = self._file
        if f is None:
            return
        now = self.clock()
        too_old = now - f.opened >= self.config.rotate_interval_s
        if too_old or f.size >= self.config.rotate_bytes or _utc_day(now) != f.day:
            self._finish_file()

    def _write(self, lines: list[bytes]) -> None:
        if self._file is None:
            self._file = self._open_file()
        f = self._file
        data = b"".join(lines)
        if self.appends:
            os.makedirs(os.path.dirname(f.path), exist_ok=True)
            with open(f.path + OPEN_SUFFIX, "ab") as out:
                out.write(data)
        else:
            f.pending.append(data)
        f.size += len(data)

    def _open_file(self) -> _OpenFile:
        now = self.clock()
        self._seq += 1
        name = log_file_stem(self._host, self._pid, self._started, self._seq) + ".jsonl"
        return _OpenFile(f"{day_folder(self.root, _utc_day(now))}/{name}", now)

    def _finish_file(self) -> None:
        """Make the open file a finished `.jsonl` (rename, or put the object); on failure it stays open."""
        f = self._file
        if f is None:
            return
        if self.appends:
            os.replace(f.path + OPEN_SUFFIX, f.path)
        elif f.pending:
            self.fs.pipe_file(f.path, b"".join(f.pending))
        self._file = None
        self.files += 1

    def _finish_orphans(self) -> None:
        """Finish the `.part` files that writers on this host left when their process died (a crash, a kill -9)."""
        prefix = log_file_stem(self._host, 0, 0, 0).split("-", 1)[0] + "-"
        for part in self.fs.glob(f"{self.root}/*/*/*/{prefix}*.jsonl{OPEN_SUFFIX}"):
            name = os.path.basename(part)
            try:
                pid = int(name[len(prefix):].split("-", 1)[0])
            except ValueError:
                continue
            if pid == self._pid or _process_alive(pid):
                continue
            try:
                os.replace(part, part[: -len(OPEN_SUFFIX)])
            except OSError:  # another writer on this host finished it first
                continue
            log.warning("request log: finished %s, left open by process %d, which is gone", part, pid)

    def _healthy(self) -> None:
        if self._last_error is not None:
            log.warning("request log: writing again after: %s", self._last_error)
            self._last_error = None

    def _failed(self, e: Exception) -> None:
        self.write_errors += 1
        if self.on_write_error is not None:
            try:
                self.on_write_error()
            except Exception:  # noqa: BLE001
                pass
        reason = f"{type(e).__name__}: {e}"
        if reason != self._last_error:
            log.error("request log: writing under %s failed, retrying every %ss (records queue up, then are "
                      "dropped and counted): %s", self.config.path, self.config.flush_interval_s, reason)
            self._last_error = reason


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _utc_day(t: float) -> dt.date:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).date()
