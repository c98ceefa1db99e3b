"""Ingestion: folders of text/Markdown/HTML/PDF files, JSONL, SQuAD and Hugging Face datasets into documents.

Plain functions, independent of Flyte. Messy input is expected: files and records that cannot be used are skipped
with a reason in the report rather than failing the run; only configuration mistakes raise `IngestError`.
"""

from llmops.corpus.ingest.corpus import ingest_corpus
from llmops.corpus.ingest.report import IngestReport, IngestResult, SkippedItem

__all__ = ["IngestReport", "IngestResult", "SkippedItem", "ingest_corpus"]
