"""Ingestion: folders of text/Markdown/HTML/PDF files, JSONL, SQuAD and Hugging Face datasets into documents.

Plain functions, independent of Flyte. Messy input is expected: files and records that cannot be used are skipped
with a reason in the report rather than failing the run; only configuration mistakes raise `IngestError`.
The re-exports are lazy (`llmops.exports`): the readers' libraries (datasets, trafilatura, pypdf) load on first use.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "corpus": ("ingest_corpus",),
        "report": ("IngestReport", "IngestResult", "SkippedItem"),
    },
)
