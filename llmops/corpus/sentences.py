"""Sentence segmentation for chunking: English-style punctuation, CJK punctuation, paragraphs and list lines.

Spans are character offsets into the original string, so chunks can be cut from the document text exactly.
Rule-based on purpose: chunking needs boundaries that are good enough and fast on 100k-character documents,
not a linguistic parser.
"""

from __future__ import annotations

import re

__all__ = ["Span", "split_sentences"]

Span = tuple[int, int, bool]  # (start, end, paragraph_start): text[start:end] is one sentence, without outer space

# A blank line (only horizontal space on it) ends a paragraph.
_BLANK_LINES = re.compile(r"\n(?:[^\S\n]*\n)+")
_LINE = re.compile(r"[^\n]+")
# Lines that stand alone even inside a paragraph: bullets, markdown headings, numbered items ("1. ", "2) ").
_ITEM_LINE = re.compile(r"[^\S\n]*(?:[-*•+]\s|#{1,6}\s|\d{1,3}[.)](?:\s|$))")
_HEADING_LINE = re.compile(r"[^\S\n]*#{1,6}\s")

_CLOSERS = "\"'”’»)\\]」』）】〕〉》"
# A run of terminators plus the quotes/brackets that close the sentence they end ("。」" ends inside the quote).
_TERMINATOR = re.compile(rf"(?:[.!?]+|[。！？．]+)[{_CLOSERS}]*")
_CJK_TERMINATORS = frozenset("。！？．")
_QUOTATIVE = frozenset("とっ")  # particles that continue a sentence after a quote: と, って

# Words that end with "." without ending a sentence (compared lowercased, without the final dot). Unknown
# abbreviations are mostly caught by the lowercase rule in `_is_ascii_boundary` instead.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs fig figs eq vol pp ca approx inc ltd co corp dept gen gov sen rep rev "
    "jan feb mar apr jun jul aug sep sept oct nov dec al".split()
)
_DOTTED = re.compile(r"(?:[a-z]\.)+[a-z]|[a-z]")  # e.g, i.e, u.s, a.m, and single-letter initials (J. K. Rowling)


def split_sentences(text: str) -> list[Span]:
    """Sentence spans covering every non-space character of `text`, in order.

    Boundaries: after . ! ? followed by space or the end (not after abbreviations, initials or before a lowercase
    word; "3.14" never breaks because no space follows the dot); after 。！？． including closing quotes or
    brackets, with no space needed; at blank lines (the next sentence gets paragraph_start=True); and at single
    newlines next to list items or headings. Other single newlines are line wrapping and count as spaces. A
    markdown heading also starts a paragraph: it opens a section.
    """
    spans: list[Span] = []
    for para_start, para_end in _paragraphs(text):
        new_paragraph = True
        for block_start, block_end, heading in _blocks(text, para_start, para_end):
            for i, (start, end) in enumerate(_sentences(text, block_start, block_end)):
                spans.append((start, end, new_paragraph or (heading and i == 0)))
                new_paragraph = False
    return spans


def _paragraphs(text: str) -> list[tuple[int, int]]:
    bounds, pos = [], 0
    for m in _BLANK_LINES.finditer(text):
        bounds.append((pos, m.start()))
        pos = m.end()
    bounds.append((pos, len(text)))
    return [(s, e) for s, e in bounds if text[s:e].strip()]


def _blocks(text: str, start: int, end: int) -> list[tuple[int, int, bool]]:
    """Runs of lines within a paragraph that read as continuous prose; item and heading lines stand alone."""
    blocks: list[tuple[int, int, bool]] = []
    prev_item = False
    for m in _LINE.finditer(text, start, end):
        item = bool(_ITEM_LINE.match(text, m.start(), m.end()))
        if not blocks or item or prev_item:
            blocks.append((m.start(), m.end(), bool(_HEADING_LINE.match(text, m.start(), m.end()))))
        else:
            blocks[-1] = (blocks[-1][0], m.end(), blocks[-1][2])
        prev_item = item
    return blocks


def _sentences(text: str, start: int, end: int) -> list[tuple[int, int]]:
    out, pos = [], start
    for m in _TERMINATOR.finditer(text, start, end):
        if _is_boundary(text, m, end):
            out.append((pos, m.end()))
            pos = m.end()
    out.append((pos, end))
    return [span for span in (_strip(text, s, e) for s, e in out) if span[0] < span[1]]


def _is_boundary(text: str, m: re.Match, end: int) -> bool:
    after = text[m.end()] if m.end() < end else ""
    if text[m.start()] in _CJK_TERMINATORS:
        if text[m.end() - 1] in _CLOSERS and after in _QUOTATIVE:
            return False  # 「すごい！」と言った: the quote is part of the sentence that goes on
        # Full-width "．" is also a decimal point between full-width digits ("３．１４").
        return not (text[m.start()] == "．" and after.isdigit())
    return _is_ascii_boundary(text, m, after, end)


def _is_ascii_boundary(text: str, m: re.Match, after: str, end: int) -> bool:
    if after and not after.isspace():
        return False  # "3.14", "example.com", "Yahoo!Japan"
    nxt = m.end()
    while nxt < end and text[nxt].isspace():
        nxt += 1
    if nxt < end and text[nxt].islower():
        return False  # sentences rarely start lowercase; this catches abbreviations not in the list
    if text[m.start()] != "." or m.end() - m.start() > 1:
        return True  # "!", "?", "..." and runs with closers are not abbreviation dots
    word_start = m.start()
    while word_start > 0 and not text[word_start - 1].isspace() and text[word_start - 1] not in "(\"'“‘[":
        word_start -= 1
    word = text[word_start : m.start()].lower()
    return not (word in _ABBREVIATIONS or _DOTTED.fullmatch(word))


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
