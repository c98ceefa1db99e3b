"""Language-aware tokenization for the n-gram metrics (BLEU, ROUGE).

Both libraries assume space-separated words: sacrebleu's default `13a` keeps a Japanese sentence as one token and
rouge-score deletes everything outside [a-z0-9], so identical Japanese strings score 0. The sample's `lang` picks
the tokenizer instead:

| lang         | BLEU (sacrebleu)              | ROUGE (here)                                              |
|--------------|-------------------------------|-----------------------------------------------------------|
| ja           | `ja-mecab` (else `char`)      | MeCab (fugashi + unidic-lite) words, punctuation dropped  |
| zh           | `zh`                          | CJK characters, words elsewhere                           |
| ko           | `ko-mecab` (else `char`)      | words                                                     |
| anything else| `13a`                         | words: NFKC, lowercase, runs of letters and digits        |

For ASCII text the ROUGE word tokenizer gives exactly rouge-score's own tokens (lowercase, [a-z0-9] runs), but it
keeps accented and other non-ASCII letters instead of splitting words at them.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache

__all__ = ["RougeTokenizer", "bleu_tokenizer", "rouge_tokens"]

_WORD = re.compile(r"[^\W_]+")
_CJK_CHAR = re.compile(r"[\u3005-\u3007\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# UniDic pos1 tags that are not words for overlap scoring: punctuation, symbols, whitespace.
_MECAB_SKIP_POS = frozenset({"補助記号", "記号", "空白"})

# Preferred sacrebleu tokenizers per language, best first; the last one always works.
_BLEU_TOKENIZERS: dict[str, tuple[str, ...]] = {
    "ja": ("ja-mecab", "char"),
    "zh": ("zh",),
    "ko": ("ko-mecab", "char"),
}
_BLEU_DEFAULT = ("13a",)


@lru_cache(maxsize=None)
def bleu_tokenizer(lang: str) -> tuple[str, str | None]:
    """(sacrebleu tokenizer name, note) for `lang`; the note says why a fallback was taken (None otherwise)."""
    from sacrebleu.metrics.bleu import BLEU

    preferred = _BLEU_TOKENIZERS.get(lang, _BLEU_DEFAULT)
    errors = []
    for name in preferred:
        try:
            # Scoring once instantiates the tokenizer, MeCab dictionaries included.
            BLEU(tokenize=name, effective_order=True).sentence_score("a", ["a"])
        except Exception as e:  # ImportError or a missing dictionary: try the next one
            errors.append(f"{name}: {type(e).__name__}: {e}")
            continue
        note = None if not errors else f"{lang}: BLEU tokenizer {name!r} used ({'; '.join(errors)})"
        return name, note
    raise RuntimeError(f"no BLEU tokenizer works for {lang!r}: {'; '.join(errors)}")


_local = threading.local()


def _tagger():
    # One tagger per thread: loading the dictionary is slow and taggers are not documented as thread-safe.
    if not hasattr(_local, "tagger"):
        import fugashi

        _local.tagger = fugashi.Tagger()  # unidic-lite
    return _local.tagger


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _mecab(text: str) -> list[str]:
    return [w.surface for w in _tagger()(text) if w.feature.pos1 not in _MECAB_SKIP_POS and w.surface.strip()]


def _cjk_chars(text: str) -> list[str]:
    tokens, pos = [], 0
    for m in _CJK_CHAR.finditer(text):
        tokens += _words(text[pos : m.start()])
        tokens.append(m.group())
        pos = m.end()
    return tokens + _words(text[pos:])


def rouge_tokens(text: str, lang: str) -> list[str]:
    """ROUGE tokens of `text` for language `lang` (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).lower()
    if lang == "ja":
        return _mecab(text)
    if lang == "zh":
        return _cjk_chars(text)
    return _words(text)


class RougeTokenizer:
    """The `tokenize(text)` object rouge-score's RougeScorer accepts, for one language."""

    def __init__(self, lang: str):
        self.lang = lang

    def tokenize(self, text: str) -> list[str]:
        return rouge_tokens(text, self.lang)
