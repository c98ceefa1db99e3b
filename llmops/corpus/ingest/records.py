"""Record sources (JSONL files, Hugging Face datasets): one mapping per document, fields picked by name."""

from __future__ import annotations

import json
from collections.abc import Mapping

import fsspec

from llmops.config import JsonlSource
from llmops.corpus.ingest.collector import Collector
from llmops.corpus.ingest.report import Skip

__all__ = ["add_record", "read_jsonl"]


def add_record(
    out: Collector,
    record: object,
    source: str,
    *,
    text_field: str,
    title_field: str | None,
    id_field: str | None = None,
) -> None:
    """Turn one record into a document: scalar fields other than text and title become string metadata."""
    if not isinstance(record, Mapping):
        raise Skip(f"expected a JSON object, got {type(record).__name__}")
    if text_field not in record:
        raise Skip(f"missing field {text_field!r}")
    text = record[text_field]
    if not isinstance(text, str):
        raise Skip(f"field {text_field!r} is {_json_type(text)}, not a string")
    title = record.get(title_field) if title_field else None
    metadata = {}
    for key, value in record.items():
        if key in (text_field, title_field) or (as_str := _scalar_str(value)) is None:
            continue
        metadata["source_id" if key == id_field else str(key)] = as_str
    out.add_document(text, source, title if isinstance(title, str) else "", metadata)


def _scalar_str(value: object) -> str | None:
    """Strings as they are, numbers and booleans as JSON writes them; null and nested values are dropped."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return json.dumps(value)
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    return "a list" if isinstance(value, list) else type(value).__name__


def read_jsonl(src: JsonlSource, out: Collector) -> None:
    out.files_seen += 1
    with fsspec.open(src.path, "rb", compression="infer") as f:
        for n, raw in enumerate(f, start=1):
            source = f"{src.path}#line={n}"
            try:
                record = _parse_line(raw, first=n == 1)
                if record is not None:
                    add_record(
                        out,
                        record,
                        source,
                        text_field=src.text_field,
                        title_field=src.title_field,
                        id_field=src.id_field,
                    )
            except Skip as e:
                out.skip(source, e.reason)


def _parse_line(raw: bytes, first: bool) -> object | None:
    """The JSON value on one line, or None for a blank line."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Skip(f"not valid UTF-8 at byte {e.start} of the line") from None
    if first:
        line = line.removeprefix("\ufeff")
    if not line.strip():
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise Skip(f"invalid JSON ({e.msg} at column {e.colno})") from None
