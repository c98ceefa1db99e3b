"""compare_models: index once -> every variant (prompt templates x models x sampling) through the eval stage as a
map task -> one comparison (metric table, per-question answers, disagreements, latency and cost) and its Deck.

Run locally (offline quickstart: two prompt templates x two sampling settings on the tiny model):
    pyflyte run workflows/compare.py compare_models --config configs/compare-quickstart.yaml
then `llmops compare --comparison ID --config configs/compare-quickstart.yaml` shows it in the terminal.
On a cluster: add --remote (see README, "Run on a Flyte cluster").
"""

from __future__ import annotations

import typing

from flytekit import workflow
from flytekit.types.file import FlyteFile

from tasks.compare import compare_variants
from tasks.config import resolve_config
from workflows.index import index_stage

CompareOutputs = typing.NamedTuple("CompareOutputs", [("index_version", str), ("comparison", str)])


@workflow
def compare_models(config: FlyteFile) -> CompareOutputs:
    resolved = resolve_config(config=config)
    idx = index_stage(config_json=resolved.config_json, stage_keys=resolved.stage_keys)
    comparison = compare_variants(
        config_json=resolved.config_json,
        index=idx.index,
        qa_uri=idx.qa_uri,
        documents_uri=idx.documents_uri,
        retrieval_report=idx.retrieval_report,
    )
    return CompareOutputs(idx.version, comparison)
