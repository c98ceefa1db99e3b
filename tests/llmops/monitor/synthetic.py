"""Synthetic request logs in the writer's layout (`<root>/YYYY/MM/DD/<file>.jsonl`), written with the records' own
`model_dump_json`, on a local folder or any fsspec URI (memory:// included)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Iterable, Sequence

import fsspec

from llmops.requestlog.reader import day_folder
from llmops.requestlog.record import FeedbackRecord, LoggedSource, RequestLatency, RequestRecord

# 2026-03-02 00:00:00 UTC: windows in tests end on whole days.
DAY0 = dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc).timestamp()

ON_TOPIC = [
    "Which volcano in Sicily is very active?", "When did the first Shinkansen line open?",
    "What is matcha made of?", "How tall is Mount Fuji?", "What is green tea made from?",
]
OFF_TOPIC = {
    "billing": ["How do I get a refund for my invoice?", "Where can I find the invoice for my subscription?",
                "Can I change the billing address on my invoice?", "How do I download last month's invoice?"],
    "football": ["Who won the football world cup in 2014?", "Which team won the last football world cup final?",
                 "How many goals were scored in the world cup final?"],
}


def request(i: int, t: float, *, question: str = "q", relevance: float | None = 0.6, refusal: str | None = None,
            total_ms: float = 100.0, ttft_ms: float | None = None, index_version: str = "idx",
            release: str = "r-0000000000000000", answer: str = "An answer.",
            sources: Sequence[LoggedSource] | None = None) -> RequestRecord:
    if sources is None:
        sources = () if refusal else (LoggedSource(chunk_id=f"c{i}", doc_id="d", source="doc.md", score=0.5),)
    return RequestRecord(
        response_id=f"chatcmpl-{i:05d}", time=t, model="llmops-rag", release=release, index_version=index_version,
        stream=ttft_ms is not None, lang="en", question=question, retrieval_query=question, mode="hybrid",
        sources=tuple(sources), relevance=relevance, answer=answer, finish_reason="stop", refusal_kind=refusal,
        latency=RequestLatency(retrieval_ms=total_ms / 10, ttft_ms=ttft_ms, total_ms=total_ms),
        prompt_tokens=100, completion_tokens=20,
    )


def feedback(req: RequestRecord, rating: str, after_s: float = 60.0) -> FeedbackRecord:
    return FeedbackRecord(response_id=req.response_id, time=req.time + after_s, rating=rating)


def write_log(root: str, records: Iterable[RequestRecord | FeedbackRecord], extra_lines: Sequence[str] = ()) -> None:
    """One file per UTC day the records fall on; `extra_lines` (unreadable ones) go into the first day's file."""
    fs, base = fsspec.core.url_to_fs(root)
    by_day: dict[dt.date, list[str]] = defaultdict(list)
    for r in records:
        by_day[dt.datetime.fromtimestamp(r.time, dt.timezone.utc).date()].append(r.model_dump_json())
    for n, (day, lines) in enumerate(sorted(by_day.items())):
        folder = day_folder(base, day)
        fs.makedirs(folder, exist_ok=True)
        with fs.open(f"{folder}/part-0.jsonl", "w") as f:
            f.write("\n".join([*lines, *(extra_lines if n == 0 else ())]) + "\n")
