"""What ingestion produced, and an account of everything it left out."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from llmops.corpus.documents import Document, QAExample

__all__ = ["IngestReport", "IngestResult", "Skip", "SkippedItem"]


class Skip(Exception):
    """One file or record cannot be used; the reason goes into the report and ingestion goes on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class SkippedItem:
    source: str  # file path or URI, with `#line=N` / `#row=N` / `#article=I,...` for records inside a file
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class IngestReport:
    sources: list[str]
    files_seen: int
    documents: int
    duplicates: list[tuple[str, str]]  # (dropped source, kept source)
    skipped: list[SkippedItem]
    qa_examples: int
    seconds: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["duplicates"] = [list(pair) for pair in self.duplicates]  # JSON has no tuples
        return d


@dataclass
class IngestResult:
    documents: list[Document]
    qa: list[QAExample]
    report: IngestReport
