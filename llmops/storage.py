"""Content digests and atomic writes, for local paths and object stores (fsspec) alike.

Readers never see a half-written file or artifact: local writes go to a temporary name in the same folder and are
renamed into place; directories are staged beside their final name and renamed. On object stores, where rename is
not atomic, every file is uploaded first and the manifest last, and readers treat a directory without a verified
manifest as absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from fsspec.core import url_to_fs

__all__ = [
    "canonical_uri",
    "local_path",
    "uri_within",
    "atomic_write_bytes",
    "atomic_write_json",
    "canonical_json",
    "digest_of",
    "is_remote",
    "join_uri",
    "publish_directory",
    "sha256_file",
    "tree_digest",
    "uri_exists",
    "put_file",
    "fetch_file",
    "staging_dir",
    "file_checksums",
]

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def digest_of(obj: Any, length: int = 16) -> str:
    """Digest of a JSON-able value, independent of key order. Used for versions derived from inputs."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:length]


def tree_digest(root: str | os.PathLike, files: dict[str, str] | None = None) -> str:
    """sha256 over (relative path, file sha256) of every file under `root` (hidden files skipped)."""
    files = files if files is not None else file_checksums(root)
    return hashlib.sha256(canonical_json(sorted(files.items())).encode()).hexdigest()


def file_checksums(
    root: str | os.PathLike, exclude: tuple[str, ...] = (), hash_file: Callable[[Path], str] = sha256_file
) -> dict[str, str]:
    """sha256 of every non-hidden file under `root`, by relative path (`hash_file` may answer from a cache)."""
    root = Path(root)
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts) and rel not in exclude:
            out[rel] = hash_file(p)
    return out


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


# ---------------------------------------------------------------------------------------------------------------
# Locations: one parser, so that what is checked is what is read
# ---------------------------------------------------------------------------------------------------------------


def local_path(uri: str) -> Path:
    """The local path a plain path or `file:` URI names (not resolved). ValueError for a `file:` URI with a host:
    `file://../x` names host '..' and path /x, which a reader that strips `file://` would read as ../x."""
    if urlsplit(uri).scheme != "file":
        return Path(uri)
    parts = urlsplit(uri)
    if parts.netloc:
        raise ValueError(
            f"{uri!r} names the host {parts.netloc!r}; artifacts are local files here: write file:///absolute/path "
            "(three slashes) or the path itself"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{uri!r} has a ?query or #fragment, which a file location cannot have")
    return Path(unquote(parts.path))  # RFC 8089: the path is percent-encoded


def canonical_uri(uri: str) -> str:
    """The one spelling of a location, or ValueError saying what is wrong with it.

    Local (a path or `file:` URI): absolute, with '..' and symlinks resolved. Remote (`s3://bucket/key`, ...): the
    scheme, the bucket and a key without '.' or '..' segments, percent-encoded ones included: object stores do not
    resolve them, but proxies and local mirrors may, so such a key is refused rather than guessed at.
    """
    if "\0" in uri or "%00" in uri:
        raise ValueError(f"{uri!r} contains a NUL byte")
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return str(local_path(uri).resolve())
    if not parts.netloc:
        raise ValueError(f"{uri!r} names no bucket: write {parts.scheme}://BUCKET/PATH")
    if parts.query or parts.fragment:
        raise ValueError(f"{uri!r} has a ?query or #fragment, which an artifact location cannot have")
    if {".", ".."} & set(unquote(parts.path).split("/")):
        raise ValueError(f"{uri!r} has '.' or '..' segments: name the artifact by its own URI")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def uri_within(uri: str, root: str) -> bool:
    """Whether canonical `uri` is `root` or lies under it (both from `canonical_uri`)."""
    if is_remote(uri) != is_remote(root):
        return False
    if is_remote(uri):
        u, r = urlsplit(uri), urlsplit(root)
        if (u.scheme, u.netloc) != (r.scheme, r.netloc):
            return False
        uri, root = u.path or "/", r.path or "/"
    path, base = PurePosixPath(uri), PurePosixPath(root)
    return path == base or base in path.parents


def join_uri(base: str, *parts: str) -> str:
    if is_remote(base):
        return "/".join([base.rstrip("/"), *parts])
    return str(Path(base, *parts))


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode())


def staging_dir(root: str) -> Path:
    """A fresh local folder to build an artifact in: beside its destination when local (so rename is atomic)."""
    if is_remote(root):
        return Path(tempfile.mkdtemp(prefix="llmops-stage-"))
    base = Path(root, ".staging")
    base.mkdir(parents=True, exist_ok=True)
    path = base / uuid.uuid4().hex
    path.mkdir()
    return path


def publish_directory(staged: Path, dest: str, commit_file: str = "manifest.json") -> str:
    """Move a fully written artifact folder to `dest`. If `dest` already exists (same content digest), keep it.

    Returns the destination. The staged folder is consumed either way.
    """
    if not is_remote(dest):
        dest_path = Path(dest)
        dest_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staged, dest_path)
        except OSError:
            if not (dest_path / commit_file).exists():
                raise
            shutil.rmtree(staged)  # a concurrent writer published the same version first
        return str(dest_path)
    fs, path = url_to_fs(dest)
    for p in sorted(staged.rglob("*")):
        rel = p.relative_to(staged).as_posix()
        if p.is_file() and rel != commit_file:
            fs.put_file(str(p), f"{path}/{rel}")
    fs.put_file(str(staged / commit_file), f"{path}/{commit_file}")  # last: marks the artifact complete
    shutil.rmtree(staged)
    return dest


def uri_exists(uri: str) -> bool:
    fs, path = url_to_fs(uri)
    return fs.exists(path)


def put_file(local: str | os.PathLike, uri: str) -> str:
    """Copy a finished local file to `uri` atomically (rename locally; one object put on stores)."""
    if is_remote(uri):
        fs, path = url_to_fs(uri)
        fs.put_file(str(local), path)
    else:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(uri).with_name(f".{Path(uri).name}.{uuid.uuid4().hex}.tmp")
        shutil.copyfile(local, tmp)
        os.replace(tmp, uri)
    return uri


def fetch_file(uri: str, directory: str | os.PathLike) -> Path:
    """A local path for `uri` (downloaded into `directory` when remote)."""
    if not is_remote(uri):
        return local_path(uri)
    fs, path = url_to_fs(uri)
    local = Path(directory, Path(path).name)
    fs.get_file(path, str(local))
    return local
