"""Width- and compatibility-folding (NFKC) that remembers where each folded character came from, so matches found
in the folded text (full-width digits, half-width kana, ligatures) are redacted in the original."""

from __future__ import annotations

import unicodedata

__all__ = ["FoldedText", "fold"]

_CACHE: dict[str, str] = {}
_HALF_WIDTH_VOICING = "\uff9e\uff9f"  # half-width (han)dakuten: NFKC makes them combining marks


class FoldedText:
    """`text` folded per character; `origin(i)` is the original index of folded character i."""

    __slots__ = ("text", "_origins", "_source_len")

    def __init__(self, text: str, origins: list[int] | None, source_len: int):
        self.text = text
        self._origins = origins  # None: folding changed nothing, indexes are the same
        self._source_len = source_len

    def origin(self, i: int) -> int:
        """Original index where folded index `i` starts (`len(text)` maps to the original's end)."""
        if self._origins is None:
            return i
        return self._origins[i] if i < len(self._origins) else self._source_len

    def origin_end(self, end: int) -> int:
        """Original end index of a folded span ending at `end` (the whole original character it ends in)."""
        if self._origins is None or end == 0:
            return end
        return self._origins[end - 1] + 1


def fold(text: str) -> FoldedText:
    """NFKC per character: context-free, so a prefix folds to a prefix of the whole (what the stream guard needs).
    The one exception: a half-width voicing mark joins the kana before it."""
    if text.isascii():
        return FoldedText(text, None, len(text))
    parts: list[str] = []
    origins: list[int] = []
    changed = False
    for i, ch in enumerate(text):
        if ch.isascii():
            parts.append(ch)
            origins.append(i)
            continue
        folded = _CACHE.get(ch)
        if folded is None:
            folded = _CACHE.setdefault(ch, unicodedata.normalize("NFKC", ch))
        changed = changed or folded != ch
        if ch in _HALF_WIDTH_VOICING and parts:  # ｶﾞ -> ガ, as NFKC of the whole text would compose it
            composed = unicodedata.normalize("NFC", parts[-1] + folded)
            if len(composed) == 1:
                parts[-1] = composed
                continue
        parts.append(folded)
        origins.extend([i] * len(folded))
    if not changed:
        return FoldedText(text, None, len(text))
    return FoldedText("".join(parts), origins, len(text))
