"""index_corpus: corpus -> documents -> chunks -> embeddings (sharded) -> verified FAISS + BM25 index artifact.

Run locally (offline quickstart):
    pyflyte run workflows/index.py index_corpus --config configs/quickstart.yaml
On a cluster: add --remote (see README, "Run on a Flyte cluster").
"""

from __future__ import annotations

import typing

from flytekit import workflow
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from tasks.chunk import chunk
from tasks.config import resolve_config
from tasks.embed import embed_shards, plan_shards
from tasks.index import build_index
from tasks.ingest import ingest
from tasks.retrieval_eval import evaluate_retrieval

IndexCorpusOutputs = typing.NamedTuple(
    "IndexCorpusOutputs", [("index", FlyteDirectory), ("version", str), ("retrieval_report", FlyteFile)]
)
IndexStageOutputs = typing.NamedTuple(
    "IndexStageOutputs",
    [
        ("index", FlyteDirectory),
        ("version", str),
        ("retrieval_report", FlyteFile),
        ("documents_uri", str),
        ("qa_uri", typing.Optional[str]),
    ],
)


@workflow
def index_stage(config_json: str, stage_keys: dict[str, str]) -> IndexStageOutputs:
    """The indexing stages on a validated config; llmops_pipeline reuses them with the eval inputs exposed.

    `stage_keys` (from resolve_config) holds each cached stage's key: the content of what it reads."""
    docs = ingest(config_json=config_json)
    chunks = chunk(
        config_json=config_json,
        stage_key=stage_keys["chunk"],
        documents_uri=docs.documents_uri,
        corpus_fingerprint=docs.corpus_fingerprint,
    )
    shards = plan_shards(config_json=config_json, stage_key=stage_keys["plan_shards"], chunks_uri=chunks.chunks_uri)
    vectors = embed_shards(
        config_json=config_json, stage_key=stage_keys["embed"], model_digest=chunks.model_digest, shard_uris=shards
    )
    built = build_index(
        config_json=config_json,
        stage_key=stage_keys["index"],
        chunks_uri=chunks.chunks_uri,
        vector_uris=vectors,
        model_digest=chunks.model_digest,
        max_tokens=chunks.max_tokens,
        corpus_fingerprint=docs.corpus_fingerprint,
        ingest_report_json=docs.report_json,
        qa_uri=docs.qa_uri,
    )
    report = evaluate_retrieval(
        config_json=config_json,
        stage_key=stage_keys["retrieval_eval"],
        index=built.index,
        qa_uri=docs.qa_uri,
        chunks_uri=chunks.chunks_uri,
        ingest_report_json=docs.report_json,
        index_stats_json=built.stats_json,
    )
    return IndexStageOutputs(built.index, built.version, report, docs.documents_uri, docs.qa_uri)


@workflow
def index_corpus(config: FlyteFile) -> IndexCorpusOutputs:
    resolved = resolve_config(config=config)
    out = index_stage(config_json=resolved.config_json, stage_keys=resolved.stage_keys)
    return IndexCorpusOutputs(out.index, out.version, out.retrieval_report)
