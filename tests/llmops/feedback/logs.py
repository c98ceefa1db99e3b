"""Request logs for the feedback tests, written as the writer lays them out: `<root>/YYYY/MM/DD/<file>.jsonl`, one
`record.model_dump_json()` a line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from llmops.requestlog.reader import day_folder
from llmops.requestlog.record import FeedbackRecord, LoggedSource, RequestLatency, RequestRecord

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.timezone.utc).timestamp()


def request(rid: str, question: str, *, t: float, relevance: float | None = 0.8, refusal: str | None = None,
            release: str = "r-test", answer: str = "an answer") -> RequestRecord:
    return RequestRecord(
        response_id=rid, time=t, model="rag", release=release, index_version="idx", lang="en", question=question,
        retrieval_query=question, mode="hybrid", relevance=relevance, answer=answer,
        finish_reason="content_filter" if refusal else "stop", refusal_kind=refusal,
        sources=(LoggedSource(chunk_id="c1", doc_id="d1", source="volcano.md", score=0.7),),
        latency=RequestLatency(retrieval_ms=3.0, total_ms=40.0),
    )


def rating(rid: str, value: str, *, t: float, comment: str | None = None) -> FeedbackRecord:
    return FeedbackRecord(response_id=rid, time=t, rating=value, comment=comment)


def write_log(root: Path, records, name: str = "part-0.jsonl") -> Path:
    """Each record into its UTC day's folder."""
    for record in records:
        day = dt.datetime.fromtimestamp(record.time, dt.timezone.utc).date()
        folder = Path(day_folder(str(root), day))
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / name, "a", encoding="utf-8") as f:
            f.write(record.model_dump_json() + "\n")
    return root
