"""Bytes to text, and the one text normalization every document goes through."""

from __future__ import annotations

import codecs
import re
import unicodedata

from llmops.corpus.ingest.report import Skip

__all__ = ["decode_text", "non_space_chars", "normalize_inline", "normalize_text"]

_BLANK_RUNS = re.compile(r"\n{3,}")
_SPACES = re.compile(r"\s+")


def decode_text(data: bytes) -> str:
    """Decode UTF-8 (BOM optional) or BOM-marked UTF-16; anything else is skipped, never guessed."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise Skip(f"not valid UTF-16 at byte {e.start}") from None
    else:
        if b"\x00" in data:
            raise Skip("binary file (contains NUL bytes)")
        try:
            text = data.decode("utf-8")  # a BOM decodes to U+FEFF, keeping error offsets file-relative
        except UnicodeDecodeError as e:
            raise Skip(
                f"not valid UTF-8 at byte {e.start} (convert the file to UTF-8; other encodings are not guessed)"
            ) from None
    if "\x00" in text:
        raise Skip("binary file (contains NUL characters)")
    return text.removeprefix("\ufeff")


def normalize_text(text: str) -> str:
    """NFC (not NFKC: full-width characters stay as users type them), `\\n` line ends, no trailing spaces,
    runs of blank lines collapsed to one, no leading or trailing whitespace."""
    text = unicodedata.normalize("NFC", text)
    # splitlines also breaks on \r, \r\n, \f, \v, U+2028 and friends, so every line end becomes \n
    text = "\n".join(line.rstrip() for line in text.splitlines())
    return _BLANK_RUNS.sub("\n\n", text).strip()


def normalize_inline(text: str) -> str:
    """One line (titles, questions): NFC, every whitespace run a single space."""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", text)).strip()


def non_space_chars(text: str) -> int:
    return len("".join(text.split()))
