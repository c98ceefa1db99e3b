"""Embedding tasks: split chunks into shards and embed them with a map task (one GPU pod per shard on a cluster).

Locally the same workflow runs the shards one after another. Map-task subtasks publish no Decks (locally and on a
cluster, flyteorg/flyte#4201), so each shard file records its own counts, seconds and device, and the index task's
Deck shows them per shard.
"""

from __future__ import annotations

import functools

from flytekit import dynamic, map_task, task

from llmops.index.build import embed_shard as embed_shard_fn
from llmops.index.build import plan_shards as plan_shards_fn
from tasks.common import (
    CPU_RESOURCES,
    TIMEOUTS,
    cache_settings,
    decode_config,
    gpu_task_settings,
    run_id,
)


@task(requests=CPU_RESOURCES, timeout=TIMEOUTS["cpu"], **cache_settings())
def plan_shards(config_json: str, stage_key: str, chunks_uri: str) -> list[str]:
    return plan_shards_fn(decode_config(config_json, "plan_shards"), chunks_uri)


@task(**gpu_task_settings(timeout=TIMEOUTS["embed"]))
def embed_shard(config_json: str, stage_key: str, model_digest: str, shard_uri: str) -> str:
    """Embed one shard (cached vectors reused); returns the URI of its vectors file."""
    return embed_shard_fn(decode_config(config_json, "embed"), shard_uri, model_digest, run_id=run_id())


@dynamic(requests=CPU_RESOURCES, timeout=TIMEOUTS["cpu"])
def embed_shards(config_json: str, stage_key: str, model_digest: str, shard_uris: list[str]) -> list[str]:
    """Fan out over shards; concurrency comes from `embedding.max_concurrency` in the config."""
    cfg = decode_config(config_json, "embed")
    mapped = map_task(
        functools.partial(embed_shard, config_json=config_json, stage_key=stage_key, model_digest=model_digest),
        concurrency=cfg.embedding.max_concurrency,
    )
    return mapped(shard_uri=shard_uris)
