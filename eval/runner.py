"""Run the shared RAG chain over an eval set and record what happened for every question.

The records are what the metrics score and what the per-sample table shows: question, answer, references,
retrieved contexts with their sources, latency and token counts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from llmops.corpus.documents import QAExample
from llmops.errors import ContextLengthError, EvalDataError
from llmops.rag.chain import RagAnswer, RagChain

__all__ = ["SampleRecord", "read_samples", "run_chain", "write_samples"]


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
    scores: dict[str, float | None] = field(default_factory=dict)  # per-sample metric values, filled later


def run_chain(
    chain: RagChain,
    examples: Sequence[QAExample],
    gold_texts: Mapping[str, str],
    *,
    batch_size: int = 8,
    show_progress: bool = True,
) -> list[SampleRecord]:
    """Answer every question in batches (the client bounds the requests in flight)."""
    records: list[SampleRecord] = []
    bar = tqdm(total=len(examples), desc="answering", unit="q", disable=not show_progress)
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        try:
            answers = chain.answer_batch([ex.question for ex in batch])
        except ContextLengthError as e:
            raise EvalDataError(
                f"eval question(s) {_too_long(chain, batch)}: {e} (in the eval set), or raise llm.max_model_len"
            ) from e
        records.extend(_record(ex, ans, gold_texts) for ex, ans in zip(batch, answers))
        bar.update(len(batch))
    bar.close()
    return records


def _too_long(chain: RagChain, batch: Sequence[QAExample]) -> str:
    """The qids of a batch's questions that do not fit the prompt budget even alone (serving refuses them too)."""
    qids = []
    for ex in batch:
        try:
            chain.fit_prompt(ex.question, [])
        except ContextLengthError:
            qids.append(ex.qid)
    return ", ".join(qids)


def _record(ex: QAExample, ans: RagAnswer, gold_texts: Mapping[str, str]) -> SampleRecord:
    references = list(ex.reference_contexts)
    if not references and ex.gold_doc_id in gold_texts:
        references = [gold_texts[ex.gold_doc_id]]
    answers = [a.casefold() for a in ex.answers if a.strip()]
    hit = any(
        (ex.gold_doc_id is not None and h.doc_id == ex.gold_doc_id) or any(a in h.text.casefold() for a in answers)
        for h in ans.sources
    )
    g = ans.generation
    return SampleRecord(
        qid=ex.qid,
        question=ex.question,
        lang=ex.lang,
        answer=ans.answer,
        references=list(ex.answers),
        contexts=[h.text for h in ans.sources],
        sources=[
            {"chunk_id": h.chunk_id, "doc_id": h.doc_id, "source": h.source, "title": h.title, "score": h.score}
            for h in ans.sources
        ],
        reference_contexts=references,
        retrieval_hit=hit,
        retrieval_s=ans.retrieval_s,
        latency_s=g.latency_s,
        first_token_s=g.first_token_s,
        prompt_tokens=g.prompt_tokens,
        completion_tokens=g.completion_tokens,
        finish_reason=g.finish_reason,
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
