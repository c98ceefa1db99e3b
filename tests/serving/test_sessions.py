"""The session store: one behavioural suite run against both stores, a real SQLite file and a real `redis-server`
(skipped with the reason when Redis is absent); then the config's checks and the store's failures."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid

import pytest

from llmops.config import PipelineConfig, SessionsConfig, parse_config
from llmops.errors import ConfigError, InvalidRequestError, StoreUnavailableError
from serving.sessions.factory import open_session_store
from serving.sessions.sqlite_store import SQLiteSessionStore
from serving.sessions.store import (
    AnswerNotFound,
    AnswerRecord,
    Feedback,
    SessionNotFound,
    StoredTurn,
    check_session_id,
    new_session_id,
)

pytestmark = pytest.mark.timeout(120)

ALICE, BOB = "key_alice", "key_bob"


class Stores:
    """Opens stores of one kind, every one on the same file / Redis (and key prefix), as the workers and replicas
    of one deployment are; `run` runs a test's scenario and closes them in its event loop."""

    def __init__(self, kind: str, root, prefix: str):
        self.kind, self.root, self.prefix = kind, root, prefix
        self.opened: list = []

    def open(self, **fields):
        sessions = SessionsConfig(store=self.kind, sqlite_path=str(self.root / "sessions.db"),
                                  redis_url_env="LLMOPS_TEST_REDIS_URL", key_prefix=self.prefix, **fields)
        store = open_session_store(config_with(sessions, self.root))
        self.opened.append(store)
        return store

    def run(self, scenario) -> None:
        async def closing():
            try:
                await scenario
            finally:
                for store in self.opened:
                    await store.close()

        asyncio.run(closing())


@pytest.fixture(params=["sqlite", "redis"])
def stores(request, tmp_path, monkeypatch) -> Stores:
    if request.param == "redis":
        monkeypatch.setenv("LLMOPS_TEST_REDIS_URL", request.getfixturevalue("redis_url"))
    return Stores(request.param, tmp_path, f"test-{uuid.uuid4().hex[:8]}:")


def config_with(sessions: SessionsConfig, root, artifacts_root: str | None = None) -> PipelineConfig:
    return parse_config({
        "corpus": {"sources": [{"kind": "directory", "path": str(root)}]},
        "embedding": {"model": "unused"},
        "artifacts": {"root": artifacts_root or str(root / "artifacts")},
        "serving": {"sessions": sessions.model_dump()},
    })


def turns(*texts: str, answer_id: str | None = None) -> list[StoredTurn]:
    """A user turn and an assistant turn per pair of texts."""
    return [StoredTurn("user" if i % 2 == 0 else "assistant", t, answer_id if i % 2 else None)
            for i, t in enumerate(texts)]


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------------------------------------------- behaviour


def test_a_session_is_created_continued_and_read_back_by_its_owner(stores):
    async def scenario():
        store = stores.open()
        session = await store.create(ALICE)
        check_session_id(session.id)
        assert session.turns == () and session.owner == ALICE and session.expires_at > session.created
        await store.append(session.id, ALICE, turns("How do I rotate the password?", "With the vault.",
                                                     answer_id="chatcmpl-1"))
        after = await store.append(session.id, ALICE, turns("And how long does it take?", "A minute.",
                                                             answer_id="chatcmpl-2"))
        loaded = await store.load(session.id, ALICE)
        assert [(t.role, t.content, t.answer_id) for t in loaded.turns] == [
            ("user", "How do I rotate the password?", None), ("assistant", "With the vault.", "chatcmpl-1"),
            ("user", "And how long does it take?", None), ("assistant", "A minute.", "chatcmpl-2"),
        ]
        assert loaded.turns == after.turns and loaded.dropped_turns == 0
        assert all(t.created > 0 for t in loaded.turns)

    stores.run(scenario())


def test_another_owner_a_missing_and_a_deleted_session_are_the_same_not_found(stores):
    async def scenario():
        store = stores.open()
        session = await store.create(ALICE)
        await store.append(session.id, ALICE, turns("q", "a"))
        for call in (lambda: store.load(session.id, BOB), lambda: store.append(session.id, BOB, turns("x")),
                     lambda: store.delete(session.id, BOB), lambda: store.load(new_session_id(), ALICE)):
            with pytest.raises(SessionNotFound) as caught:
                await call()
            assert caught.value.code == "session_not_found" and caught.value.param == "session_id"
        assert [t.content for t in (await store.load(session.id, ALICE)).turns] == ["q", "a"]  # Bob changed nothing
        await store.delete(session.id, ALICE)
        with pytest.raises(SessionNotFound):
            await store.load(session.id, ALICE)
        with pytest.raises(SessionNotFound):
            await store.delete(session.id, ALICE)

    stores.run(scenario())


