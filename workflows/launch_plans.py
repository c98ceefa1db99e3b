"""Launch plans registered with the workflows (`pyflyte register ... workflows`, see README "Run on a Flyte cluster").

- `llmops_pipeline_gpu`: the whole pipeline on `configs/gpu.yaml`; CI's deploy job launches it after registering.
- `index_corpus_nightly`: re-indexes the corpus every night at 03:00 UTC on the same config. Unchanged documents
  are served from the embedding cache, so a quiet night costs an ingest and a manifest check. The schedule runs
  once the launch plan is active (`pyflyte register --activate-launchplans`, as the deploy job does).
- `monitor_daily`: the monitor workflow every day at 00:15 UTC. The schedule passes its kickoff time as
  `window_end` and `whole_days` ends the window at the midnight before it: each run covers the UTC day(s) before,
  whose log files are closed (the log is partitioned by UTC day), and a late or repeated run covers the same window.

The config default is `configs/gpu.yaml` inside the task image (`IMAGE_ROOT`, the Dockerfile's WORKDIR), built from
the commit that is registered, so a scheduled run reads that commit's config; nothing is uploaded, and `pyflyte
package` writes the same path instead of a temporary file of the machine that packaged it. Any launch can override it
with another file (`s3://...` in the console's launch form).
"""

from __future__ import annotations

from pathlib import PurePosixPath

from flytekit import CronSchedule, LaunchPlan
from flytekit.types.file import FlyteFile

from workflows.index import index_corpus
from workflows.monitor import monitor
from workflows.pipeline import llmops_pipeline

__all__ = ["CLUSTER_CONFIG", "IMAGE_ROOT", "MONITOR_LAUNCH_PLAN", "MONITOR_SCHEDULE", "PIPELINE_LAUNCH_PLAN",
           "REINDEX_LAUNCH_PLAN", "REINDEX_SCHEDULE", "index_corpus_nightly", "llmops_pipeline_gpu", "monitor_daily"]

# Where the Dockerfile puts the repository (its WORKDIR; tests/workflows/test_package.py checks they agree).
IMAGE_ROOT = PurePosixPath("/home/app/flyte-llmops")
CLUSTER_CONFIG = IMAGE_ROOT / "configs" / "gpu.yaml"
PIPELINE_LAUNCH_PLAN = "llmops_pipeline_gpu"
REINDEX_LAUNCH_PLAN = "index_corpus_nightly"
REINDEX_SCHEDULE = "0 3 * * *"  # every day at 03:00 UTC
MONITOR_LAUNCH_PLAN = "monitor_daily"
MONITOR_SCHEDULE = "15 0 * * *"  # every day at 00:15 UTC

llmops_pipeline_gpu = LaunchPlan.get_or_create(
    workflow=llmops_pipeline,
    name=PIPELINE_LAUNCH_PLAN,
    default_inputs={"config": FlyteFile(str(CLUSTER_CONFIG), remote_path=False)},
)

index_corpus_nightly = LaunchPlan.get_or_create(
    workflow=index_corpus,
    name=REINDEX_LAUNCH_PLAN,
    default_inputs={"config": FlyteFile(str(CLUSTER_CONFIG), remote_path=False)},
    schedule=CronSchedule(schedule=REINDEX_SCHEDULE),
)

monitor_daily = LaunchPlan.get_or_create(
    workflow=monitor,
    name=MONITOR_LAUNCH_PLAN,
    default_inputs={"config": FlyteFile(str(CLUSTER_CONFIG), remote_path=False), "whole_days": True},
    schedule=CronSchedule(schedule=MONITOR_SCHEDULE, kickoff_time_input_arg="window_end"),
)
