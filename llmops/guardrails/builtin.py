"""The built-in checks: PII, blocked terms and topics, prompt-injection markers, maximum lengths.

Patterns are compiled once per config (`BuiltinChecks.from_config`) and run on NFKC-folded text; redactions are
applied to the original text. `scan` is the one matcher of whole checks and of the stream guard: on a text that may
still grow it also returns the settled point, before which no match can appear, vanish or change any more.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import regex

from llmops.config import GuardrailsConfig
from llmops.guardrails.decision import GuardDecision, GuardStage
from llmops.guardrails.patterns import INJECTION_MARKERS, PII_PATTERNS, PatternSpec, term_pattern
from llmops.guardrails.textfold import FoldedText, fold

__all__ = ["BuiltinChecks", "Hit", "Rule", "Scan", "decisions_for", "first_refusal", "redact", "resolve", "scan"]

RuleAction = Literal["redact", "refuse"]


@dataclass(frozen=True, eq=False)
class Rule:
    policy: str  # the decision's policy: pii, blocked_terms, a topic's name, prompt_injection
    label: str  # the decision's detail: the PII kind, "term", the marker's name
    action: RuleAction
    pattern: regex.Pattern
    body: frozenset[str] | None
    max_len: int | None
    valid: Callable[[str], bool] | None = None

    @classmethod
    def compile(cls, policy: str, label: str, action: RuleAction, spec: PatternSpec) -> "Rule":
        return cls(policy, label, action, regex.compile(spec.source, spec.flags), spec.body, spec.max_len, spec.valid)

    @property
    def replacement(self) -> str:
        return f"[{self.label.upper()}]"


@dataclass(frozen=True)
class Hit:
    rule: Rule
    start: int  # folded-text indexes
    end: int


@dataclass(frozen=True)
class Scan:
    hits: tuple[Hit, ...]  # valid matches before `settled`, overlapping redactions resolved, in text order
    settled: int  # folded index: nothing before it can change however the text goes on


def settled(rule: Rule, match, text: str) -> bool:
    """Can more text change this match? Not when the text goes past its longest possible extent, nor when a
    character the pattern cannot consume follows it (a lookahead reads at most that far)."""
    if match.partial:
        return False
    if rule.max_len is not None and len(text) > match.start() + rule.max_len:
        return True
    if rule.body is None:
        return False
    return any(c not in rule.body for c in text[match.end():])


def scan(rules: Sequence[Rule], text: str, pos: int = 0, *, final: bool = True) -> Scan:
    """Matches of `rules` in `text[pos:]` (earlier characters serve lookbehinds). `final=False`: the text may grow;
    matches that could still change, and everything after the first of them, are left for a later scan."""
    limit = len(text)
    hits: list[Hit] = []
    spans: list[tuple[int, int]] = []  # every settled match, valid or not: later scans must not start inside one
    for rule in rules:
        for m in rule.pattern.finditer(text, pos, partial=not final):
            if not final and not settled(rule, m, text):
                limit = min(limit, m.start())
                break
            spans.append((m.start(), m.end()))
            if rule.valid is None or rule.valid(m.group()):
                hits.append(Hit(rule, m.start(), m.end()))
    moved = True
    while moved:  # a match that straddles the limit moves it back to the match's start
        moved = False
        for start, end in spans:
            if start < limit < end:
                limit, moved = start, True
    return Scan(resolve(h for h in hits if h.start < limit), limit)


def resolve(hits) -> tuple[Hit, ...]:
    """Every refusing hit, and the redacting ones that do not overlap an earlier (or, at the same start, longer)
    redaction, in text order."""
    kept: list[Hit] = []
    redacted_to = 0
    for hit in sorted(hits, key=lambda h: (h.start, -h.end)):
        if hit.rule.action == "redact":
            if hit.start < redacted_to:
                continue
            redacted_to = hit.end
        kept.append(hit)
    return tuple(kept)


def redact(original: str, folded: FoldedText, hits: Sequence[Hit], end: int | None = None) -> str:
    """`original` up to folded index `end` with each redacting hit (`resolve`d) replaced by its placeholder."""
    stop = len(original) if end is None else folded.origin(end)
    out, cursor = [], 0
    for hit in hits:
        if hit.rule.action != "redact":
            continue
        out.append(original[cursor:folded.origin(hit.start)])
        out.append(hit.rule.replacement)
        cursor = folded.origin_end(hit.end)
    out.append(original[cursor:stop])
    return "".join(out)


def decisions_for(hits: Sequence[Hit], stage: GuardStage) -> tuple[GuardDecision, ...]:
    """One decision per (policy, action), its detail counting what fired by label ("email x2, phone x1")."""
    counts: dict[tuple[str, RuleAction], Counter] = {}
    for hit in hits:
        counts.setdefault((hit.rule.policy, hit.rule.action), Counter())[hit.rule.label] += 1
    return tuple(
        GuardDecision(policy, stage, action, ", ".join(f"{label} x{n}" for label, n in sorted(labels.items())))
        for (policy, action), labels in counts.items()
    )


def _fold_text(text: str) -> str:
    return fold(text).text


class BuiltinChecks:
    """The compiled rules of each stage, in the order a refusal is looked for."""

    def __init__(self, cfg: GuardrailsConfig, rules: dict[GuardStage, tuple[Rule, ...]]):
        self.cfg = cfg
        self.rules = rules

    @classmethod
    def from_config(cls, cfg: GuardrailsConfig) -> "BuiltinChecks":
        rules: dict[GuardStage, list[Rule]] = {"input": [], "output": []}
        if cfg.prompt_injection.enabled:
            markers = dict(INJECTION_MARKERS)
            for name, source in markers.items():
                spec = PatternSpec(source, None, None, flags=regex.IGNORECASE)
                rules["input"].append(Rule.compile("prompt_injection", name, "refuse", spec))
            if cfg.prompt_injection.extra_markers:
                spec = term_pattern(cfg.prompt_injection.extra_markers, _fold_text)
                rules["input"].append(Rule.compile("prompt_injection", "custom_marker", "refuse", spec))
        lists = [("blocked_terms", cfg.blocked_terms), *sorted(cfg.blocked_topics.items())]
        for policy, terms in lists:
            if terms.terms:
                spec = term_pattern(terms.terms, _fold_text)
                for stage in terms.stages:
                    rules[stage].append(Rule.compile(policy, "term", "refuse", spec))
        for stage, action in (("input", cfg.pii.input_action), ("output", cfg.pii.output_action)):
            if action != "off":
                rules[stage].extend(Rule.compile("pii", kind, action, PII_PATTERNS[kind]) for kind in cfg.pii.kinds)
        return cls(cfg, {stage: tuple(r) for stage, r in rules.items()})

    def max_chars(self, stage: GuardStage) -> int | None:
        return self.cfg.max_input_chars if stage == "input" else self.cfg.max_output_chars

    def too_long(self, length: int, stage: GuardStage) -> GuardDecision | None:
        limit = self.max_chars(stage)
        if limit is None or length <= limit:
            return None
        return GuardDecision(f"max_{stage}_chars", stage, "refuse", f"{length} chars > {limit}")

    def check(self, text: str, stage: GuardStage) -> tuple[str, tuple[GuardDecision, ...], GuardDecision | None]:
        """(redacted text, decisions, refusal) of a whole text."""
        refusal = self.too_long(len(text), stage)
        if refusal is not None:
            return text, (refusal,), refusal
        folded = fold(text)
        hits = scan(self.rules[stage], folded.text).hits
        decisions = decisions_for(hits, stage)
        refusal = first_refusal(decisions)
        return (text if refusal else redact(text, folded, hits)), decisions, refusal


def first_refusal(decisions: Sequence[GuardDecision]) -> GuardDecision | None:
    return next((d for d in decisions if d.action == "refuse"), None)