def test_the_oldest_turns_beyond_max_turns_are_dropped_and_counted(stores):
    async def scenario():
        store = stores.open(max_turns=4)
        session = await store.create(ALICE)
        for n in range(3):
            await store.append(session.id, ALICE, turns(f"q{n}", f"a{n}"))
        loaded = await store.load(session.id, ALICE)
        assert [t.content for t in loaded.turns] == ["q1", "a1", "q2", "a2"]
        assert loaded.dropped_turns == 2

    stores.run(scenario())


def test_the_oldest_turns_beyond_max_chars_are_dropped(stores):
    async def scenario():
        store = stores.open(max_chars=10)
        session = await store.create(ALICE)
        await store.append(session.id, ALICE, turns("aaaa", "bbbb"))
        kept = await store.append(session.id, ALICE, turns("cccc"))
        assert [t.content for t in kept.turns] == ["bbbb", "cccc"] and kept.dropped_turns == 1
        # A turn longer than the whole budget is not kept either: the limit is what a session may hold.
        kept = await store.append(session.id, ALICE, turns("x" * 11))
        assert kept.turns == () and kept.dropped_turns == 4
        assert (await store.load(session.id, ALICE)).turns == ()

    stores.run(scenario())


def test_sessions_expire_after_ttl_and_every_write_renews_it(stores):
    async def scenario():
        store = stores.open(ttl_s=0.5)
        session = await store.create(ALICE)
        renewed = await store.append(session.id, ALICE, turns("q", "a"))
        assert renewed.expires_at > session.expires_at and renewed.expires_at == pytest.approx(renewed.updated + 0.5)
        await asyncio.sleep(0.8)
        with pytest.raises(SessionNotFound):
            await store.load(session.id, ALICE)
        with pytest.raises(SessionNotFound):
            await store.append(session.id, ALICE, turns("late"))

    stores.run(scenario())


def test_two_concurrent_appends_to_one_session_both_land(stores):
    async def scenario():
        one, other = stores.open(), stores.open()  # two workers (or replicas) on the same store
        session = await one.create(ALICE)
        await asyncio.gather(*(
            store.append(session.id, ALICE, turns(f"q{n}", f"a{n}")) for n in range(6) for store in (one, other)
        ))
        loaded = await other.load(session.id, ALICE)
        contents = [t.content for t in loaded.turns]
        assert sorted(contents) == sorted(f"{x}{n}" for n in range(6) for x in "qa" for _ in (0, 1))
        # Each append's two turns stay together, in order.
        assert all(contents[i][1:] == contents[i + 1][1:] and contents[i][0] == "q" for i in range(0, 24, 2))

    stores.run(scenario())


def test_feedback_rates_an_answer_of_the_callers_and_a_second_rating_replaces_the_first(stores):
    async def scenario():
        store = stores.open()
        await store.record_answer(AnswerRecord("chatcmpl-a", ALICE, None, "rel-1", time.time()))
        await store.add_feedback(ALICE, Feedback("chatcmpl-a", "down", "wrong date", time.time()))
        await store.add_feedback(ALICE, Feedback("chatcmpl-a", "up", None, time.time()))
        stored = await store.feedback("chatcmpl-a")
        assert (stored.rating, stored.comment) == ("up", None)
        for owner, answer in ((BOB, "chatcmpl-a"), (ALICE, "chatcmpl-unknown")):
            with pytest.raises(AnswerNotFound) as caught:
                await store.add_feedback(owner, Feedback(answer, "down", "spam", time.time()))
            assert caught.value.code == "response_not_found" and caught.value.param == "response_id"
        assert (await store.feedback("chatcmpl-a")).rating == "up"  # Bob's rating did not land
        assert await store.feedback("chatcmpl-unknown") is None

    stores.run(scenario())


def test_an_expired_answer_can_no_longer_be_rated(stores):
    async def scenario():
        store = stores.open(ttl_s=0.3)
        await store.record_answer(AnswerRecord("chatcmpl-old", ALICE, None, "rel-1", time.time()))
        await asyncio.sleep(0.6)
        with pytest.raises(AnswerNotFound):
            await store.add_feedback(ALICE, Feedback("chatcmpl-old", "up", None, time.time()))

    stores.run(scenario())


