"""The stream guard: matches split across deltas are caught and never sent raw, a refusal fires mid-stream, and the
text sent equals the whole-text check's for any chunking (hypothesis)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from llmops.config import GuardrailsConfig, TermListConfig
from llmops.guardrails.pipeline import Guardrails

GUARD = Guardrails.from_config(
    GuardrailsConfig(blocked_terms=TermListConfig(terms=("bomb", "nerve agent", "爆弾"), stages=("output",)))
)
EMAILS = ("taro.yamada@example.co.jp", "a@b.io", "x_y+z@mail.example.com")
CARDS = ("4111 1111 1111 1111", "5500-0000-0000-0004", "4012888888881881")


def whole(text: str) -> str:
    return asyncio.run(GUARD.check_output(text, "en")).text


def streamed(deltas: list[str]) -> tuple[list[str], object]:
    guard = GUARD.output_stream("en")
    sent = []
    for delta in deltas:
        check = guard.feed(delta)
        sent.append(check.emit)
        if check.refusal is not None:
            return sent, check.refusal
    final = guard.finish()
    sent.append(final.emit)
    return sent, final.refusal


def test_an_email_split_across_deltas_is_never_sent_raw():
    deltas = ["Write to taro", ".yamada@exa", "mple.co", ".jp for ", "details."]
    sent, refusal = streamed(deltas)
    assert refusal is None
    assert "".join(sent) == "Write to [EMAIL] for details."
    assert not any("taro" in s or "example" in s for s in sent)
    assert sent[0] == "Write to "  # only the word that could become an email was held back


def test_text_is_sent_as_it_goes():
    sent, _ = streamed(["The refund ", "takes five ", "business days ", "after approval."])
    assert sent[:3] == ["The refund ", "takes five ", "business days "]


def test_a_phone_number_is_held_until_its_last_digit_is_known():
    guard = GUARD.output_stream("en")
    assert guard.feed("Call 03-1234-567").emit == "Call "
    assert guard.feed("8").emit == ""  # a ninth digit would make it something else
    assert guard.feed(" today").emit == "[PHONE] "
    assert guard.finish().emit == "today"


def test_a_refusal_fires_mid_stream():
    guard = GUARD.output_stream("en")
    assert guard.feed("Here is how to make a bo").emit == "Here is how to make a "
    check = guard.feed("mb. First")
    assert check.refusal is not None and check.refusal.policy == "blocked_terms" and check.emit == ""
    assert guard.feed(" more text").emit == ""  # nothing after a refusal


def test_the_output_limit_refuses_mid_stream():
    guard = Guardrails.from_config(GuardrailsConfig(max_output_chars=10)).output_stream("en")
    assert guard.feed("12345 ").refusal is None
    assert guard.feed("6789 more").refusal.policy == "max_output_chars"


def test_finish_reports_each_policy_once():
    guard = GUARD.output_stream("en")
    for delta in ["a@b.io and ", "c@d.io, ", "call 090-1234-5678 ok"]:
        assert guard.feed(delta).decisions == ()
    (decision,) = guard.finish().decisions
    assert (decision.policy, decision.action, decision.detail) == ("pii", "redact", "email x2, phone x1")


# Text like answers: words, numbers, punctuation, Japanese, full-width digits, and the PII the policies look for.
_PIECES = st.one_of(
    st.sampled_from(EMAILS + CARDS + ("090-1234-5678", "+81 3-1234-5678", "192.168.0.1", "1234 5678 9018")),
    st.sampled_from(("the", "refund", "Bomb", "bombastic", "爆弾", "返金", "は", "です", "2024-01-15", "12,345", "３")),
    st.text(alphabet="ab@.-+_ 0123456789()\n、。，ｘ０１", min_size=1, max_size=6),
)
_TEXTS = st.lists(_PIECES, min_size=1, max_size=12).map(lambda parts: "".join(parts))


@st.composite
def chunked(draw) -> tuple[str, list[str]]:
    text = draw(_TEXTS)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=10)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in zip(bounds, bounds[1:])]


@settings(max_examples=400, deadline=None)
@given(chunked())
def test_streamed_text_equals_the_whole_check_for_any_chunking(case):
    text, deltas = case
    expected = asyncio.run(GUARD.check_output(text, "en"))
    sent, refusal = streamed(deltas)
    if expected.refusal is not None:
        assert refusal is not None and refusal.policy == expected.refusal.policy
        assert expected.text.startswith("".join(sent)) or "[" in "".join(sent)
    else:
        assert refusal is None
        assert "".join(sent) == expected.text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(EMAILS + CARDS), st.text(max_size=8)), min_size=1, max_size=8))
def test_redaction_never_leaves_an_email_or_card_number(parts):
    text = " ".join(parts)
    redacted = whole(text)
    for secret in EMAILS + CARDS:
        if secret in text:
            assert secret not in redacted
