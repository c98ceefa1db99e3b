"""A digest of the pipeline's own source code, part of every cache key and artifact version.

Flyte's local cache returns old results when a task changes without a `cache_version` bump; deriving the version
from the source makes that impossible to forget. Comments count as changes: a rebuild is cheap next to a stale
result, and embeddings are cached separately by (model, text) so they survive code changes.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["code_version"]

_PACKAGES = ("llmops", "tasks", "eval")


@lru_cache(maxsize=1)
def code_version() -> str:
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for package in _PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]
