"""Reviewed production questions into the eval set and the fine-tune data.

Where a row goes:
- `irrelevant: true` -> the eval set, as an unanswerable question (`"answerable": false`): it measures abstention.
  Never fine-tune data (there is no answer to train on).
- `reference` -> an answerable question with that answer: the eval set, or the fine-tune data for a share
  `monitoring.feedback.finetune_fraction` of them (default 0: all go to the eval set). The split hashes the
  normalized question, so it is deterministic, independent of row order, and one question lands in one file only
  (the fine-tune stage refuses training questions that are also eval questions).
- neither -> skipped (not reviewed).

A question already in the eval set or the fine-tune data (same normalized text: NFKC, case folded, whitespace), or
twice in the review file, is skipped and reported; so a re-run merges nothing new (idempotent). Every row is
validated before anything is written, and each file is rewritten atomically as its old bytes plus the new lines:
existing lines, and so the ids of existing questions, do not change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llmops.config import PipelineConfig
from llmops.corpus.documents import QAExample
from llmops.corpus.qa import read_qa
from llmops.feedback.review import ReviewFileError, ReviewRow, normalize_question, read_review_file
from llmops.storage import atomic_write_bytes, is_remote

__all__ = ["MergePlan", "PlannedQuestion", "apply_merge", "plan_merge", "production_id", "to_finetune"]

Target = Literal["eval", "finetune"]


@dataclass(frozen=True)
class PlannedQuestion:
    line: int  # in the review file
    target: Target
    record: dict  # the JSONL object appended to the target file


@dataclass
class MergePlan:
    review_file: str
    eval_path: str
    finetune_path: str | None
    added: list[PlannedQuestion] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (review file line, why)
    unreviewed: int = 0

    def count(self, target: Target, answerable: bool | None = None) -> int:
        return sum(1 for q in self.added if q.target == target
                   and (answerable is None or q.record["answerable"] == answerable))


def production_id(response_id: str) -> str:
    """The id of a merged production question: stable, so the same answer merged twice is recognisable."""
    return f"production-{response_id}"


def to_finetune(question: str, fraction: float) -> bool:
    """Whether a reviewed question with a reference becomes fine-tune data: a hash of its normalized text below
    `fraction` (deterministic, the same on every machine and run)."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(normalize_question(question).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _jsonl_target(path: str | None, field_name: str) -> Path:
    if path is None:
        raise ReviewFileError(f"{field_name} is not set: name the JSONL file production questions are merged into")
    if is_remote(path):
        raise ReviewFileError(
            f"{field_name} {path} is not a local file: merge into a local checkout of it, then upload it"
        )
    target = Path(path)
    if target.suffix != ".jsonl":
        raise ReviewFileError(
            f"{field_name} {path} is not a JSONL file: a SQuAD .json set cannot be appended to. Point {field_name} "
            "at a JSONL set (question, answers; see llmops/corpus/qa.py), e.g. a new file beside it"
        )
    return target


def _existing(path: Path) -> list[QAExample]:
    return read_qa(path) if path.is_file() and path.stat().st_size > 0 else []


def known_questions(cfg: PipelineConfig) -> dict[str, str]:
    """The questions already in the eval set and the fine-tune data (local files that exist), by normalized text,
    each with where it is: what a merge skips, and what an export leaves out (no review of a question twice)."""
    known: dict[str, str] = {}
    for path, where in ((cfg.eval.qa_path, "the eval set"), (cfg.finetune.train_path, "the fine-tune data")):
        if path is None or is_remote(path) or Path(path).suffix not in (".json", ".jsonl"):
            continue
        for ex in _existing(Path(path)):
            known.setdefault(normalize_question(ex.question), f"already in {where} ({Path(path).name}, id {ex.qid})")
    return known


def plan_merge(cfg: PipelineConfig, review_file: str | Path, *, now: str | None = None) -> MergePlan:
    """What a merge would add and skip, and why; writes nothing. Raises `ReviewFileError` naming every bad row
    (line and field) or a target file that cannot take the rows."""
    rows = read_review_file(review_file)
    fraction = cfg.monitoring.feedback.finetune_fraction
    eval_path = _jsonl_target(cfg.eval.qa_path, "eval.qa_path")
    reviewed = [(n, row) for n, row in rows if row.review is not None]
    wants_finetune = any(row.review == "reference" and to_finetune(row.question, fraction) for _, row in reviewed)
    finetune_path = _jsonl_target(cfg.finetune.train_path, "finetune.train_path") if wants_finetune else None
    plan = MergePlan(str(review_file), str(eval_path), str(finetune_path) if finetune_path else None,
                     unreviewed=len(rows) - len(reviewed))
    seen = known_questions(cfg)
    reviewed_at = now or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    for n, row in reviewed:
        key = normalize_question(row.question)
        if key in seen:
            plan.skipped.append((n, seen[key]))
            continue
        seen[key] = f"same question as review file line {n}"
        target: Target = "finetune" if row.review == "reference" and to_finetune(row.question, fraction) else "eval"
        plan.added.append(PlannedQuestion(n, target, _qa_line(row, reviewed_at)))
    return plan


def _qa_line(row: ReviewRow, reviewed_at: str) -> dict:
    answerable = row.review == "reference"
    return {
        "id": production_id(row.response_id),
        "question": row.question,
        "answers": [row.reference.strip()] if answerable else [],
        "lang": row.lang,
        "answerable": answerable,
        "provenance": {"source": "production", "response_id": row.response_id,
                       "reviewed_at": row.reviewed_at or reviewed_at, "review": row.review},
    }


def apply_merge(plan: MergePlan) -> None:
    """Append the plan's questions to their files: old bytes + new lines, written atomically, each file checked
    to read back as a QA set before it replaces the old one."""
    for target, path in (("eval", plan.eval_path), ("finetune", plan.finetune_path)):
        lines = [q.record for q in plan.added if q.target == target]
        if not lines or path is None:
            continue
        path = Path(path)
        old = path.read_bytes() if path.is_file() else b""
        if old and not old.endswith(b"\n"):
            old += b"\n"
        new = old + "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines).encode("utf-8")
        staged = path.with_name(f".{path.name}.merge-check.jsonl")
        try:
            staged.write_bytes(new)
            read_qa(staged)  # the merged file must read back (never replace a good file with a bad one)
        finally:
            staged.unlink(missing_ok=True)
        atomic_write_bytes(path, new)
