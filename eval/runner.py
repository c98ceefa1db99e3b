"""Run the served chat path (`llmops.chat.engine.ChatEngine`) over an eval set and record what happened for every question.

The records are what the metrics score and what the per-sample table shows: question, answer, references,
retrieved contexts with their sources, latency and token counts.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from llmops.chat.conversation import Conversation, Turn
from llmops.chat.engine import ChatEngine, ChatReply
from llmops.corpus.documents import QAExample
from llmops.errors import ContextLengthError, EvalDataError

__all__ = ["NOT_IN_DOCUMENTS", "SampleRecord", "read_samples", "run_engine", "write_samples"]

NOT_IN_DOCUMENTS = "not_in_documents"  # the refusal kind of the answerability check (llmops.chat.engine.Refusal)


@dataclass
class SampleRecord:
    qid: str
    question: str
    lang: str
    answer: str
    references: list[str]
    contexts: list[str]
    sources: list[dict]  # per context: chunk_id, doc_id, source, title, score (numbered as in the prompt)
    reference_contexts: list[str]
    retrieval_hit: bool  # a context comes from the gold document or contains a gold answer
    retrieval_s: float
    latency_s: float
    first_token_s: float | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    turns: int = 0  # earlier turns of the conversation (0: a single question)
    retrieval_query: str = ""  # what retrieval searched for: the follow-up's rewrite
    rewrite: str = "none"  # how the query was made (llmops.chat.rewrite: none, llm, concat, fallback)
    rewrite_s: float = 0.0  # time in the query rewrite (an LLM call for `llm` and its fallback)
    refusal_kind: str | None = None  # content_filter / not_in_documents when the answer was withheld
    refusal_policy: str | None = None
    guard_s: float = 0.0  # time in the guardrails
    answerable: bool = True  # False: the eval set says the documents do not answer it
    # The question's best dense cosine against the index (ChatReply.relevance, which serving logs as
    # RequestRecord.relevance): the monitor's drift reference. None: refused before retrieval.
    relevance: float | None = None
    scores: dict[str, float | None] = field(default_factory=dict)  # per-sample metric values, filled later

    @property
    def refused(self) -> bool:
        """The engine said "not in the documents" instead of generating (the answerability check)."""
        return self.refusal_kind == NOT_IN_DOCUMENTS


def run_engine(
    engine: ChatEngine,
    examples: Sequence[QAExample],
    gold_texts: Mapping[str, str],
    *,
    concurrency: int = 8,
    show_progress: bool = True,
) -> list[SampleRecord]:
    """Answer every question (follow-ups with their conversation) through the chat path the API serves, at most
    `concurrency` at a time; the records keep the examples' order."""
    with tqdm(total=len(examples), desc="answering", unit="q", disable=not show_progress) as bar:
        return asyncio.run(_answer_all(engine, examples, gold_texts, concurrency, bar))


async def _answer_all(
    engine: ChatEngine, examples: Sequence[QAExample], gold_texts: Mapping[str, str], concurrency: int, bar
) -> list[SampleRecord]:
    limit = asyncio.Semaphore(concurrency)

    async def answer(ex: QAExample) -> SampleRecord:
        conversation = Conversation(ex.question, tuple(Turn(role, text) for role, text in ex.history))
        async with limit:
            try:
                reply = await engine.respond(conversation)
            except ContextLengthError as e:
                raise EvalDataError(
                    f"eval question {ex.qid}: {e} (in the eval set), or raise llm.max_model_len"
                ) from e
        bar.update(1)
        return _record(ex, reply, gold_texts)

    return list(await asyncio.gather(*(answer(ex) for ex in examples)))


def _record(ex: QAExample, reply: ChatReply, gold_texts: Mapping[str, str]) -> SampleRecord:
    references = list(ex.reference_contexts)
    if not references and ex.gold_doc_id in gold_texts:
        references = [gold_texts[ex.gold_doc_id]]
    answers = [a.casefold() for a in ex.answers if a.strip()]
    hit = ex.answerable and any(  # no chunk is relevant to an unanswerable question
        (ex.gold_doc_id is not None and h.doc_id == ex.gold_doc_id) or any(a in h.text.casefold() for a in answers)
        for h in reply.sources
    )
    g = reply.generation
    refusal = reply.refusal
    return SampleRecord(
        qid=ex.qid,
        question=ex.question,
        lang=ex.lang,
        answer=reply.text,
        references=list(ex.answers),
        contexts=[h.text for h in reply.sources],
        sources=[
            {"chunk_id": h.chunk_id, "doc_id": h.doc_id, "source": h.source, "title": h.title, "score": h.score}
            for h in reply.sources
        ],
        reference_contexts=references,
        retrieval_hit=hit,
        retrieval_s=reply.retrieval_s,
        latency_s=g.latency_s if g else 0.0,
        first_token_s=g.first_token_s if g else None,
        prompt_tokens=g.prompt_tokens if g else 0,
        completion_tokens=g.completion_tokens if g else 0,
        finish_reason=reply.finish_reason,
        turns=len(ex.history),
        retrieval_query=reply.query,
        rewrite=reply.rewrite.method if reply.rewrite else "none",
        rewrite_s=reply.rewrite.elapsed_s if reply.rewrite else 0.0,
        refusal_kind=refusal.kind if refusal else None,
        refusal_policy=refusal.policy if refusal else None,
        guard_s=reply.guard_s,
        answerable=ex.answerable,
        relevance=reply.relevance,
    )


_SCHEMA_FIELDS = [
    ("qid", pa.string()),
    ("question", pa.string()),
    ("lang", pa.string()),
    ("answer", pa.string()),
    ("references", pa.list_(pa.string())),
    ("contexts", pa.list_(pa.string())),
    ("sources_json", pa.string()),
    ("reference_contexts", pa.list_(pa.string())),
    ("retrieval_hit", pa.bool_()),
    ("retrieval_s", pa.float64()),
    ("latency_s", pa.float64()),
    ("first_token_s", pa.float64()),
    ("prompt_tokens", pa.int64()),
    ("completion_tokens", pa.int64()),
    ("finish_reason", pa.string()),
    ("turns", pa.int64()),
    ("retrieval_query", pa.string()),
    ("rewrite", pa.string()),
    ("rewrite_s", pa.float64()),
    ("refusal_kind", pa.string()),
    ("refusal_policy", pa.string()),
    ("guard_s", pa.float64()),
    ("answerable", pa.bool_()),
    ("relevance", pa.float64()),
    ("scores_json", pa.string()),
]


def write_samples(records: Sequence[SampleRecord], path: Path) -> None:
    """Per-sample parquet: one row per question; sources and scores as JSON columns (their keys vary)."""
    rows = []
    for r in records:
        row = asdict(r)
        row["sources_json"] = json.dumps(row.pop("sources"), ensure_ascii=False)
        row["scores_json"] = json.dumps(row.pop("scores"), allow_nan=False)
        rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(_SCHEMA_FIELDS)), path, compression="zstd")


def read_samples(path: Path) -> list[SampleRecord]:
    out = []
    for row in pq.read_table(path).to_pylist():
        row["sources"] = json.loads(row.pop("sources_json"))
        row["scores"] = json.loads(row.pop("scores_json"))
        out.append(SampleRecord(**row))
    return out
