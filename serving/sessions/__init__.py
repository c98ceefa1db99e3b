"""Server-side conversations, answer records and feedback (`serving.sessions`), behind one interface.

- `store`: the `SessionStore` protocol, its types (`Session`, `StoredTurn`, `AnswerRecord`, `Feedback`), the limits
  and the session id format; `DisabledSessionStore` (`store: off`).
- `sqlite_store`: `SQLiteSessionStore` (one file, WAL; the default). `redis_store`: `RedisSessionStore` (replicas).
- `factory`: `open_session_store(config)`.
- `auth`: API keys (`serving.api_keys_env`) and the owner id a key stands for.

The re-exports below are lazy (`llmops.exports`): importing this package loads no Redis client.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "store": ("AnswerRecord", "Feedback", "Session", "SessionNotFound", "SessionStore", "StoredTurn"),
        "factory": ("open_session_store",),
        "auth": ("ApiKeys",),
    },
)
