"""Directory sources: every matching file under a local folder or an fsspec URI (s3://, gs://, ...)."""

from __future__ import annotations

import posixpath
import re

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.utils import glob_translate

from llmops.config import DirectorySource
from llmops.corpus.ingest.collector import Collector
from llmops.corpus.ingest.formats import EXTRACTORS, FORMAT_BY_EXTENSION, Extracted
from llmops.corpus.ingest.report import Skip

__all__ = ["read_directory"]


def read_directory(src: DirectorySource, out: Collector) -> None:
    fs, root = url_to_fs(src.path)
    patterns = [re.compile(glob_translate(p)) for p in src.include]
    base = src.path.rstrip("/")
    for rel, size in _list_files(fs, root):
        if not any(p.match(rel) for p in patterns):
            continue
        out.files_seen += 1
        source = f"{base}/{rel}"
        try:
            doc = _read_file(fs, posixpath.join(root, rel), size, src.max_file_bytes)
        except Skip as e:
            out.skip(source, e.reason)
            continue
        out.add_document(doc.text, source, doc.title, doc.metadata)


def _list_files(fs: AbstractFileSystem, root: str) -> list[tuple[str, int | None]]:
    """(path relative to root, size) of every file, sorted; hidden files and folders are not entered."""
    found = []
    for dirpath, dirs, files in fs.walk(root, detail=True):
        for name in [d for d in dirs if d.startswith(".")]:
            del dirs[name]  # walk() prunes folders removed here
        for name, info in files.items():
            if not name.startswith("."):
                rel = posixpath.relpath(posixpath.join(dirpath, name), root)
                found.append((rel, info.get("size")))
    return sorted(found)


def _read_file(fs: AbstractFileSystem, path: str, size: int | None, max_bytes: int) -> Extracted:
    name = posixpath.basename(path)
    stem, ext = posixpath.splitext(name)
    fmt = FORMAT_BY_EXTENSION.get(ext.lower())
    if fmt is None:
        raise Skip(f"unsupported extension {ext.lower() or '(none)'}")
    if size is not None and size > max_bytes:
        raise Skip(f"file is {size} bytes, over max_file_bytes={max_bytes}")
    try:
        data = fs.cat_file(path)
    except OSError as e:  # broken links, permissions, objects deleted mid-run
        raise Skip(f"cannot read file ({e})") from None
    if len(data) > max_bytes:  # some stores list no size
        raise Skip(f"file is {len(data)} bytes, over max_file_bytes={max_bytes}")
    return EXTRACTORS[fmt](data, stem)
