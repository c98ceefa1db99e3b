"""The review file: the production questions worth a person's look, one JSON object a line.

`select_for_review` picks, from a window of the request log, every answered request with negative feedback, a
"not in the documents" refusal, or a best dense match below a relevance threshold; identical questions (same
normalized text) become one row, the latest, with how many others it stands for. The reviewer fills `reference`
(the correct answer) or sets `irrelevant: true` (out of scope: it becomes an unanswerable eval question), or leaves
both empty (skipped); `llmops feedback merge` (`llmops.feedback.merge`) takes it from there.
"""

from __future__ import annotations

import datetime as dt
import json
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmops.errors import LLMOpsError
from llmops.requestlog.reader import LogWindow
from llmops.requestlog.record import LoggedSource, RequestRecord
from llmops.storage import atomic_write_bytes

__all__ = [
    "REVIEW_SCHEMA_VERSION",
    "Reason",
    "ReviewExport",
    "ReviewFileError",
    "ReviewRow",
    "normalize_question",
    "read_review_file",
    "select_for_review",
    "write_review_file",
]

REVIEW_SCHEMA_VERSION = 1

Reason = Literal["negative_feedback", "not_in_documents", "low_relevance"]
REASONS: tuple[Reason, ...] = ("negative_feedback", "not_in_documents", "low_relevance")


class ReviewFileError(LLMOpsError):
    """A review file that cannot be merged (names the file, the row and the field at fault)."""


def normalize_question(text: str) -> str:
    """What makes two questions the same one: Unicode NFKC, case folded, runs of whitespace as one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


class ReviewRow(BaseModel):
    """One production question to review: what was asked and answered, why it was selected, and the reviewer's
    fields (`reference`, `irrelevant`, empty until reviewed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    schema_version: Literal[1] = REVIEW_SCHEMA_VERSION
    response_id: str = Field(min_length=1)
    time: str = Field(description="when it was asked (UTC, ISO 8601)")
    release: str
    lang: str
    question: str = Field(min_length=1)
    answer: str
    sources: tuple[LoggedSource, ...] = ()
    relevance: float | None = None
    threshold: float | None = Field(default=None, description="the relevance threshold it was selected against")
    rating: Literal["up", "down"] | None = None
    comment: str | None = None
    reasons: tuple[Reason, ...] = Field(min_length=1)
    duplicates: int = Field(default=0, ge=0, description="other requests with the same question, left out")
    # the reviewer's fields
    reference: str | None = Field(default=None, description="the correct answer: an answerable eval question")
    irrelevant: bool | None = Field(default=None, description="true: out of scope, an unanswerable eval question")
    reviewed_at: str | None = Field(default=None, description="optional; the merge time when empty")

    @property
    def review(self) -> Literal["reference", "irrelevant"] | None:
        """What the reviewer decided (None: skipped). Both fields set is refused when the file is read."""
        if self.irrelevant:
            return "irrelevant"
        if self.reference is not None and self.reference.strip():
            return "reference"
        return None


@dataclass
class ReviewExport:
    rows: list[ReviewRow]  # one per distinct question, oldest first
    requests: int  # requests in the window
    selected: int  # requests selected, duplicates included
    reasons: Counter = field(default_factory=Counter)  # reason -> rows (a row may have several)
    already_known: int = 0  # selected questions left out: already in the eval set or the fine-tune data

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.rows)


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _reasons(record: RequestRecord, rating: str | None, threshold: float | None) -> list[Reason]:
    reasons: list[Reason] = []
    if rating == "down":
        reasons.append("negative_feedback")
    if record.refusal_kind == "not_in_documents":
        reasons.append("not_in_documents")
    if threshold is not None and record.relevance is not None and record.relevance < threshold:
        reasons.append("low_relevance")
    return reasons


def select_for_review(
    window: LogWindow,
    threshold_for: Callable[[RequestRecord], float | None],
    known: Collection[str] = (),
) -> ReviewExport:
    """The window's requests with negative feedback, a "not in the documents" refusal or a relevance below
    `threshold_for(record)` (None: no relevance check for it), one row per distinct question: the latest asked,
    its reasons those of all its requests, `duplicates` counting the others. Questions in `known` (normalized:
    already in the eval set or the fine-tune data) are left out and counted, so nobody reviews one twice."""
    groups: dict[str, list[tuple[RequestRecord, list[Reason], float | None]]] = {}
    for record in window.requests:
        threshold = threshold_for(record)
        reasons = _reasons(record, window.rating(record.response_id), threshold)
        if reasons:
            groups.setdefault(normalize_question(record.question), []).append((record, reasons, threshold))
    already_known = sum(1 for key in groups if key in known)
    groups = {key: group for key, group in groups.items() if key not in known}
    rows = []
    for group in groups.values():
        group.sort(key=lambda item: (item[0].time, item[0].response_id))
        record, _, threshold = group[-1]
        reasons = {reason for _, rs, _ in group for reason in rs}
        feedback = window.feedback.get(record.response_id)
        rows.append(ReviewRow(
            response_id=record.response_id,
            time=_iso(record.time),
            release=record.release,
            lang=record.lang,
            question=record.question,
            answer=record.answer,
            sources=record.sources,
            relevance=record.relevance,
            threshold=threshold,
            rating=feedback.rating if feedback else None,
            comment=feedback.comment if feedback else None,
            reasons=tuple(r for r in REASONS if r in reasons),
            duplicates=len(group) - 1,
        ))
    rows.sort(key=lambda r: (r.time, r.response_id))
    counts = Counter(reason for row in rows for reason in row.reasons)
    return ReviewExport(rows, requests=len(window.requests), selected=sum(len(g) for g in groups.values()),
                        reasons=counts, already_known=already_known)


def write_review_file(rows: list[ReviewRow], path: str | Path) -> None:
    """One row a line, the reviewer's fields present and empty (atomic: a reader never sees half a file)."""
    lines = [row.model_dump_json(exclude={"reviewed_at"}) for row in rows]
    atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode("utf-8"))


def read_review_file(path: str | Path) -> list[tuple[int, ReviewRow]]:
    """(line number, row) for every row; every problem of the file at once, each naming its line and field."""
    path = Path(path)
    if path.is_dir():
        raise ReviewFileError(f"review file {path} is a directory: pass the JSONL file `llmops feedback export` wrote")
    if not path.is_file():
        raise ReviewFileError(f"review file {path} does not exist: write one with `llmops feedback export`")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ReviewFileError(
            f"review file {path} is not UTF-8 text (byte {e.start}): save it as UTF-8 JSONL, one row a line"
        ) from None
    rows, problems = [], []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = ReviewRow.model_validate(json.loads(line))
        except json.JSONDecodeError as e:
            problems.append(f"line {n}: not valid JSON ({e.msg})")
            continue
        except ValidationError as e:
            for err in e.errors():
                where = ".".join(str(p) for p in err["loc"]) or "(row)"
                problems.append(f"line {n}: field `{where}`: {err['msg']}")
            continue
        if row.irrelevant and row.reference is not None and row.reference.strip():
            problems.append(f"line {n}: field `reference`: set together with `irrelevant: true`; keep one")
            continue
        rows.append((n, row))
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ReviewFileError(
            f"review file {path}: {len(problems)} problem(s), nothing was merged: {shown}. Fix those rows (a "
            "reviewed row sets `reference` to the correct answer or `irrelevant` to true) and run the merge again"
        )
    return rows
