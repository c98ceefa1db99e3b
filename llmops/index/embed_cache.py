"""Embedding cache keyed by (model digest, passage prefix, chunk text).

Re-indexing a corpus where 1% of documents changed should embed ~1% of chunks. Vectors are stored in immutable
segment files (one per embedding shard that computed anything new), so concurrent shard tasks on a cluster never
write the same file, and a segment is either whole or absent (atomic local rename; single-object put on stores).
"""

from __future__ import annotations

import hashlib
import io
from typing import Sequence

import fsspec
import numpy as np
from fsspec.core import url_to_fs

from llmops.storage import atomic_write_bytes, is_remote, join_uri

__all__ = ["EmbeddingCache"]

_KEY_BYTES = 16


def _split_keys(stored: np.ndarray) -> list[bytes]:
    """The keys of a segment, each exactly _KEY_BYTES long. Indexing an `S16` array strips trailing NUL bytes
    (digests end in one about once in 256), so the raw buffer is cut instead."""
    raw = stored.tobytes()
    return [raw[i : i + _KEY_BYTES] for i in range(0, len(raw), _KEY_BYTES)]


class EmbeddingCache:
    def __init__(self, root: str, model_digest: str, passage_prefix: str):
        namespace = hashlib.sha256(f"{model_digest}\0{passage_prefix}".encode()).hexdigest()[:24]
        self.uri = join_uri(root, "embedding-cache", namespace)
        self._namespace = namespace.encode()
        self._index: dict[bytes, tuple[str, int]] | None = None

    def keys(self, texts: Sequence[str]) -> list[bytes]:
        return [hashlib.sha256(self._namespace + b"\0" + t.encode("utf-8")).digest()[:_KEY_BYTES] for t in texts]

    def _segments(self) -> list[str]:
        fs, path = url_to_fs(self.uri)
        if not fs.exists(path):
            return []
        names = sorted(p for p in fs.ls(path, detail=False) if p.endswith(".npz"))
        return [fs.unstrip_protocol(n) if is_remote(self.uri) else n for n in names]

    def _load_index(self) -> dict[bytes, tuple[str, int]]:
        if self._index is None:
            index: dict[bytes, tuple[str, int]] = {}
            for seg in self._segments():
                with fsspec.open(seg, "rb") as f, np.load(f) as data:
                    for row, key in enumerate(_split_keys(data["keys"])):
                        index.setdefault(key, (seg, row))
            self._index = index
        return self._index

    def lookup(self, keys: Sequence[bytes], dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (found mask, vectors) where vectors rows are filled only where found."""
        index = self._load_index()
        found = np.array([k in index for k in keys], dtype=bool)
        out = np.zeros((len(keys), dim), dtype=np.float32)
        by_segment: dict[str, list[tuple[int, int]]] = {}
        for i, k in enumerate(keys):
            if found[i]:
                seg, row = index[k]
                by_segment.setdefault(seg, []).append((i, row))
        for seg, pairs in by_segment.items():
            with fsspec.open(seg, "rb") as f, np.load(f) as data:
                vectors = data["vectors"]
                dst, src = zip(*pairs)
                out[list(dst)] = vectors[list(src)]
        return found, out

    def add(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        key_array = np.frombuffer(b"".join(keys), dtype=f"S{_KEY_BYTES}")
        name = hashlib.sha256(key_array.tobytes()).hexdigest()[:32] + ".npz"
        buf = io.BytesIO()
        np.savez(buf, keys=key_array, vectors=np.asarray(vectors, dtype=np.float32))
        target = join_uri(self.uri, name)
        if is_remote(target):
            with fsspec.open(target, "wb") as f:
                f.write(buf.getvalue())
        else:
            atomic_write_bytes(target, buf.getvalue())
        if self._index is not None:
            for row, key in enumerate(keys):
                self._index.setdefault(key, (target, row))
