"""Where readers put what they find: normalization, the size floor and de-duplication happen here, once."""

from __future__ import annotations

from llmops.corpus.documents import Document, QAExample, content_id
from llmops.corpus.ingest.report import SkippedItem
from llmops.corpus.normalize import non_space_chars, normalize_inline, normalize_text
from llmops.corpus.lang import detect_lang

__all__ = ["Collector"]


class Collector:
    def __init__(self, min_chars: int):
        self.min_chars = min_chars
        self.documents: list[Document] = []
        self.qa: list[QAExample] = []
        self.skipped: list[SkippedItem] = []
        self.duplicates: list[tuple[str, str]] = []
        self.files_seen = 0
        self._kept: dict[str, str] = {}  # doc_id -> source of the copy kept

    def skip(self, source: str, reason: str) -> None:
        self.skipped.append(SkippedItem(source=source, reason=reason))

    def add_document(
        self, text: str, source: str, title: str = "", metadata: dict[str, str] | None = None
    ) -> str | None:
        """Normalize and keep a document; return its doc_id (also for a duplicate), or None if it was skipped."""
        text = normalize_text(text)
        n = non_space_chars(text)
        if n < self.min_chars:
            self.skip(source, "no text" if n == 0 else f"only {n} non-space characters (min_chars={self.min_chars})")
            return None
        doc_id = content_id(text)
        if doc_id in self._kept:
            self.duplicates.append((source, self._kept[doc_id]))
            return doc_id
        self._kept[doc_id] = source
        self.documents.append(
            Document(
                doc_id=doc_id,
                text=text,
                source=source,
                title=normalize_inline(title),
                lang=detect_lang(text),
                metadata=metadata or {},
            )
        )
        return doc_id

    def add_qa(self, example: QAExample) -> None:
        self.qa.append(example)
