"""What each indexing stage shows in the Flyte console: ingest, chunks, the index with its embedding shards, and the
run summary with the retrieval evaluation."""

from __future__ import annotations

from typing import Sequence

from eval.schemas import RetrievalEvalReport
from llmops.corpus.ingest.report import IngestReport
from llmops.index.artifact import IndexManifest
from llmops.htmlkit import bar_chart_svg, fragment, histogram_svg, kv_table, section, status_badge, table

__all__ = ["chunk_deck", "index_deck", "ingest_deck", "run_summary_deck", "shards_section"]


def _ingest_sections(report: IngestReport, seconds: float | None = None) -> list[str]:
    skipped, duplicates = report.skipped, report.duplicates
    summary = kv_table(
        {
            "sources": ", ".join(report.sources),
            "files seen": report.files_seen,
            "documents": report.documents,
            "eval questions": report.qa_examples,
            "extra eval set": report.eval_set or "none",
            "exact duplicates removed": len(duplicates),
            "skipped": len(skipped),
            **({"seconds": round(seconds, 3)} if seconds is not None else {}),
        }
    )
    parts = [section("Ingest", summary)]
    if skipped:
        parts.append(
            section(
                f"Skipped inputs ({len(skipped)})",
                table(["source", "reason"], [[s.source, s.reason] for s in skipped]),
                note="These inputs were not indexed. Fix or remove them; the rest of the corpus was processed.",
            )
        )
    if duplicates:
        parts.append(
            section(
                f"Duplicates removed ({len(duplicates)})",
                table(["dropped", "identical to"], [list(d) for d in duplicates]),
            )
        )
    return parts


def ingest_deck(report: IngestReport, seconds: float) -> str:
    return fragment(*_ingest_sections(report, seconds))


def _chunk_section(n_tokens: Sequence[int], max_tokens: int) -> str:
    stats = {"chunks": len(n_tokens), "max tokens per chunk": max_tokens}
    if n_tokens:
        ordered = sorted(n_tokens)
        stats |= {"median tokens": ordered[len(ordered) // 2], "largest chunk": ordered[-1]}
    return section(
        "Chunks",
        kv_table(stats) + histogram_svg(list(n_tokens), bins=20, x_label="tokens per chunk"),
        note="Chunk length in embedding-model tokens; no chunk exceeds the limit the model can embed.",
    )


def chunk_deck(n_tokens: Sequence[int], max_tokens: int) -> str:
    return fragment(_chunk_section(n_tokens, max_tokens))


def shards_section(shards: list[dict]) -> str:
    """The embedding map task, one row per shard, so a slow or cache-missing shard stands out (map-task subtasks
    publish no Decks of their own)."""
    rows = [
        [
            s["shard"],
            s["device"] or "n/a",
            s["vectors"],
            s["computed"],
            s["cached"],
            s["reused"],
            round(s["seconds"], 3),
            round(s["computed"] / s["seconds"], 1) if s["computed"] and s["seconds"] > 0 else "n/a",
        ]
        for s in shards
    ]
    return section(
        f"Embedding shards ({len(shards)})",
        table(
            ["shard", "device", "vectors", "embedded now", "from cache", "reused file", "model s", "per s"],
            rows,
        ),
        note="'reused file': an earlier run already wrote that shard's vectors file, used as it is.",
    )


def _index_section(manifest: IndexManifest, stats: dict) -> str:
    emb, fusion, index = manifest.embedding, manifest.retrieval.fusion, manifest.index
    rows = {
        "version": manifest.version,
        "created": manifest.created_at,
        "embedding model": emb.model,
        "model digest": emb.model_digest[:16],
        "query / passage prefix": f"{emb.query_prefix!r} / {emb.passage_prefix!r}",
        "dimension": emb.dimension,
        "FAISS index": f"{index.type} ({index.metric}, built on {index.built_on})",
        "lexical": "disabled" if manifest.lexical is None else f"BM25, tokenizer {manifest.lexical.tokenizer}",
        "default retrieval": f"{manifest.retrieval.mode}, k={manifest.retrieval.k}",
        "fusion": f"{fusion.method}, dense weight {fusion.dense_weight} ({fusion.chosen_by})",
        "answerability threshold": (
            "none recorded (index from before answerability)" if manifest.answerability is None
            else f"{manifest.answerability.threshold} ({manifest.answerability.chosen_by})"
        ),
        "chunks / vectors": f"{manifest.counts.chunks} / {manifest.counts.vectors}",
        "vectors: embedded in this run / from the embedding cache / reused shard files": (
            f"{stats.get('computed', 0)} / {stats.get('cached', 0)} / {stats.get('reused', 0)}"
        ),
        "reused existing version": stats.get("reused_existing_version"),
        "git sha": manifest.lineage.git_sha,
    }
    return section("Index artifact", kv_table(rows))


def index_deck(manifest: IndexManifest, stats: dict, shards: list[dict] | None = None) -> str:
    return fragment(_index_section(manifest, stats), shards_section(shards) if shards else "")


def _metrics_section(report: RetrievalEvalReport) -> str:
    modes = report.modes
    if not modes:
        return section("Retrieval quality", status_badge(False, report.status))
    names = list(next(iter(modes.values())).metrics)
    rows = [[mode, *(r.metrics[m] for m in names)] for mode, r in modes.items()]
    chart = bar_chart_svg(names, {mode: [r.metrics[m] for m in names] for mode, r in modes.items()})
    fusion = report.fusion
    note = (
        f"{report.questions} held-out questions"
        + (f" ({report.excluded_calibration_questions} calibration questions excluded)"
           if report.excluded_calibration_questions else "")
        + (f"; {report.follow_up_questions} follow-ups searched with the previous user message"
           if report.follow_up_questions else "")
        + (f"; {report.excluded_unanswerable_questions} unanswerable questions left out (no chunk answers them)"
           if report.excluded_unanswerable_questions else "")
        + f". Default mode: {report.default_mode}"
        + (f"; fusion: {fusion.method}, dense weight {fusion.dense_weight}." if fusion is not None else ".")
    )
    worst = report.worst_questions
    missed = (
        section(
            f"Missed questions (no relevant chunk in top 10, first {len(worst)})",
            table(["question", "searched for"], [[w["question"], w.get("query", w["question"])] for w in worst]),
        )
        if worst
        else ""
    )
    return section("Retrieval quality", table(["mode", *names], rows) + chart, note=note) + missed


def _timings_section(stats: dict) -> str:
    return section(
        "Timings (seconds)",
        kv_table(
            {
                "embedding (model time in this run)": stats.get("embed_seconds"),
                "index build or reuse": round(stats.get("index_seconds", 0.0), 3),
            }
        ),
        note="Per-task wall times are in the Flyte console's timeline; cached tasks take no time.",
    )


def run_summary_deck(
    manifest: IndexManifest,
    ingest_report: IngestReport,
    stats: dict,
    n_tokens: Sequence[int],
    report: RetrievalEvalReport,
) -> str:
    return fragment(
        _metrics_section(report),
        _index_section(manifest, stats),
        _chunk_section(n_tokens, manifest.chunking.max_tokens),
        *_ingest_sections(ingest_report),
        _timings_section(stats),
    )
