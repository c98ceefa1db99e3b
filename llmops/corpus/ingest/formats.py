"""One extractor per file format: bytes in, text + title + metadata out, or `Skip` with the reason."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass

import trafilatura
from lxml.html import HtmlElement
from pypdf import PdfReader

from llmops.corpus.ingest.report import Skip
from llmops.corpus.normalize import decode_text

__all__ = ["EXTRACTORS", "FORMAT_BY_EXTENSION", "Extracted"]


@dataclass
class Extracted:
    text: str
    title: str
    metadata: dict[str, str]


def _extract_txt(data: bytes, stem: str) -> Extracted:
    return Extracted(decode_text(data), stem, {"format": "txt"})


_H1 = re.compile(r"^ {0,3}#[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _markdown_title(text: str) -> str | None:
    """The first level-1 ATX heading, ignoring `# comments` inside fenced code blocks."""
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and (m := _H1.match(line)):
            return m.group(1)
    return None


def _extract_markdown(data: bytes, stem: str) -> Extracted:
    text = decode_text(data)
    return Extracted(text, _markdown_title(text) or stem, {"format": "md"})


# Elements that start a new line when an HTML page is flattened to plain text.
_BLOCK_TAGS = (
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption", "footer", "h1", "h2",
    "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "td", "th",
    "tr", "ul",
)  # fmt: skip


def _html_plain_text(tree: HtmlElement) -> str:
    """Every visible text node, one line per block element: the fallback when trafilatura finds no main text
    (very short pages, pages that are one table or list)."""
    for el in tree.xpath("//head|//script|//style|//noscript|//template"):
        el.drop_tree()
    for el in tree.iter(*_BLOCK_TAGS):
        el.tail = "\n" + (el.tail or "")
    return "\n".join(" ".join(line.split()) for line in tree.text_content().splitlines())


def _extract_html(data: bytes, stem: str) -> Extracted:
    html = decode_text(data)
    tree = trafilatura.load_html(html)  # None for an empty or unparseable page
    if tree is None:
        raise Skip("no HTML content")
    title = tree.xpath("string(//head/title)").strip()
    text = trafilatura.extract(html, include_comments=False, include_tables=True)
    extractor = "trafilatura"
    if not text or not text.strip():
        text, extractor = _html_plain_text(tree), "plain"
    return Extracted(text, title or stem, {"format": "html", "extractor": extractor})


def _extract_pdf(data: bytes, stem: str) -> Extracted:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):  # owner-only encryption opens with an empty password
            raise Skip("encrypted PDF (needs a password)")
        pages = [page.extract_text() or "" for page in reader.pages]
    except Skip:
        raise
    except Exception as e:  # pypdf raises many exception types on damaged files; one bad PDF must not stop a run
        raise Skip(f"unreadable PDF ({type(e).__name__}: {e})") from None
    if not any(p.strip() for p in pages):
        raise Skip("PDF has no text layer (scanned? run OCR first)")
    return Extracted("\n\n".join(pages), stem, {"format": "pdf", "pages": str(len(pages))})


FORMAT_BY_EXTENSION = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}

EXTRACTORS: dict[str, Callable[[bytes, str], Extracted]] = {
    "txt": _extract_txt,
    "md": _extract_markdown,
    "html": _extract_html,
    "pdf": _extract_pdf,
}
