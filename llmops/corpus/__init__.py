"""The corpus: sources read into documents, QA sets, language and text normalization, chunks, and the ingest and
chunk stages that write them to the artifact store.

The re-exports below are lazy (`llmops.exports`): importing this package loads none of its modules.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "documents": ("Chunk", "Document", "QAExample", "content_id", "read_chunks", "read_documents",
                      "split_answerable", "write_chunks", "write_documents"),
        "chunking": ("chunk_documents", "max_chunk_tokens"),
        "lang": ("detect_lang",),
        "normalize": ("normalize_text",),
        "qa": ("read_qa", "write_qa"),
        "sentences": ("split_sentences",),
        "stages": ("ChunkOutput", "ChunkingModel", "IngestOutput", "read_chunk_table", "run_chunking", "run_ingest"),
    },
)
