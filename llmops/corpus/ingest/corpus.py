"""The ingest stage: read every configured source into normalized, de-duplicated documents and QA examples."""

from __future__ import annotations

import logging
import time

from fsspec.core import url_to_fs

from llmops.config import CorpusConfig, DirectorySource, HFDatasetSource, JsonlSource, SquadSource
from llmops.errors import IngestError
from llmops.corpus.ingest.collector import Collector
from llmops.corpus.ingest.directory import read_directory
from llmops.corpus.ingest.hf import hf_source_exists, read_hf_dataset
from llmops.corpus.ingest.records import read_jsonl
from llmops.corpus.ingest.report import IngestReport, IngestResult
from llmops.corpus.ingest.squad import read_squad

__all__ = ["ingest_corpus"]

log = logging.getLogger(__name__)

_READERS = {"directory": read_directory, "jsonl": read_jsonl, "squad": read_squad, "hf_dataset": read_hf_dataset}
_SHOWN_SKIPS = 10


def ingest_corpus(cfg: CorpusConfig) -> IngestResult:
    """Unusable files and records are skipped and reported; a missing source, a malformed SQuAD file, or a corpus
    with no usable document at all raises IngestError."""
    start = time.perf_counter()
    for i, src in enumerate(cfg.sources):  # before any reading: a mistyped path should fail in seconds
        _check_exists(i, src)
    out = Collector(cfg.min_chars)
    for src in cfg.sources:
        _READERS[src.kind](src, out)
    if not out.documents:
        raise _nothing_usable(cfg, out)
    report = IngestReport(
        sources=[src.path for src in cfg.sources],
        files_seen=out.files_seen,
        documents=len(out.documents),
        duplicates=out.duplicates,
        skipped=out.skipped,
        qa_examples=len(out.qa),
    )
    seconds = round(time.perf_counter() - start, 3)
    log.info(
        "ingested %d documents and %d QA examples from %d files (%d duplicates dropped, %d items skipped) in %.1fs",
        report.documents, report.qa_examples, report.files_seen, len(report.duplicates), len(report.skipped),
        seconds,
    )  # fmt: skip
    return IngestResult(documents=out.documents, qa=out.qa, report=report, seconds=seconds)


def _check_exists(i: int, src: DirectorySource | JsonlSource | SquadSource | HFDatasetSource) -> None:
    where = f"corpus.sources[{i}] ({src.kind}) {src.path}"
    if src.kind == "hf_dataset":
        if not hf_source_exists(src.path):
            raise IngestError(f"{where}: no such file or folder")
        return
    fs, path = url_to_fs(src.path)
    if not fs.exists(path):
        raise IngestError(f"{where}: no such {'folder' if src.kind == 'directory' else 'file'}")
    if src.kind == "directory" and not fs.isdir(path):
        raise IngestError(f"{where}: is a file; a directory source needs a folder (or use kind: jsonl / squad)")
    if src.kind != "directory" and fs.isdir(path):
        raise IngestError(f"{where}: is a folder; a {src.kind} source needs a file (or use kind: directory)")


def _nothing_usable(cfg: CorpusConfig, out: Collector) -> IngestError:
    sources = "\n".join(f"  - {src.kind}: {src.path}" for src in cfg.sources)
    reasons = "\n".join(f"  - {item}" for item in out.skipped[:_SHOWN_SKIPS])
    more = len(out.skipped) - _SHOWN_SKIPS
    if more > 0:
        reasons += f"\n  ... and {more} more"
    found = f"{out.files_seen} files seen, {len(out.skipped)} items skipped"
    return IngestError(
        f"no usable documents in the corpus ({found}; min_chars={cfg.min_chars}).\nSources:\n{sources}\n"
        + (f"Skipped:\n{reasons}" if out.skipped else "No files or records were found (check the include patterns).")
    )