# ---------------------------------------------------------------------------------------------------- the edges


@pytest.mark.parametrize("bad", ["", "sess_", "sess_" + "0" * 31, "sess_" + "A" * 32, "sess_" + "0" * 32 + "\n",
                                 "../etc/passwd", "sess_" + "g" * 32, " sess_" + "0" * 32])
def test_a_session_id_of_another_format_is_an_invalid_request_naming_the_field(bad):
    with pytest.raises(InvalidRequestError) as caught:
        check_session_id(bad)
    assert caught.value.param == "session_id"


def test_session_ids_are_random_and_well_formed():
    ids = {new_session_id() for _ in range(100)}
    assert len(ids) == 100 and all(check_session_id(i) for i in ids)


def test_the_sqlite_file_is_wal_and_schema_versioned_and_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "s.db"
    store = SQLiteSessionStore(path, SessionsConfig())
    run(store.close())
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        db.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError, match="schema version 99"):
        SQLiteSessionStore(path, SessionsConfig())


def test_expired_sqlite_rows_are_purged_when_sessions_are_created(tmp_path):
    async def scenario():
        store = SQLiteSessionStore(tmp_path / "s.db", SessionsConfig(ttl_s=0.2))
        old = await store.create(ALICE)
        await store.append(old.id, ALICE, turns("q", "a"))
        await store.record_answer(AnswerRecord("chatcmpl-x", ALICE, old.id, "rel", time.time()))
        await asyncio.sleep(0.4)
        await store.create(BOB)
        await store.close()

    run(scenario())
    with sqlite3.connect(tmp_path / "s.db") as db:
        assert db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 1  # Bob's new one
        assert db.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 0
        assert db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 0


def test_config_refuses_a_remote_sqlite_path_and_needs_one_under_a_remote_root(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="sqlite_path"):
        parse_config({"corpus": {"sources": []}, "embedding": {"model": "m"},
                      "serving": {"sessions": {"sqlite_path": "s3://bucket/sessions.db"}}})
    remote_root = config_with(SessionsConfig(), tmp_path, artifacts_root="s3://bucket/artifacts")
    with pytest.raises(ConfigError, match="serving.sessions.sqlite_path"):
        open_session_store(remote_root)
    default = config_with(SessionsConfig(), tmp_path)
    assert default.serving.sessions.sqlite_file(default.artifacts.root) == tmp_path / "artifacts/serving/sessions.db"
    monkeypatch.delenv("LLMOPS_REDIS_URL", raising=False)
    with pytest.raises(ConfigError, match="LLMOPS_REDIS_URL"):
        open_session_store(config_with(SessionsConfig(store="redis"), tmp_path))


def test_a_relative_sqlite_path_is_resolved_with_the_config(tmp_path):
    cfg = config_with(SessionsConfig(sqlite_path="var/sessions.db"), tmp_path).resolved(tmp_path)
    assert cfg.serving.sessions.sqlite_path == str(tmp_path / "var/sessions.db")


def test_an_unreachable_redis_is_unavailable_and_counted(tmp_path, monkeypatch):
    pytest.importorskip("redis", reason="the redis Python package is not installed")
    from llmops.llm.vllm_server import free_port

    monkeypatch.setenv("LLMOPS_TEST_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    failed: list[str] = []
    sessions = SessionsConfig(store="redis", redis_url_env="LLMOPS_TEST_REDIS_URL", redis_timeout_s=0.5)
    store = open_session_store(config_with(sessions, tmp_path), on_error=failed.append)

    async def scenario():
        with pytest.raises(StoreUnavailableError):
            await store.create(ALICE)
        with pytest.raises(StoreUnavailableError):
            await store.record_answer(AnswerRecord("chatcmpl-a", ALICE, None, "rel", time.time()))
        await store.close()

    run(scenario())
    assert failed == ["create", "record_answer"]


def test_a_disabled_store_records_nothing_and_is_unavailable_for_the_rest(tmp_path):
    store = open_session_store(config_with(SessionsConfig(store="off"), tmp_path))

    async def scenario():
        await store.record_answer(AnswerRecord("chatcmpl-a", ALICE, None, "rel", time.time()))
        for call in (lambda: store.create(ALICE), lambda: store.load(new_session_id(), ALICE),
                     lambda: store.add_feedback(ALICE, Feedback("chatcmpl-a", "up", None, 0.0))):
            with pytest.raises(StoreUnavailableError):
                await call()

    run(scenario())
    assert not (tmp_path / "artifacts").exists()  # no file made
