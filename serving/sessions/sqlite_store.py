"""The session store in one SQLite file: the default, embedded, for one host (its uvicorn workers share the file).

WAL lets readers run beside the one writer, and the busy timeout makes a worker wait for another's write instead of
failing. Each write is one `BEGIN IMMEDIATE` transaction (read, check the owner, change), so two appends to one
session never lose a turn. The blocking calls run in a worker thread, off the event loop. Expired sessions and
answers are purged lazily, when sessions are created and answers recorded (an index on the expiry keeps it cheap);
reads never return them. The schema's version is the file's `PRAGMA user_version`.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from llmops.config import SessionsConfig
from llmops.errors import ConfigError, StoreUnavailableError
from serving.sessions.store import (
    AnswerNotFound,
    AnswerRecord,
    ErrorHook,
    Feedback,
    Session,
    SessionNotFound,
    StoredTurn,
    apply_limits,
    new_session_id,
)

__all__ = ["SCHEMA_VERSION", "SQLiteSessionStore"]

T = TypeVar("T")

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 10.0  # how long a write waits for another process's write before the store counts as failing

_SCHEMA = """
CREATE TABLE sessions (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL,
    expires_at REAL NOT NULL, dropped_turns INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_expiry ON sessions (expires_at);
CREATE TABLE turns (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    role TEXT NOT NULL, content TEXT NOT NULL, answer_id TEXT, created REAL NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE answers (
    answer_id TEXT PRIMARY KEY, owner TEXT NOT NULL, session_id TEXT, release TEXT NOT NULL,
    created REAL NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX answers_expiry ON answers (expires_at);
CREATE TABLE feedback (
    answer_id TEXT PRIMARY KEY, owner TEXT NOT NULL, rating TEXT NOT NULL, comment TEXT, created REAL NOT NULL
);
"""


class SQLiteSessionStore:
    def __init__(self, path: str | Path, config: SessionsConfig, on_error: ErrorHook | None = None):
        self.path = Path(path)
        self.config = config
        self.on_error = on_error
        self._lock = threading.Lock()  # one connection; SQLite itself serializes the processes
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("BEGIN IMMEDIATE")
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    for statement in filter(str.strip, _SCHEMA.split(";")):  # not executescript: it commits
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except (OSError, sqlite3.Error) as e:
            raise ConfigError("serving.sessions.sqlite_path", [f"cannot open the session store {self.path}: {e}"]) from e
        if version not in (0, SCHEMA_VERSION):
            db.close()
            raise ConfigError(
                "serving.sessions.sqlite_path",
                [f"the session store {self.path} has schema version {version}; this server reads {SCHEMA_VERSION} "
                 "(a newer server wrote it: run that one, or point sqlite_path at another file)"],
            )
        return db

    # ------------------------------------------------------------------------------------------------ interface

    async def create(self, owner: str) -> Session:
        def create(db: sqlite3.Connection) -> Session:
            now = time.time()
            self._purge(db, now)
            session = Session(new_session_id(), owner, now, now, now + self.config.ttl_s)
            db.execute(
                "INSERT INTO sessions (id, owner, created, updated, expires_at) VALUES (?, ?, ?, ?, ?)",
                (session.id, owner, now, now, session.expires_at),
            )
            return session

        return await self._write("create", create)

    async def load(self, session_id: str, owner: str) -> Session:
        def load(db: sqlite3.Connection) -> Session:
            return self._session(db, session_id, owner, time.time())

        return await self._call("load", load, write=False)

    async def append(self, session_id: str, owner: str, turns: Sequence[StoredTurn]) -> Session:
        def append(db: sqlite3.Connection) -> Session:
            now = time.time()
            current = self._session(db, session_id, owner, now)
            last = db.execute("SELECT COALESCE(MAX(seq), 0) FROM turns WHERE session_id = ?", (session_id,))
            seq = last.fetchone()[0]
            db.executemany(
                "INSERT INTO turns (session_id, seq, role, content, answer_id, created) VALUES (?, ?, ?, ?, ?, ?)",
                [(session_id, seq + i, t.role, t.content, t.answer_id, t.created or now)
                 for i, t in enumerate(turns, 1)],
            )
            rows = db.execute("SELECT seq, role, content, answer_id, created FROM turns WHERE session_id = ? "
                              "ORDER BY seq", (session_id,)).fetchall()
            kept, dropped = apply_limits((StoredTurn(*row[1:]) for row in rows), self.config)
            if dropped:
                db.execute("DELETE FROM turns WHERE session_id = ? AND seq <= ?", (session_id, rows[dropped - 1][0]))
            db.execute(
                "UPDATE sessions SET updated = ?, expires_at = ?, dropped_turns = dropped_turns + ? WHERE id = ?",
                (now, now + self.config.ttl_s, dropped, session_id),
            )
            return Session(session_id, owner, current.created, now, now + self.config.ttl_s, tuple(kept),
                           current.dropped_turns + dropped)

        return await self._write("append", append)

    async def delete(self, session_id: str, owner: str) -> None:
        def delete(db: sqlite3.Connection) -> None:
            gone = db.execute("DELETE FROM sessions WHERE id = ? AND owner = ? AND expires_at > ?",
                              (session_id, owner, time.time()))
            if gone.rowcount == 0:
                raise SessionNotFound()

        await self._write("delete", delete)

    async def record_answer(self, record: AnswerRecord) -> None:
        def record_answer(db: sqlite3.Connection) -> None:
            now = time.time()
            self._purge(db, now)
            db.execute(
                "INSERT OR REPLACE INTO answers (answer_id, owner, session_id, release, created, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (record.answer_id, record.owner, record.session_id, record.release, record.created,
                 now + self.config.ttl_s),
            )

        await self._write("record_answer", record_answer)

    async def add_feedback(self, owner: str, feedback: Feedback) -> None:
        def add_feedback(db: sqlite3.Connection) -> None:
            found = db.execute("SELECT 1 FROM answers WHERE answer_id = ? AND owner = ? AND expires_at > ?",
                               (feedback.answer_id, owner, time.time())).fetchone()
            if found is None:
                raise AnswerNotFound()
            db.execute(
                "INSERT INTO feedback (answer_id, owner, rating, comment, created) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (answer_id) DO UPDATE SET rating = excluded.rating, comment = excluded.comment, "
                "created = excluded.created",
                (feedback.answer_id, owner, feedback.rating, feedback.comment, feedback.created),
            )

        await self._write("add_feedback", add_feedback)

    async def feedback(self, answer_id: str) -> Feedback | None:
        """The rating stored for an answer (operators and tests; not routed)."""
        def read(db: sqlite3.Connection) -> Feedback | None:
            row = db.execute("SELECT answer_id, rating, comment, created FROM feedback WHERE answer_id = ?",
                             (answer_id,)).fetchone()
            return Feedback(*row) if row else None

        return await self._call("feedback", read, write=False)

    async def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------------------------------------ helpers

    def _session(self, db: sqlite3.Connection, session_id: str, owner: str, now: float) -> Session:
        row = db.execute(
            "SELECT created, updated, expires_at, dropped_turns FROM sessions "
            "WHERE id = ? AND owner = ? AND expires_at > ?", (session_id, owner, now),
        ).fetchone()
        if row is None:
            raise SessionNotFound()
        turns = db.execute("SELECT role, content, answer_id, created FROM turns WHERE session_id = ? ORDER BY seq",
                           (session_id,)).fetchall()
        return Session(session_id, owner, row[0], row[1], row[2], tuple(StoredTurn(*t) for t in turns), row[3])

    @staticmethod
    def _purge(db: sqlite3.Connection, now: float) -> None:
        db.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))  # their turns go with them (cascade)
        db.execute("DELETE FROM answers WHERE expires_at <= ?", (now,))

    async def _write(self, operation: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._call(operation, fn, write=True)

    async def _call(self, operation: str, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        return await asyncio.to_thread(self._run, operation, fn, write)

    def _run(self, operation: str, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        with self._lock:
            try:
                # IMMEDIATE takes the write lock first: read-check-change is atomic across processes too.
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = fn(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return result
            except sqlite3.Error as e:
                if self.on_error is not None:
                    self.on_error(operation)
                raise StoreUnavailableError(f"session store {self.path}: {operation} failed: {e}") from e
