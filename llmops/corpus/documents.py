"""The records that flow between stages: documents, chunks and QA examples, with their parquet/JSONL forms."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "Chunk",
    "Document",
    "QAExample",
    "QAProvenance",
    "content_id",
    "followup_query",
    "read_chunks",
    "read_documents",
    "split_answerable",
    "write_chunks",
    "write_documents",
]


def content_id(text: str) -> str:
    """Stable id of a text: 128 bits of its sha256 (hex). Same text, same id, on every machine."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Document:
    doc_id: str  # content_id(text): identical texts are one document
    text: str
    source: str  # file path or URI, with `#line=N` / `#article=I,paragraph=J` where one file holds many documents
    title: str = ""
    lang: str = "en"  # "ja", "zh", "ko" or "en" (any non-CJK text); decides lexical tokenization
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    chunk_id: str  # content_id(f"{doc_id}:{start}:{end}"): deterministic
    doc_id: str
    text: str  # == document.text[start:end]
    start: int  # character offsets into the document text
    end: int
    n_tokens: int  # embedding-tokenizer tokens, without special tokens or prefixes
    ordinal: int  # position of the chunk within its document
    source: str = ""
    title: str = ""
    lang: str = "en"


@dataclass(frozen=True)
class QAProvenance:
    """Where a QA example came from when not written by hand: `source` "production" marks a question a user asked
    in production, reviewed and merged by `llmops feedback merge` (its answer id, when it was reviewed, and how:
    "reference" = a correct answer was written, "irrelevant" = out of scope, kept as an unanswerable question)."""

    source: str
    response_id: str | None = None
    reviewed_at: str | None = None
    review: str | None = None


@dataclass(frozen=True)
class QAExample:
    qid: str
    question: str
    answers: tuple[str, ...]
    gold_doc_id: str | None = None  # the document the question was written on, when known (SQuAD contexts)
    lang: str = "en"
    reference_contexts: tuple[str, ...] = ()  # passages that support the answer (JSONL eval sets may give them)
    # earlier turns of a conversation, (role, text) oldest first: the question is a follow-up (conversational QA)
    history: tuple[tuple[str, str], ...] = ()
    # False: the documents do not answer it (SQuAD 2.0 `is_impossible`, JSONL `"answerable": false`); such questions
    # measure abstention ("not in the documents") and are left out of retrieval and answer metrics.
    answerable: bool = True
    provenance: QAProvenance | None = None  # None: written by hand (or from a corpus source)

    @property
    def search_query(self) -> str:
        """What the stages that run without an LLM (retrieval evaluation, fusion tuning, SFT data) search for: a
        follow-up in its deterministic `concat` form, a single question as it is."""
        return followup_query(self.question, self.history)


def split_answerable(examples: Sequence[QAExample]) -> tuple[list[QAExample], list[QAExample]]:
    """(answerable, unanswerable) questions, order kept."""
    answerable = [ex for ex in examples if ex.answerable]
    return answerable, [ex for ex in examples if not ex.answerable]


def followup_query(question: str, history: Sequence[tuple[str, str]]) -> str:
    """The deterministic standalone query of a follow-up: the previous user message, then the follow-up ("How long
    are internal certificates valid? And when are they renewed?"). The chat path's `concat` rewrite and its fallback
    (`llmops.chat.rewrite`) are this function, so offline stages search follow-ups as the served fallback does."""
    previous = next((text for role, text in reversed(history) if role == "user"), None)
    return f"{previous.strip()} {question.strip()}" if previous else question


def _write_table(rows: list[dict], schema: pa.Schema, path: Path) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, compression="zstd")


_DOC_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("title", pa.string()),
        ("lang", pa.string()),
        ("metadata", pa.string()),  # JSON object: metadata keys differ between sources
    ]
)

_CHUNK_SCHEMA = pa.schema(
    [
        ("chunk_id", pa.string()),
        ("doc_id", pa.string()),
        ("text", pa.string()),
        ("start", pa.int64()),
        ("end", pa.int64()),
        ("n_tokens", pa.int32()),
        ("ordinal", pa.int32()),
        ("source", pa.string()),
        ("title", pa.string()),
        ("lang", pa.string()),
    ]
)


def write_documents(docs: list[Document], path: Path) -> None:
    rows = [{**asdict(d), "metadata": json.dumps(d.metadata, ensure_ascii=False, sort_keys=True)} for d in docs]
    _write_table(rows, _DOC_SCHEMA, path)


def read_documents(path: Path) -> list[Document]:
    rows = pq.read_table(path).to_pylist()
    return [Document(**{**r, "metadata": json.loads(r["metadata"])}) for r in rows]


def write_chunks(chunks: list[Chunk], path: Path) -> None:
    _write_table([asdict(c) for c in chunks], _CHUNK_SCHEMA, path)


def read_chunks(path: Path) -> list[Chunk]:
    return [Chunk(**r) for r in pq.read_table(path).to_pylist()]
