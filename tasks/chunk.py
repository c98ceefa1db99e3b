"""Chunk task: token-aware chunking with the embedding model's tokenizer."""

from __future__ import annotations

import typing

from flytekit import task

from llmops.corpus.stages import read_chunk_table, run_chunking
from llmops.index.embedding import get_embedder
from tasks.common import cpu_task_settings, decode_config
from tasks.decks import chunk_deck, publish

ChunkOutputs = typing.NamedTuple("ChunkOutputs", [("chunks_uri", str), ("model_digest", str), ("max_tokens", int)])


@task(**cpu_task_settings())  # model secrets: the embedding model's tokenizer
def chunk(config_json: str, stage_key: str, documents_uri: str, corpus_fingerprint: str) -> ChunkOutputs:
    cfg = decode_config(config_json, "chunk")
    out = run_chunking(cfg, documents_uri, corpus_fingerprint, get_embedder(cfg.embedding))
    table = read_chunk_table(out.chunks_uri)
    publish("Chunks", chunk_deck(table.column("n_tokens").to_pylist(), out.max_tokens))
    return ChunkOutputs(out.chunks_uri, out.model_digest, out.max_tokens)
