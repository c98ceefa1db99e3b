"""The one retriever: loads a verified index artifact and answers dense, lexical or hybrid searches.

Evaluation and serving both use this class, so what is measured is what is served.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pyarrow.parquet as pq

from llmops.index.artifact import IndexManifest, materialize, verify_artifact
from llmops.config import EmbeddingConfig
from llmops.index.embedding import Embedder, EmbeddingProfile, QueryEmbeddingCache, get_embedder
from llmops.errors import ArtifactIntegrityError, InvalidRequestError
from llmops.index.fusion import fuse
from llmops.index.vector_index import load_vector_index

__all__ = ["Mode", "Retriever", "SearchHit"]

Mode = Literal["dense", "lexical", "hybrid"]
MODES: tuple[str, ...] = ("dense", "lexical", "hybrid")


@dataclass(frozen=True)
class SearchHit:
    rank: int
    score: float
    chunk_id: str
    doc_id: str
    text: str
    source: str
    title: str
    start: int
    end: int

    def to_dict(self) -> dict:
        return asdict(self)


class Retriever:
    """`query_cache_size` > 0 keeps that many query embeddings (serving: repeated questions skip the model)."""

    def __init__(
        self, directory: Path, manifest: IndexManifest, embedder: Embedder | None = None, *, query_cache_size: int = 0
    ):
        self.directory = directory
        self.manifest = manifest
        table = pq.read_table(directory / "chunks.parquet")
        self._chunks = {name: table.column(name).to_pylist() for name in table.column_names}
        self.size = table.num_rows
        emb = manifest.embedding
        self.embedder = embedder or get_embedder(
            EmbeddingConfig(model=emb.model, revision=emb.revision),
            profile=EmbeddingProfile(emb.profile, emb.query_prefix, emb.passage_prefix),
        )
        if self.embedder.digest != emb.model_digest:
            raise ArtifactIntegrityError(
                f"embedding model at {self.embedder.path} has digest {self.embedder.digest[:12]}, but index "
                f"{manifest.version} was built with {emb.model_digest[:12]}: queries would be embedded into a "
                f"different space. Use the model the index was built with, or rebuild the index."
            )
        self.query_vectors = QueryEmbeddingCache(self.embedder, query_cache_size)
        self._index = load_vector_index(directory / "vectors.faiss", manifest.index.params)
        self._lexical = None
        if manifest.lexical is not None:
            from llmops.index.lexical import LexicalIndex

            self._lexical = LexicalIndex.load(directory / "lexical", manifest.lexical)
        fusion = manifest.retrieval.fusion
        self.default_mode: Mode = manifest.retrieval.mode
        self.default_k: int = manifest.retrieval.k
        self.fusion_method: str = fusion.method
        self.dense_weight: float = fusion.dense_weight
        self.rrf_k: int = fusion.rrf_k
        self.candidates: int = fusion.candidates

    @classmethod
    def load(cls, uri: str | Path, embedder: Embedder | None = None, *, query_cache_size: int = 0) -> "Retriever":
        directory = materialize(str(uri))
        return cls(directory, verify_artifact(directory), embedder, query_cache_size=query_cache_size)

    def with_indexes(self, vector_index=None, lexical_index=None) -> "Retriever":
        """A copy of this retriever that searches `vector_index` (a faiss index over the same chunk positions)
        and/or `lexical_index` (a `LexicalIndex` over the same chunks) in place of the artifact's: how experiments
        compare index variants under the same fusion. The copy shares chunks, manifest and embedder."""
        other = copy.copy(self)
        if vector_index is not None:
            other._index = vector_index
        if lexical_index is not None:
            other._lexical = lexical_index
        return other

    def with_query_cache(self, size: int) -> "Retriever":
        """A copy of this retriever whose query embeddings are kept in an LRU of `size` (shares everything else):
        a run that searches each question more than once (retrieval, then the answerability check) embeds it once."""
        other = copy.copy(self)
        other.query_vectors = QueryEmbeddingCache(self.embedder, size)
        return other

    @property
    def version(self) -> str:
        return self.manifest.version

    def search(self, query: str, k: int | None = None, mode: Mode | None = None) -> list[SearchHit]:
        return self.search_batch([query], k, mode)[0]

    def search_batch(
        self, queries: Sequence[str], k: int | None = None, mode: Mode | None = None
    ) -> list[list[SearchHit]]:
        ids, scores = self.search_ids(queries, k, mode)
        return [
            [self._hit(rank, int(i), float(s)) for rank, (i, s) in enumerate(zip(row_ids, row_scores)) if i >= 0]
            for row_ids, row_scores in zip(ids, scores)
        ]

    def search_ids(
        self, queries: Sequence[str], k: int | None = None, mode: Mode | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Chunk positions [n, k] (-1 = no hit) and scores [n, k]: the array form eval uses."""
        k = k or self.default_k
        mode = mode or self.default_mode
        if mode not in MODES:
            raise InvalidRequestError(
                f"unknown retrieval mode {mode!r}; allowed: {', '.join(MODES)}", param="mode", code="invalid_mode"
            )
        if mode == "dense":
            return self.dense(queries, k)
        if mode == "lexical":
            return self.lexical(queries, k)
        n = max(k, self.candidates)
        (d_ids, d_scores), (l_ids, l_scores) = self.dense(queries, n), self.lexical(queries, n)
        return self.fuse_candidates(d_ids, d_scores, l_ids, l_scores, k, self.dense_weight)

    def dense(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = self.query_vectors.embed_queries(list(queries))
        scores, ids = self._index.search(vectors, min(k, self.size))
        if ids.shape[1] < k:  # pad to k so every mode returns the same shape
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)))
        return ids.astype(np.int64), scores.astype(np.float32)

    def best_dense_similarity(self, queries: Sequence[str]) -> np.ndarray:
        """Per query, the cosine similarity of its nearest chunk: the answerability score. Dense and absolute (fused
        hybrid scores only rank within one query); one k=1 search, on the query embedding cache. -1 for no chunk."""
        ids, scores = self.dense(queries, 1)
        return np.where(ids[:, 0] >= 0, scores[:, 0], -1.0).astype(np.float32)

    @property
    def has_lexical(self) -> bool:
        return self._lexical is not None

    def lexical(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """BM25 positions and scores [n, k], the same shapes as `dense`."""
        if self._lexical is None:
            raise InvalidRequestError(
                f"index {self.version} was built without a lexical index, so only mode 'dense' can search it. "
                "Use mode 'dense', or rebuild the index with `lexical.enabled: true`.",
                param="mode",
                code="mode_unavailable",
            )
        return self._lexical.search(queries, k)

    def fuse_candidates(self, d_ids, d_scores, l_ids, l_scores, k: int, dense_weight: float):
        fused = [
            fuse(d_ids[q], d_scores[q], l_ids[q], l_scores[q], k, self.fusion_method, dense_weight, self.rrf_k)
            for q in range(len(d_ids))
        ]
        return np.stack([f[0] for f in fused]), np.stack([f[1] for f in fused])

    def chunk(self, position: int) -> dict:
        return {name: values[position] for name, values in self._chunks.items()}

    def chunk_column(self, name: str) -> list:
        """One column of the chunk table (`doc_id`, `text`, ...) by chunk position, as the index stores it."""
        return self._chunks[name]

    def _hit(self, rank: int, position: int, score: float) -> SearchHit:
        c = self._chunks
        return SearchHit(
            rank=rank + 1,
            score=score,
            chunk_id=c["chunk_id"][position],
            doc_id=c["doc_id"][position],
            text=c["text"][position],
            source=c["source"][position],
            title=c["title"][position],
            start=c["start"][position],
            end=c["end"][position],
        )

