"""Index task: merge shard vectors, build FAISS + BM25, and publish a verified, versioned artifact."""

from __future__ import annotations

import json
import time
import typing

from flytekit import task
from flytekit.types.directory import FlyteDirectory

from llmops.corpus.ingest.report import read_ingest_report
from llmops.index.artifact import materialize, read_manifest
from llmops.index.build import build_index as build_index_fn
from tasks.common import cpu_task_settings, decode_config, execution_id, run_id
from tasks.decks import index_deck, publish

IndexOutputs = typing.NamedTuple(
    "IndexOutputs", [("index", FlyteDirectory), ("version", str), ("stats_json", str)]
)


@task(**cpu_task_settings())  # model secrets: tuning fusion embeds the calibration questions
def build_index(
    config_json: str,
    stage_key: str,
    chunks_uri: str,
    vector_uris: list[str],
    model_digest: str,
    max_tokens: int,
    corpus_fingerprint: str,
    ingest_report_json: str,
    qa_uri: typing.Optional[str],
) -> IndexOutputs:
    t0 = time.perf_counter()
    out = build_index_fn(
        decode_config(config_json, "index"),
        chunks_uri=chunks_uri,
        vector_uris=vector_uris,
        model_digest=model_digest,
        max_tokens=max_tokens,
        corpus_fingerprint=corpus_fingerprint,
        ingest_report=read_ingest_report(ingest_report_json, "build_index input ingest_report_json"),
        qa_uri=qa_uri,
        flyte_execution_id=execution_id(),
        run_id=run_id(),
    )
    stats = {**out.embedding_stats, "reused_existing_version": out.reused, "index_seconds": time.perf_counter() - t0}
    publish("Index", index_deck(read_manifest(materialize(out.artifact_uri)), stats, list(out.shards)))
    # The artifact already lives in the store: hand Flyte its location instead of copying it to scratch space.
    return IndexOutputs(FlyteDirectory(out.artifact_uri, remote_directory=False), out.version, json.dumps(stats))
