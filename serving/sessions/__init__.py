"""Server-side conversations, answer records and feedback (`serving.sessions`), behind one interface.

- `store`: the `SessionStore` protocol, its types (`Session`, `StoredTurn`, `AnswerRecord`, `Feedback`), the limits
  and the session id format; `DisabledSessionStore` (`store: off`).
- `sqlite_store`: `SQLiteSessionStore` (one file, WAL; the default). `redis_store`: `RedisSessionStore` (replicas).
- `factory`: `open_session_store(config)`.
- `routes`: `GET`/`DELETE /v1/sessions/{id}`, `POST /v1/feedback`. `memory`: `ChatMemory`, what chat completions
  do with the store. (API keys and the owner id a key stands for: `serving/auth.py`.)

The re-exports below are lazy (`llmops.exports`): importing this package loads no Redis client.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "store": ("AnswerRecord", "Feedback", "Session", "SessionNotFound", "SessionStore", "StoredTurn"),
        "factory": ("open_session_store",),
        "memory": ("ChatMemory",),
    },
)
