"""Launch plans registered with the workflows (`pyflyte register ... workflows`, see README "Run on a Flyte cluster").

- `llmops_pipeline_gpu`: the whole pipeline on `configs/gpu.yaml`; CI's deploy job launches it after registering.
- `index_corpus_nightly`: re-indexes the corpus every night at 03:00 UTC on the same config. Unchanged documents
  are served from the embedding cache, so a quiet night costs an ingest and a manifest check. The schedule runs
  once the launch plan is active (`pyflyte register --activate-launchplans`, as the deploy job does).

The config is a FlyteFile default: `pyflyte register` uploads `configs/gpu.yaml` to the cluster's object store and
the launch plans carry its URI, so a scheduled run reads the config of the commit that was registered. Any launch
can override it with another file (`s3://...` in the console's launch form).
"""

from __future__ import annotations

from pathlib import Path

from flytekit import CronSchedule, LaunchPlan
from flytekit.types.file import FlyteFile

from workflows.index import index_corpus
from workflows.pipeline import llmops_pipeline

__all__ = ["CLUSTER_CONFIG", "PIPELINE_LAUNCH_PLAN", "REINDEX_LAUNCH_PLAN", "REINDEX_SCHEDULE", "index_corpus_nightly",
           "llmops_pipeline_gpu"]

CLUSTER_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "gpu.yaml"
PIPELINE_LAUNCH_PLAN = "llmops_pipeline_gpu"
REINDEX_LAUNCH_PLAN = "index_corpus_nightly"
REINDEX_SCHEDULE = "0 3 * * *"  # every day at 03:00 UTC

llmops_pipeline_gpu = LaunchPlan.get_or_create(
    workflow=llmops_pipeline,
    name=PIPELINE_LAUNCH_PLAN,
    default_inputs={"config": FlyteFile(str(CLUSTER_CONFIG))},
)

index_corpus_nightly = LaunchPlan.get_or_create(
    workflow=index_corpus,
    name=REINDEX_LAUNCH_PLAN,
    default_inputs={"config": FlyteFile(str(CLUSTER_CONFIG))},
    schedule=CronSchedule(schedule=REINDEX_SCHEDULE),
)
