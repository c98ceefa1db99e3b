"""Sentence-transformers embedding with per-model query/passage profiles.

Retrieval quality of e5 and bge models depends on prefixes that are easy to forget: e5 wants `query: ` and
`passage: `, bge wants an instruction on queries only. The profile is chosen from the model name (or set in config)
and applied on both sides, at index time and at query time, from the manifest, so they cannot drift apart.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from llmops.config import EmbeddingConfig
from llmops.provenance.model_paths import resolve_model_path
from llmops.errors import EmbeddingError

__all__ = [
    "EmbeddingProfile",
    "Embedder",
    "PROFILES",
    "QueryEmbeddingCache",
    "get_embedder",
    "limit_torch_threads",
    "model_digest",
    "resolve_profile",
]


@dataclass(frozen=True)
class EmbeddingProfile:
    name: str
    query_prefix: str = ""
    passage_prefix: str = ""


PROFILES: dict[str, EmbeddingProfile] = {
    "none": EmbeddingProfile("none"),
    # https://huggingface.co/intfloat/multilingual-e5-large#faq
    "e5": EmbeddingProfile("e5", "query: ", "passage: "),
    # e5-*-instruct models: instruction on queries, nothing on passages
    "e5-instruct": EmbeddingProfile(
        "e5-instruct",
        "Instruct: Given a question, retrieve passages that answer the question\nQuery: ",
        "",
    ),
    # https://huggingface.co/BAAI/bge-large-en-v1.5#using-sentence-transformers
    "bge-en": EmbeddingProfile("bge-en", "Represent this sentence for searching relevant passages: ", ""),
    "bge-zh": EmbeddingProfile("bge-zh", "为这个句子生成表示以用于检索相关文章：", ""),
}

# Ordered: the first pattern that matches the model name wins.
_AUTO_RULES: tuple[tuple[str, str], ...] = (
    (r"e5-.*instruct", "e5-instruct"),
    (r"(^|[/_-])e5-", "e5"),
    (r"bge-m3", "none"),  # bge-m3 is trained without instructions
    (r"bge-.*-zh", "bge-zh"),
    (r"bge-", "bge-en"),
)


def resolve_profile(cfg: EmbeddingConfig) -> EmbeddingProfile:
    if cfg.profile == "custom":
        return EmbeddingProfile("custom", cfg.query_prefix or "", cfg.passage_prefix or "")
    if cfg.profile != "auto":
        return PROFILES[cfg.profile]
    name = cfg.model.lower()
    for pattern, profile in _AUTO_RULES:
        if re.search(pattern, name):
            return PROFILES[profile]
    return PROFILES["none"]



def model_digest(path: Path) -> str:
    """sha256 over the model's files. Any change to weights, tokenizer or config gives a new digest; unchanged files
    are not read again (llmops/provenance/content_digest.py)."""
    from llmops.provenance.content_digest import tree_digest_cached

    return tree_digest_cached(path)


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class Embedder:
    """One loaded embedding model plus its profile. Vectors are float32 and L2-normalized (cosine = inner product)."""

    def __init__(self, cfg: EmbeddingConfig, profile: EmbeddingProfile | None = None):
        self.cfg = cfg
        self.path = resolve_model_path(cfg.model, cfg.revision)
        self.profile = profile or resolve_profile(cfg)
        self.device = _pick_device(cfg.device)

    @cached_property
    def model(self):
        from sentence_transformers import SentenceTransformer

        try:
            return SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
        except Exception as e:
            raise EmbeddingError(f"embedding.model {self.cfg.model!r} failed to load from {self.path}: {e}") from e

    @cached_property
    def digest(self) -> str:
        return model_digest(self.path)

    @property
    def tokenizer(self):
        return self.model.tokenizer

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def dimension(self) -> int:
        return int(self.model.get_embedding_dimension())

    def embed_passages(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.profile.passage_prefix, show_progress)

    def embed_queries(self, texts: Sequence[str], show_progress: bool = False) -> np.ndarray:
        return self._encode(texts, self.profile.query_prefix, show_progress)

    def _encode(self, texts: Sequence[str], prefix: str, show_progress: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # encode() sorts by length and tokenizes one batch at a time, so text is never held tokenized in full.
        vectors = self.model.encode(
            list(texts),
            prompt=prefix or None,
            batch_size=self.cfg.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


class QueryEmbeddingCache:
    """A bounded LRU of query vectors, for serving, where the same questions come back.

    Keyed by the model's digest, the query prefix and the exact text, so a vector is only reused where the model
    would compute it again. Thread-safe (retrieval runs in worker threads). `hits` and `misses` count lookups.
    """

    def __init__(self, embedder: "Embedder", size: int):
        self.embedder = embedder
        self.size = size
        self.hits = 0
        self.misses = 0
        self._vectors: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """`embedder.embed_queries(texts)`, embedding only the texts not cached (in one batch)."""
        if self.size <= 0:
            return self.embedder.embed_queries(texts)
        scope = (self.embedder.digest, self.embedder.profile.query_prefix)
        keys = [(*scope, t) for t in texts]
        found: dict[int, np.ndarray] = {}
        with self._lock:
            for i, key in enumerate(keys):
                vector = self._vectors.get(key)
                if vector is not None:
                    self._vectors.move_to_end(key)
                    found[i] = vector
            self.hits += len(found)
            self.misses += len(keys) - len(found)
        missing = [i for i in range(len(keys)) if i not in found]
        if not missing:
            return np.stack([found[i] for i in range(len(keys))])
        computed = self.embedder.embed_queries([texts[i] for i in missing])
        with self._lock:
            for i, vector in zip(missing, computed):
                found[i] = vector
                self._vectors[keys[i]] = vector.copy()  # not a view that keeps the whole batch alive
                self._vectors.move_to_end(keys[i])
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return np.stack([found[i] for i in range(len(keys))])


def get_embedder(cfg: EmbeddingConfig, profile: EmbeddingProfile | None = None) -> Embedder:
    """One loaded model per (config, profile, model files) and process: local runs execute every task in one
    process, and a local model whose files changed since it was loaded is loaded again (and digested again)."""
    local = cfg.model.startswith("pkg:") or Path(cfg.model).expanduser().exists()
    stamp = _files_stamp(resolve_model_path(cfg.model, cfg.revision)) if local else None
    return _embedder(cfg, profile, stamp)


@lru_cache(maxsize=4)
def _embedder(cfg: EmbeddingConfig, profile: EmbeddingProfile | None, stamp: tuple | None) -> Embedder:
    return Embedder(cfg, profile)


def _files_stamp(path: Path) -> tuple:
    """Changes when any file under `path` is added, removed, resized or rewritten."""
    files = (p for p in path.rglob("*") if p.is_file())
    return tuple(sorted((str(p), (st := p.stat()).st_size, st.st_mtime_ns) for p in files))


def limit_torch_threads(threads: int) -> None:
    """Set torch's intra-op threads for this process (the serving API: query embeddings only)."""
    import torch

    torch.set_num_threads(threads)
