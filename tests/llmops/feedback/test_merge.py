"""Reviewed rows into the eval set and the fine-tune data: provenance, de-duplication, the eval / fine-tune split
without leaks, atomic and idempotent writes, and errors that name the row, the field or the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.config import parse_config
from llmops.corpus.qa import read_qa
from llmops.feedback.merge import apply_merge, plan_merge, production_id, to_finetune
from llmops.feedback.review import ReviewFileError, ReviewRow
from llmops.finetune.sft_data import load_training_examples
from llmops.provenance.stage_inputs import stage_key
from tests.conftest import MINILM

EVAL = [
    {"question": "Which volcano in Sicily is very active?", "answers": ["Mount Etna"]},
    {"question": "What is matcha made of?", "answers": ["green tea leaves"]},
]
TRAIN = [{"question": "Where is Mount Etna?", "answers": ["Sicily"]},
         {"question": "What rises through volcanic vents?", "answers": ["Magma"]}]


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def config(tmp_path, *, qa_path=None, train_path=None, fraction=0.0):
    return parse_config({
        "corpus": {"sources": [{"kind": "directory", "path": str(tmp_path)}]},
        "embedding": {"model": MINILM},
        "eval": {"qa_path": str(qa_path or jsonl(tmp_path / "qa.jsonl", EVAL))},
        "finetune": {"train_path": str(train_path or jsonl(tmp_path / "train.jsonl", TRAIN))},
        "monitoring": {"feedback": {"finetune_fraction": fraction}},
    })


def row(rid: str, question: str, **review) -> dict:
    return json.loads(ReviewRow(response_id=rid, time="2026-03-02T10:00:00Z", release="r-1", lang="en",
                                question=question, answer="noise", reasons=("negative_feedback",),
                                **review).model_dump_json())


def review_file(tmp_path, rows) -> Path:
    return jsonl(tmp_path / "review.jsonl", rows)


def test_reviewed_rows_become_eval_questions_with_provenance_and_reruns_add_nothing(tmp_path):
    cfg = config(tmp_path)
    before = read_qa(cfg.eval.qa_path)
    path = review_file(tmp_path, [
        row("chatcmpl-1", "When did the first Shinkansen open?", reference="1964"),
        row("chatcmpl-2", "What is the office Wi-Fi password?", irrelevant=True),
        row("chatcmpl-3", "What is matcha?"),  # not reviewed
        row("chatcmpl-4", "  WHICH volcano in Sicily is very ACTIVE? ", reference="Etna"),  # an eval question
        row("chatcmpl-5", "where is mount etna?", reference="Sicily"),  # already a training question
        row("chatcmpl-6", "When did the first shinkansen open?", reference="in 1964"),  # same as line 1
    ])

    plan = plan_merge(cfg, path, now="2026-03-03T09:00:00Z")
    counts = (plan.count("eval", True), plan.count("eval", False), plan.count("finetune"), plan.unreviewed)
    assert counts == (1, 1, 0, 1)
    assert [line for line, _ in plan.skipped] == [4, 5, 6]
    reasons = dict(plan.skipped)
    assert "already in the eval set (qa.jsonl" in reasons[4] and "already in the fine-tune data" in reasons[5]
    assert reasons[6] == "same question as review file line 1"
    apply_merge(plan)

    after = read_qa(cfg.eval.qa_path)
    assert after[:2] == before  # existing lines and ids unchanged
    shinkansen, wifi = after[2:]
    assert shinkansen.qid == production_id("chatcmpl-1") and shinkansen.answers == ("1964",) and shinkansen.answerable
    assert shinkansen.provenance.source == "production" and shinkansen.provenance.review == "reference"
    assert shinkansen.provenance.reviewed_at == "2026-03-03T09:00:00Z"
    assert wifi.answerable is False and wifi.answers == () and wifi.provenance.review == "irrelevant"
    assert read_qa(cfg.finetune.train_path) == read_qa(tmp_path / "train.jsonl")  # fraction 0: eval only

    written = Path(cfg.eval.qa_path).read_bytes()
    again = plan_merge(cfg, path)
    assert again.added == [] and {line for line, _ in again.skipped} == {1, 2, 4, 5, 6}
    apply_merge(again)
    assert Path(cfg.eval.qa_path).read_bytes() == written  # idempotent


def test_finetune_fraction_splits_by_question_hash_and_never_leaks(tmp_path):
    questions = [f"Production question number {i}?" for i in range(40)]
    cfg = config(tmp_path, fraction=0.5)
    path = review_file(tmp_path, [row(f"r{i}", q, reference=f"answer {i}") for i, q in enumerate(questions)]
                       + [row("irr", "Out of scope?", irrelevant=True)])
    apply_merge(plan_merge(cfg, path))

    eval_q = {q.question for q in read_qa(cfg.eval.qa_path)}
    train = read_qa(cfg.finetune.train_path)
    train_q = {q.question for q in train}
    assert not eval_q & train_q
    assert {q for q in questions if to_finetune(q, 0.5)} == train_q - {t["question"] for t in TRAIN}
    assert 10 < len(train_q - {t["question"] for t in TRAIN}) < 30  # about half
    assert "Out of scope?" in eval_q  # unanswerable: never training data
    assert all(q.provenance.source == "production" for q in train[2:])
    # the fine-tune stage takes the merged file (its leak check against the eval set passes)
    assert len(load_training_examples(cfg)) == len(train)


def test_merged_files_change_the_cache_keys_of_the_stages_that_read_them(tmp_path):
    cfg = config(tmp_path, fraction=1.0)
    before = stage_key(cfg, "finetune")
    apply_merge(plan_merge(cfg, review_file(tmp_path, [row("r1", "A new question?", reference="yes")])))
    assert stage_key(cfg, "finetune") != before


def test_validation_comes_first_and_writes_nothing(tmp_path):
    cfg = config(tmp_path)
    before = Path(cfg.eval.qa_path).read_bytes()
    path = review_file(tmp_path, [row("r1", "Good row?", reference="yes"),
                                  {**row("r2", "Bad row?"), "reference": 42}])
    with pytest.raises(ReviewFileError, match=r"line 2: field `reference`"):
        plan_merge(cfg, path)
    assert Path(cfg.eval.qa_path).read_bytes() == before


def test_squad_eval_set_and_missing_train_path_are_clear_errors(tmp_path):
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"version": "v2.0", "data": []}))
    path = review_file(tmp_path, [row("r1", "A question?", reference="yes")])
    with pytest.raises(ReviewFileError, match=r"eval.qa_path .*squad.json is not a JSONL file: a SQuAD .json set "
                                              r"cannot be appended to"):
        plan_merge(config(tmp_path, qa_path=squad), path)
    no_train = parse_config({**config(tmp_path, fraction=1.0).model_dump(mode="json"), "finetune": {}})
    with pytest.raises(ReviewFileError, match="finetune.train_path is not set"):
        plan_merge(no_train, path)
