"""Content digests of what a config field names: a file, a folder, a model (local, `pkg:`, object store or Hub id).

Cache keys and artifact versions are built from these, so a changed training file or model weight is a new key
even when its path is the same. Hashing a multi-GB model on every run would be slow, so local file digests are
remembered by (path, size, mtime, inode) in a small SQLite file (`$LLMOPS_CACHE_DIR`, default
`~/.cache/llmops`), the way git and DVC treat unchanged files; a file whose stat changes is hashed again.
"""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
from contextlib import closing, nullcontext
from pathlib import Path

from llmops.errors import ConfigError
from llmops.storage import canonical_json, file_checksums, is_remote, sha256_file, tree_digest

__all__ = ["file_digest", "ref_digest", "tree_digest_cached"]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _cache_path() -> Path:
    root = Path(os.environ.get("LLMOPS_CACHE_DIR") or Path.home() / ".cache" / "llmops")
    root.mkdir(parents=True, exist_ok=True)
    return root / "file-digests.sqlite"


def _connect() -> sqlite3.Connection | None:
    try:
        db = sqlite3.connect(_cache_path(), timeout=30)
        db.execute(
            "CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, "
            "inode INTEGER, sha256 TEXT)"
        )
        return db
    except (OSError, sqlite3.Error):  # a read-only home: hash every time rather than fail
        return None


def file_digest(path: str | os.PathLike, db: sqlite3.Connection | None = None) -> str:
    """sha256 of a local file, from the stat-keyed cache when the file is unchanged."""
    p = Path(path).resolve()
    st = p.stat()
    stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    own = db is None
    db = _connect() if own else db
    try:
        if db is not None:
            row = db.execute("SELECT size, mtime_ns, inode, sha256 FROM digests WHERE path = ?", (str(p),)).fetchone()
            if row and tuple(row[:3]) == stamp:
                return row[3]
        digest = sha256_file(p)
        if db is not None:
            db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)", (str(p), *stamp, digest))
            db.commit()
        return digest
    finally:
        if own and db is not None:
            db.close()


def tree_digest_cached(root: str | os.PathLike) -> str:
    """storage.tree_digest of `root`, with each file's sha256 from the stat-keyed cache when it is unchanged."""
    conn = _connect()
    with closing(conn) if conn is not None else nullcontext():
        return tree_digest(root, file_checksums(root, hash_file=lambda p: file_digest(p, conn)))


def _remote_digest(uri: str) -> str:
    """A remote object or prefix, by the store's own fingerprint of each object (ETag/generation/size)."""
    import fsspec

    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        raise FileNotFoundError(uri)
    paths = sorted(fs.find(path)) if fs.isdir(path) else [path]
    return hashlib.sha256(canonical_json([[p, fs.ukey(p)] for p in paths]).encode()).hexdigest()


def _hub_commit(repo_id: str, revision: str | None, field: str) -> str:
    """The commit a Hub id resolves to now: the pinned sha, the Hub's answer, or (offline) the local snapshot's."""
    if revision and _COMMIT.match(revision):
        return revision
    try:
        if os.environ.get("HF_HUB_OFFLINE") not in ("1", "true", "True"):
            from huggingface_hub import HfApi

            return HfApi().model_info(repo_id, revision=revision).sha
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True)).name
    except Exception as e:  # offline without a snapshot, unknown id, gated, ...
        raise ConfigError(
            "<config>",
            [
                f"{field}: {repo_id!r} is neither a local path nor a Hub model whose commit can be resolved "
                f"({type(e).__name__}). Pin the commit with the matching `revision` field, or point it at a local "
                "folder, so that cache keys and versions follow the model's content"
            ],
        ) from None


def ref_digest(ref: str | None, *, field: str, revision: str | None = None) -> str | None:
    """Digest of what a config field names. `field` (e.g. `finetune.train_path`) is named in errors.

    - None -> None
    - `pkg:MODULE` -> the model folder shipped in that package
    - a local file or folder -> its content
    - `s3://`, `gs://`, ... -> the store's per-object fingerprints
    - anything else is a Hugging Face Hub id -> `hub:<id>@<commit>`
    """
    if ref is None:
        return None
    if ref.startswith("pkg:"):
        from llmops.provenance.model_paths import resolve_model_path

        return "pkg:" + tree_digest_cached(resolve_model_path(ref))
    if is_remote(ref):
        try:
            return "remote:" + _remote_digest(ref)
        except FileNotFoundError:
            raise ConfigError("<config>", [f"{field}: {ref} does not exist"]) from None
    local = Path(ref.removeprefix("file://")).expanduser()
    if local.is_file():
        return "file:" + file_digest(local)
    if local.is_dir():
        return "dir:" + tree_digest_cached(local)
    if ref.startswith((".", "/", "~", "file://")):
        raise ConfigError("<config>", [f"{field}: no such file or folder: {ref}"])
    return f"hub:{ref}@{_hub_commit(ref, revision, field)}"
