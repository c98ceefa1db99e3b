"""What a config needs to run on a Flyte cluster, checked before any work starts there.

On a cluster each task runs in its own pod: a local `artifacts.root` is a folder that only that pod sees, so the next
task would find nothing (or, worse, the pod's leftovers). Credentials come from Flyte Secrets mounted under fixed
environment variable names (tasks/common.py), so the config must name those variables.
"""

from __future__ import annotations

from collections.abc import Mapping

from llmops.config import PipelineConfig
from llmops.storage import is_remote

__all__ = ["cluster_config_problems"]


def cluster_config_problems(cfg: PipelineConfig, secret_env: Mapping[str, str]) -> list[str]:
    """Problems that would break a cluster run, each naming its field and the fix. `secret_env` maps a config
    field holding an environment variable name to the variable its Flyte Secret is mounted as."""
    problems = []
    for field, value in (("artifacts.root", cfg.artifacts.root), ("artifacts.registry", cfg.artifacts.registry)):
        if value is not None and not is_remote(value):
            problems.append(
                f"{field}: {value!r} is a local path, but on a cluster every task runs in its own pod and cannot "
                "see another pod's files; use an object-store URI such as s3://<bucket>/llmops (configs/gpu.yaml)"
            )
    names = {"llm.api_key_env": cfg.llm.api_key_env if cfg.llm else None}
    judge = cfg.eval.metrics.ragas.judge
    names["eval.metrics.ragas.judge.api_key_env"] = judge.api_key_env if judge else None
    for field, name in names.items():
        wanted = secret_env.get(field)
        if name is not None and wanted is not None and name != wanted:
            problems.append(
                f"{field}: {name!r}, but on a cluster the key is the Flyte Secret mounted as {wanted}; set {field} "
                f"to {wanted!r} (see README, 'Run on a Flyte cluster')"
            )
    return problems
