"""The built-in patterns, written for NFKC-folded text (full-width digits and letters are already ASCII there).

Each pattern comes with the characters it can consume and its longest match: the stream guard uses both to decide
when a match at the end of the text so far can no longer grow or vanish (`builtin.settled`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Callable

import regex

__all__ = ["INJECTION_MARKERS", "PII_PATTERNS", "PatternSpec", "luhn_ok", "my_number_ok", "term_pattern"]

_DIGITS = frozenset(string.digits)
_DASHES = "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u30fc"  # hyphens, dashes, minus, katakana long vowel mark
_SEP = f"[{regex.escape(_DASHES)}. ]"  # one separator inside a phone number
_LATIN_WORD = r"[0-9A-Za-z\u00C0-\u024F]"  # whole-word boundaries for Latin terms (\w would include kana and kanji)


@dataclass(frozen=True)
class PatternSpec:
    source: str
    body: frozenset[str] | None  # every character the pattern can consume; None = any
    max_len: int | None  # longest possible match; None = unbounded
    valid: Callable[[str], bool] | None = None  # a check on the matched text (check digits, digit counts)
    flags: int = 0


def _digit_count(low: int, high: int) -> Callable[[str], bool]:
    def valid(text: str) -> bool:
        return low <= sum(c in _DIGITS for c in text) <= high

    return valid


def luhn_ok(text: str) -> bool:
    """The Luhn checksum over the digits of `text` (payment card numbers)."""
    digits = [int(c) for c in text if c in _DIGITS]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return len(digits) >= 13 and total % 10 == 0


def my_number_ok(text: str) -> bool:
    """The check digit of a Japanese individual number (My Number): 12 digits, the last one checks the other 11."""
    digits = [int(c) for c in text if c in _DIGITS]
    if len(digits) != 12:
        return False
    body = digits[:11][::-1]  # P1 is the digit next to the check digit
    total = sum(p * (n + 1 if n <= 6 else n - 5) for n, p in enumerate(body, start=1))
    remainder = total % 11
    return digits[11] == (0 if remainder <= 1 else 11 - remainder)


_EMAIL_CHARS = frozenset(string.ascii_letters + string.digits + "._%+-@")
_PHONE_CHARS = frozenset(string.digits + _DASHES + ". ()+")
_CARD_CHARS = frozenset(string.digits + " -")
_WHITESPACE = frozenset(c for c in map(chr, range(0x3100)) if regex.match(r"\s", c))
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"

PII_PATTERNS: dict[str, PatternSpec] = {
    "email": PatternSpec(
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9][A-Za-z0-9-]{0,62}(?:\.[A-Za-z0-9-]{1,63}){0,8}"
        r"\.[A-Za-z]{2,24}(?![A-Za-z0-9-])",
        _EMAIL_CHARS, 64 + 1 + 63 + 8 * 64 + 25,
    ),
    # Japanese (0 + area/mobile code, 10-11 digits), international (+CC, 8-15 digits), North American (a separator
    # before the last four digits, so plain numbers and dates do not match).
    "phone": PatternSpec(
        rf"(?<![0-9+{regex.escape(_DASHES)}])(?:"
        rf"\(?0[0-9]{{1,4}}\)?{_SEP}?[0-9]{{1,4}}{_SEP}?[0-9]{{3,4}}"
        rf"|\+[0-9]{{1,3}}{_SEP}?\(?[0-9]{{1,4}}\)?(?:{_SEP}?[0-9]{{1,4}}){{1,4}}"
        rf"|\(?[2-9][0-9]{{2}}\)?{_SEP}?[2-9][0-9]{{2}}{_SEP}[0-9]{{4}}"
        rf")(?![0-9])",
        _PHONE_CHARS, 32,
        valid=lambda t: _digit_count(10, 11)(t) if t.lstrip("(").startswith("0") else _digit_count(8, 15)(t),
    ),
    # 16 digits in fours, Amex's 4-6-5, or 13-19 digits in one run; separators are single spaces or hyphens.
    "credit_card": PatternSpec(
        r"(?<![0-9])(?:[0-9]{4}(?:[ -]?[0-9]{4}){3}|3[47][0-9]{2}[ -]?[0-9]{6}[ -]?[0-9]{5}|[0-9]{13,19})(?![0-9])",
        _CARD_CHARS, 24, valid=luhn_ok,
    ),
    "ipv4": PatternSpec(
        rf"(?<![0-9.])(?:{_OCTET}\.){{3}}{_OCTET}(?![0-9]|\.[0-9])", frozenset(string.digits + "."), 16
    ),
    "my_number": PatternSpec(
        r"(?<![0-9][ -]?)[0-9]{4}[ -]?[0-9]{4}[ -]?[0-9]{4}(?![ -]?[0-9])", _CARD_CHARS, 15, valid=my_number_ok
    ),
}

# Prompt-injection markers, English and Japanese; the key is the decision's detail. Input only.
_W = r"\s+"
INJECTION_MARKERS: dict[str, str] = {
    "ignore_instructions": (
        rf"\b(?:ignore|disregard|forget|override|bypass){_W}(?:(?:all|any|the|your|my|these|those|of){_W})*"
        rf"(?:previous|prior|above|earlier|preceding|foregoing|original|initial|system){_W}"
        r"(?:instructions?|prompts?|rules|directions|directives|messages|guidelines|context)\b"
    ),
    "system_prompt": (
        rf"\bsystem{_W}prompts?\b|\b(?:reveal|show|print|repeat|output|display|leak){_W}(?:me{_W})?(?:your|the)"
        rf"{_W}(?:(?:hidden|initial|original|secret){_W})?(?:instructions|prompt)\b"
    ),
    "role_override": (
        rf"\byou{_W}are{_W}now{_W}(?:a|an|in|dan|my)\b|\bdeveloper{_W}mode\b|\bjailbreak|\bdo{_W}anything{_W}now\b"
    ),
    "role_tag": (
        r"<\|?(?:im_start|im_end|system|assistant|user|endoftext|start_header_id|end_header_id|eot_id)\|?>"
        r"|\[/?INST\]|<</?SYS>>|</?(?:system|assistant|context)\b[^>]{0,200}>"
        r"|(?:^|\n)[ \t]*#{0,3}[ \t]*(?:system|assistant)[ \t]*:"
    ),
    "ignore_instructions_ja": (
        r"(?:以前|前|上記|これまで|今まで|先ほど|最初|元)の(?:すべての|全ての|全部の)?"
        r"(?:指示|命令|ルール|制約|設定|プロンプト)(?:を|は)?(?:すべて|全て)?(?:無視|忘れ|破棄)"
        r"|(?:指示|命令|ルール)を(?:すべて|全て)?無視"
    ),
    "system_prompt_ja": r"システム\s*プロンプト|(?:隠された|内部の|初期の|秘密の)(?:指示|プロンプト)",
    "role_override_ja": r"開発者モード|制限を(?:解除|無視)|脱獄",
}


def term_pattern(terms: tuple[str, ...], fold: Callable[[str], str]) -> PatternSpec:
    """One alternation over `terms` (folded, longest first): case-insensitive, whitespace-tolerant, and whole words
    where a term starts or ends with a Latin letter or digit."""
    alternatives, body, longest = [], set(), 0
    for term in sorted({fold(t).strip() for t in terms}, key=len, reverse=True):
        words = term.split()
        source = r"\s{1,8}".join(regex.escape(w) for w in words)
        if regex.match(_LATIN_WORD, term[0]):
            source = rf"(?<!{_LATIN_WORD}){source}"
        if regex.match(_LATIN_WORD, term[-1]):
            source = rf"{source}(?!{_LATIN_WORD})"
        alternatives.append(source)
        for ch in "".join(words):
            body.update((ch, ch.lower(), ch.upper(), ch.casefold()))
        longest = max(longest, sum(map(len, words)) + 8 * (len(words) - 1))
    body.update(_WHITESPACE)
    return PatternSpec("|".join(alternatives), frozenset(body), longest, flags=regex.IGNORECASE)
