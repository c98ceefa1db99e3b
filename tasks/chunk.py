"""Chunk task: token-aware chunking with the embedding model's tokenizer."""

from __future__ import annotations

import typing

from flytekit import task

from llmops.index.build import read_chunk_table, run_chunking
from tasks.common import cpu_task_settings, decode_config
from tasks.decks import chunk_deck, publish

ChunkOutputs = typing.NamedTuple("ChunkOutputs", [("chunks_uri", str), ("model_digest", str), ("max_tokens", int)])


@task(**cpu_task_settings())  # model secrets: the embedding model's tokenizer
def chunk(config_json: str, stage_key: str, documents_uri: str, corpus_fingerprint: str) -> ChunkOutputs:
    out = run_chunking(decode_config(config_json, "chunk"), documents_uri, corpus_fingerprint)
    table = read_chunk_table(out.chunks_uri)
    publish("Chunks", chunk_deck(table.column("n_tokens").to_pylist(), out.max_tokens))
    return ChunkOutputs(out.chunks_uri, out.model_digest, out.max_tokens)
