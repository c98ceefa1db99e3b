"""The corpus stages as plain functions over URIs in the artifact store: ingest, then chunk.

Like the indexing stages (`llmops.index.build`), each writes its output under `artifacts.root` at a path named by
the digest of its inputs and returns that URI; an output that already exists is not written again. Flyte tasks in
`tasks/` wrap these functions one to one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from llmops.config import PipelineConfig
from llmops.corpus.documents import read_documents, write_chunks, write_documents
from llmops.corpus.ingest.report import IngestReport
from llmops.corpus.qa import read_qa, write_qa
from llmops.errors import IndexBuildError
from llmops.provenance.stage_inputs import stage_code
from llmops.storage import digest_of, fetch_file, put_file, uri_exists
from llmops.workspace import scratch_dir, work_uri

__all__ = ["ChunkOutput", "ChunkingModel", "IngestOutput", "read_chunk_table", "run_chunking", "run_ingest"]


# ---------------------------------------------------------------------------------------------------------------
# 1. Ingest
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestOutput:
    documents_uri: str
    qa_uri: str | None  # None when no source or eval.qa_path provides questions
    corpus_fingerprint: str
    report: IngestReport  # the ingest task hands it on as JSON; `read_ingest_report` reads that back
    seconds: float


def run_ingest(cfg: PipelineConfig) -> IngestOutput:
    from llmops.corpus.ingest.corpus import ingest_corpus

    result = ingest_corpus(cfg.corpus)
    qa = list(result.qa)
    if cfg.eval.qa_path:
        qa.extend(read_qa(cfg.eval.qa_path))
    fingerprint = digest_of([[d.doc_id, d.source, d.title, d.lang, d.metadata] for d in result.documents])
    with scratch_dir() as scratch:
        documents_uri = work_uri(cfg, "documents", f"{fingerprint}.parquet")
        if not uri_exists(documents_uri):
            write_documents(result.documents, scratch / "documents.parquet")
            put_file(scratch / "documents.parquet", documents_uri)
        qa_uri = None
        if qa:
            qa_uri = work_uri(cfg, "qa", f"{digest_of([_digest_record(q) for q in qa])}.jsonl")
            if not uri_exists(qa_uri):
                write_qa(qa, scratch / "qa.jsonl")
                put_file(scratch / "qa.jsonl", qa_uri)
    report = IngestReport.model_validate(
        result.report.model_dump() | {"qa_examples": len(qa), "eval_set": cfg.eval.qa_path}
    )
    return IngestOutput(documents_uri, qa_uri, fingerprint, report, result.seconds)


def _digest_record(q) -> dict:
    """What the qa file's name digests: the example's fields, `provenance` only when set (so a hand-written eval
    set keeps the name, and the cache keys, it had before provenance existed)."""
    return {k: v for k, v in asdict(q).items() if k != "provenance" or v is not None}


# ---------------------------------------------------------------------------------------------------------------
# 2. Chunk
# ---------------------------------------------------------------------------------------------------------------


class _PassageProfile(Protocol):
    @property
    def passage_prefix(self) -> str: ...


class ChunkingModel(Protocol):
    """What chunking needs of the embedding model (`llmops.index.embedding.Embedder` is one): its tokenizer and
    limits, and its digest for the cache key. Passed in, because the model is loaded by the layer above."""

    @property
    def tokenizer(self) -> Any: ...

    @property
    def max_seq_length(self) -> int: ...

    @property
    def profile(self) -> _PassageProfile: ...

    @property
    def digest(self) -> str: ...


@dataclass(frozen=True)
class ChunkOutput:
    chunks_uri: str
    model_digest: str  # passed on so downstream cache keys change when the model files change
    max_tokens: int


def run_chunking(
    cfg: PipelineConfig, documents_uri: str, corpus_fingerprint: str, embedder: ChunkingModel
) -> ChunkOutput:
    """Chunk the documents with `embedder`'s tokenizer (the model of `cfg.embedding`, from `get_embedder`)."""
    from llmops.corpus.chunking import chunk_documents, max_chunk_tokens

    max_tokens = max_chunk_tokens(
        embedder.tokenizer, embedder.max_seq_length, embedder.profile.passage_prefix, cfg.chunking.max_tokens
    )
    key = digest_of(
        {
            "corpus": corpus_fingerprint,
            "model": embedder.digest,
            "max_tokens": max_tokens,
            "overlap": cfg.chunking.overlap_tokens,
            "code": stage_code("chunk").fingerprint,
        }
    )
    chunks_uri = work_uri(cfg, "chunks", f"{key}.parquet")
    if not uri_exists(chunks_uri):
        with scratch_dir() as scratch:
            docs = read_documents(fetch_file(documents_uri, scratch))
            chunks = chunk_documents(docs, embedder.tokenizer, max_tokens, cfg.chunking.overlap_tokens)
            if not chunks:
                raise IndexBuildError(f"chunking produced no chunks from {len(docs)} documents ({documents_uri})")
            write_chunks(chunks, scratch / "chunks.parquet")
            put_file(scratch / "chunks.parquet", chunks_uri)
    return ChunkOutput(chunks_uri, embedder.digest, max_tokens)


def read_chunk_table(uri: str) -> pa.Table:
    """The chunk stage's output as one Arrow table (for Decks and reports)."""
    with scratch_dir() as scratch:
        return pq.read_table(fetch_file(uri, scratch))
