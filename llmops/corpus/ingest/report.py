"""What ingestion produced, and an account of everything it left out.

`IngestReport` is the ingest stage's output report (`ingest_report.json` in every index artifact, and the JSON the
ingest task hands the index and retrieval-eval tasks): one versioned schema, written and read only through it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from llmops.corpus.documents import Document, QAExample
from llmops.records import validate_record
from llmops.errors import IngestError

__all__ = [
    "INGEST_REPORT_SCHEMA_VERSION",
    "IngestReport",
    "IngestResult",
    "Skip",
    "SkippedItem",
    "read_ingest_report",
]

# 1: the first typed report (the untyped one had no schema_version).
INGEST_REPORT_SCHEMA_VERSION = 1


class Skip(Exception):
    """One file or record cannot be used; the reason goes into the report and ingestion goes on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SkippedItem(_Record):
    source: str  # file path or URI, with `#line=N` / `#row=N` / `#article=I,...` for records inside a file
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


class IngestReport(_Record):
    """What the ingest stage read, kept and left out. No timings: it is an input of cached tasks, and must be equal
    for equal corpora."""

    schema_version: int = INGEST_REPORT_SCHEMA_VERSION
    kind: Literal["ingest_report"] = "ingest_report"
    sources: list[str]
    files_seen: int
    documents: int
    duplicates: list[tuple[str, str]]  # (dropped source, kept source)
    skipped: list[SkippedItem]
    qa_examples: int  # questions from the sources, and from eval.qa_path when set
    eval_set: str | None = None  # eval.qa_path, when the config names an eval set of its own


def read_ingest_report(data: IngestReport | Mapping[str, Any] | str, where: str) -> IngestReport:
    """The ingest report in `data` (the report, its JSON object, or its JSON text), validated; `where` names its
    origin (a task input, an argument) in errors."""
    if isinstance(data, IngestReport):
        return data
    try:
        raw = json.loads(data) if isinstance(data, str) else dict(data)
    except json.JSONDecodeError as e:
        raise IngestError(f"{where}: the ingest report is not valid JSON ({e.msg}); re-run the ingest task") from None
    return validate_record(
        raw, IngestReport, INGEST_REPORT_SCHEMA_VERSION, where=f"{where}: the ingest report", what="ingest report",
        remedy="Re-run the ingest task with this version of llmops", error=IngestError,
    )


@dataclass
class IngestResult:
    documents: list[Document]
    qa: list[QAExample]
    report: IngestReport
    seconds: float  # wall time of the ingestion (kept out of the report)
