"""SQuAD-format JSON: every context becomes a document, every question a QA example linked to it (SQuAD 2.0's
unanswerable questions, `is_impossible: true`, too: `answerable=False`)."""

from __future__ import annotations

import json
import re
from typing import Any

import fsspec

from llmops.config import SquadSource
from llmops.corpus.documents import QAExample
from llmops.errors import IngestError
from llmops.corpus.ingest.collector import Collector
from llmops.corpus.ingest.report import Skip
from llmops.corpus.normalize import normalize_inline, normalize_text
from llmops.corpus.lang import detect_lang

__all__ = ["read_squad"]

_TITLE_PREFIX = re.compile(r"^[^\n]*?\[SEP\][ \t]*")  # JSQuAD contexts start with "TITLE [SEP] "
_MISSING = object()


def read_squad(src: SquadSource, out: Collector) -> None:
    """A malformed file structure raises IngestError naming the JSON path; a malformed question is skipped."""
    out.files_seen += 1
    root = _load_json(src.path)
    for i, article in enumerate(_field(src.path, root, "$", "data", list)):
        where = f"$.data[{i}]"
        title = _field(src.path, article, where, "title", str, default="")
        for j, paragraph in enumerate(_field(src.path, article, where, "paragraphs", list)):
            _read_paragraph(src, out, paragraph, title, i, j)


def _read_paragraph(src: SquadSource, out: Collector, paragraph: object, title: str, i: int, j: int) -> None:
    where = f"$.data[{i}].paragraphs[{j}]"
    context = _field(src.path, paragraph, where, "context", str)
    qas = _field(src.path, paragraph, where, "qas", list, default=[])
    if src.strip_title_prefix:
        context = _TITLE_PREFIX.sub("", context, count=1)
    source = f"{src.path}#article={i},paragraph={j}"
    doc_id = out.add_document(context, source, title, {"format": "squad"})
    for k, qa in enumerate(qas):
        try:
            if doc_id is None:
                raise Skip("its context was skipped")
            out.add_qa(_qa_example(qa, doc_id))
        except Skip as e:
            out.skip(f"{source},qa={k}", e.reason)


def _qa_example(qa: object, doc_id: str) -> QAExample:
    if not isinstance(qa, dict):
        raise Skip(f"expected an object, got {type(qa).__name__}")
    qid, question, answers = qa.get("id"), qa.get("question"), qa.get("answers")
    if not isinstance(qid, (str, int)) or isinstance(qid, bool) or str(qid) == "":
        raise Skip("missing 'id'")
    if not isinstance(question, str) or not question.strip():
        raise Skip("missing or empty 'question'")
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        raise Skip(f"'is_impossible' must be true or false, got {impossible!r}")
    texts = _answer_texts(answers if answers is not None or not impossible else [])
    if impossible and texts:
        raise Skip("'is_impossible' is true but it has answers")
    if not impossible and not texts:
        raise Skip("no answers")
    question = normalize_inline(question)
    # An unanswerable question keeps the paragraph it was written on as gold_doc_id (where it came from); it has no
    # answers, and retrieval and answer metrics leave it out (it measures abstention).
    return QAExample(
        qid=str(qid), question=question, answers=tuple(texts), gold_doc_id=doc_id, lang=detect_lang(question),
        answerable=not impossible,
    )


def _answer_texts(answers: object) -> list[str]:
    """Normalized like document text, so answers stay substrings of their context; deduplicated, order kept."""
    if not isinstance(answers, list) or not all(
        isinstance(a, dict) and isinstance(a.get("text"), str) for a in answers
    ):
        raise Skip("'answers' must be a list of objects with a string 'text'")
    return [t for t in dict.fromkeys(normalize_text(a["text"]) for a in answers) if t]


def _load_json(path: str) -> object:
    try:
        with fsspec.open(path, "rb", compression="infer") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise IngestError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError as e:
        raise IngestError(f"{path}: not valid UTF-8 at byte {e.start}") from None


def _field(path: str, obj: object, where: str, key: str, kind: type, default: object = _MISSING) -> Any:
    """obj[key], checked to be a `kind`; a structural problem makes the whole file unusable."""
    if not isinstance(obj, dict):
        raise IngestError(f"{path}: {where}: expected an object, got {type(obj).__name__} (is this SQuAD JSON?)")
    value = obj.get(key, default)
    if value is _MISSING:
        raise IngestError(f"{path}: {where}.{key}: required field is missing (is this SQuAD JSON?)")
    if not isinstance(value, kind):
        raise IngestError(f"{path}: {where}.{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value
