"""Embedding tasks: split chunks into shards and embed them with a map task (one GPU pod per shard on a cluster).

Locally the same workflow runs the shards one after another.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

from flytekit import dynamic, map_task, task

from llmops.embedding import get_embedder
from llmops.indexing import embed_shard as embed_shard_fn
from llmops.indexing import embedding_stats
from llmops.indexing import plan_shards as plan_shards_fn
from tasks.common import (
    CACHE_VERSION,
    CPU_RESOURCES,
    decode_config,
    gpu_task_settings,
    run_id,
)
from tasks.decks import embed_shard_deck, publish


@task(requests=CPU_RESOURCES, cache=True, cache_version=CACHE_VERSION)
def plan_shards(config_json: str, chunks_uri: str) -> list[str]:
    return plan_shards_fn(decode_config(config_json), chunks_uri)


@task(**gpu_task_settings(), enable_deck=True, deck_fields=())
def embed_shard(config_json: str, model_digest: str, shard_uri: str) -> str:
    """Embed one shard (cached vectors reused); returns the URI of its vectors file."""
    cfg = decode_config(config_json)
    rid = run_id()
    vectors_uri = embed_shard_fn(cfg, shard_uri, model_digest, run_id=rid)
    with tempfile.TemporaryDirectory(prefix="llmops-") as scratch:  # a download only for a remote store
        stats = embedding_stats([vectors_uri], Path(scratch), rid)
    device = get_embedder(cfg.embedding).device  # the cached embedder the shard was embedded with
    publish("Embedding", embed_shard_deck(shard_uri, cfg.embedding.model, device, stats))
    return vectors_uri


@dynamic(requests=CPU_RESOURCES)
def embed_shards(config_json: str, model_digest: str, shard_uris: list[str]) -> list[str]:
    """Fan out over shards; concurrency comes from `embedding.max_concurrency` in the config."""
    cfg = decode_config(config_json)
    mapped = map_task(
        functools.partial(embed_shard, config_json=config_json, model_digest=model_digest),
        concurrency=cfg.embedding.max_concurrency,
    )
    return mapped(shard_uri=shard_uris)
