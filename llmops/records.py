"""Reading a stored record back (an artifact manifest, a report, a gate decision): its schema version, then its schema.

Every record the pipeline writes carries `schema_version`. A reader accepts exactly its own version, so a record
written by another llmops is refused with a message that names it and says how to make a current one, instead of
being half-read.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

__all__ = ["validate_record"]

R = TypeVar("R", bound=BaseModel)


def validate_record(
    raw: Any, model: type[R], version: int, *, where: str, what: str, remedy: str, error: type[Exception]
) -> R:
    """`raw` (parsed JSON) as `model`, or `error` naming `where` the record came from, `what` it should be, and the
    `remedy` sentence (how to get one this llmops reads)."""
    found = raw.get("schema_version") if isinstance(raw, dict) else None
    if found != version:
        raise error(f"{where} has schema_version {found!r}; this llmops reads {version}. {remedy}")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise error(f"{where} does not match the {what} schema: {e}") from None
