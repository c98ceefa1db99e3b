"""Script-based language detection: enough to pick tokenizers and prompt templates, not a language identifier."""

from __future__ import annotations

import re

__all__ = ["CJK_LANGS", "detect_lang"]

CJK_LANGS = ("ja", "zh", "ko")

_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_LETTER = re.compile(r"\w")


def detect_lang(text: str, sample: int = 2000) -> str:
    """'ja' if kana appear, 'zh' for Han without kana, 'ko' for Hangul, else 'en' (any non-CJK text).

    Decided on the first `sample` characters: CJK text mixes in Latin words, so a share threshold of 20% of
    letters is used rather than a majority.
    """
    head = text[:sample]
    letters = len(_LETTER.findall(head)) or 1
    kana, han, hangul = (len(p.findall(head)) for p in (_KANA, _HAN, _HANGUL))
    if (kana + han) / letters >= 0.2 and kana > 0:
        return "ja"
    if hangul / letters >= 0.2:
        return "ko"
    if han / letters >= 0.2:
        return "zh"
    return "en"
