"""QA sets, read and written in one place: SQuAD-format JSON, or JSONL with `question`, `answers` and optional
`id` (or `qid`), `gold_doc_id`, `lang`, `reference_contexts`, `history`, `answerable` (default true; `false` marks a
question the documents do not answer, with no answers), `provenance` (a question that came from production:
`{"source": "production", "response_id", "reviewed_at", "review"}`, written by `llmops feedback merge`). The pipeline's own qa.jsonl (`write_qa`) is that JSONL with
every field set, so the same reader reads eval sets and the ingest stage's output.

Conversational QA: `history` holds the earlier turns as OpenAI messages (`[{"role": "user", "content": ...},
{"role": "assistant", "content": ...}]`, oldest first) and `question` is the follow-up that is scored."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from llmops.corpus.documents import QAExample, QAProvenance, content_id
from llmops.errors import EvalDataError
from llmops.corpus.lang import detect_lang

__all__ = ["qa_record", "read_qa", "write_qa"]


def read_qa(path: str | Path) -> list[QAExample]:
    """Load a QA set. SQuAD files link each question to its paragraph's document id (same ids as ingest)."""
    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"eval set {path} does not exist")
    if path.suffix == ".json":
        from llmops.config import CorpusConfig, SquadSource
        from llmops.corpus.ingest.corpus import ingest_corpus

        return ingest_corpus(CorpusConfig(sources=(SquadSource(kind="squad", path=str(path)),))).qa
    return _load_jsonl(path)


def _load_jsonl(path: Path) -> list[QAExample]:
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise EvalDataError(f"{path} line {n}: not valid JSON ({e.msg})") from None
            question, answers = rec.get("question"), rec.get("answers", [])
            if not isinstance(question, str) or not question.strip():
                raise EvalDataError(f"{path} line {n}: `question` must be a non-empty string")
            if isinstance(answers, str):
                answers = [answers]
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise EvalDataError(f"{path} line {n}: `answers` must be a list of strings")
            answerable = rec.get("answerable", True)
            if not isinstance(answerable, bool):
                raise EvalDataError(f"{path} line {n}: `answerable` must be true or false")
            if not answerable and answers:
                raise EvalDataError(f"{path} line {n}: `answers` must be empty when `answerable` is false")
            references = rec.get("reference_contexts", [])
            if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
                raise EvalDataError(f"{path} line {n}: `reference_contexts` must be a list of strings")
            history = _history([] if rec.get("history") is None else rec["history"], path, n)
            provenance = _provenance(rec.get("provenance"), path, n)
            out.append(
                QAExample(
                    qid=str(rec.get("qid") or rec.get("id") or content_id(f"{path.name}:{n}:{question}")),
                    question=question,
                    answers=tuple(answers),
                    gold_doc_id=rec.get("gold_doc_id"),
                    lang=rec.get("lang") or detect_lang(question),
                    reference_contexts=tuple(references),
                    answerable=answerable,
                    history=history,
                    provenance=provenance,
                )
            )
    if not out:
        raise EvalDataError(f"eval set {path} holds no questions")
    return out


def _history(turns, path: Path, line: int) -> tuple[tuple[str, str], ...]:
    ok = isinstance(turns, list) and all(
        isinstance(t, dict) and t.get("role") in ("user", "assistant") and isinstance(t.get("content"), str)
        for t in turns
    )
    if not ok:
        raise EvalDataError(
            f"{path} line {line}: `history` must be a list of {{\"role\": \"user\" | \"assistant\", \"content\": "
            "string}} objects, oldest first"
        )
    return tuple((t["role"], t["content"]) for t in turns)


def _provenance(raw, path: Path, line: int) -> QAProvenance | None:
    if raw is None:
        return None
    fields = ("source", "response_id", "reviewed_at", "review")
    ok = (isinstance(raw, dict) and set(raw) <= set(fields) and isinstance(raw.get("source"), str)
          and all(raw.get(k) is None or isinstance(raw[k], str) for k in fields))
    if not ok:
        raise EvalDataError(
            f"{path} line {line}: `provenance` must be an object with a string `source` and optional string "
            "`response_id`, `reviewed_at`, `review` (what `llmops feedback merge` writes)"
        )
    return QAProvenance(**raw)


def qa_record(ex: QAExample) -> dict:
    """One QAExample as its JSONL object, every field set; `provenance` only when it has one, so hand-written
    questions keep the records (and the ingest output's digest) they had before provenance existed."""
    record = asdict(ex)
    record["history"] = [{"role": role, "content": text} for role, text in ex.history]
    if ex.provenance is None:
        del record["provenance"]
    return record


def write_qa(examples: list[QAExample], path: Path) -> None:
    """JSONL, one QAExample a line with every field (what `read_qa` reads back unchanged)."""
    with open(path, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(qa_record(ex), ensure_ascii=False) + "\n")
