"""The session store the config asks for (`serving.sessions.store`)."""

from __future__ import annotations

import os

from llmops.config import PipelineConfig
from llmops.errors import ConfigError
from serving.sessions.store import DisabledSessionStore, ErrorHook, SessionStore

__all__ = ["open_session_store"]


def open_session_store(config: PipelineConfig, on_error: ErrorHook | None = None) -> SessionStore:
    """SQLite (the file under `artifacts.root` unless `sqlite_path`), Redis (the URL from `redis_url_env`), or the
    disabled store. A store that cannot be opened as configured is a `ConfigError`: the server must not start."""
    sessions = config.serving.sessions
    if sessions.store == "off":
        return DisabledSessionStore()
    if sessions.store == "sqlite":
        from serving.sessions.sqlite_store import SQLiteSessionStore

        return SQLiteSessionStore(sessions.sqlite_file(config.artifacts.root), sessions, on_error)
    url = os.environ.get(sessions.redis_url_env, "").strip()
    if not url:
        raise ConfigError(
            "serving.sessions.redis_url_env",
            [f"serving.sessions.store is redis: set {sessions.redis_url_env} to the Redis URL "
             "(redis://[:password@]host:port/db)"],
        )
    from serving.sessions.redis_store import RedisSessionStore

    return RedisSessionStore(url, sessions, on_error)
