"""First task of every workflow: validate the YAML config once, before any work starts, and key the cached stages.

Never cached: it reads the config file and what the config names (training data, local models, code, library
versions) on every run, so that each cached stage's key (`llmops/provenance/stage_inputs.py`) is the content of what it reads.
"""

from __future__ import annotations

import typing

from flytekit import task
from flytekit.types.file import FlyteFile

from tasks.cluster import cluster_config_problems
from llmops.config import PipelineConfig, load_config
from llmops.errors import ConfigError
from llmops.provenance.stage_inputs import stage_keys
from tasks.common import JUDGE_API_KEY, LLM_API_KEY, MODEL_SECRETS, TIMEOUTS, run_id

ResolvedConfig = typing.NamedTuple("ResolvedConfig", [("config_json", str), ("stage_keys", dict[str, str])])


# The Secrets the keys come from on a cluster, by the config field that names their environment variable.
SECRET_ENV = {"llm.api_key_env": LLM_API_KEY.env_var, "eval.metrics.ragas.judge.api_key_env": JUDGE_API_KEY.env_var}


# HF_TOKEN: a Hub model id without a pinned revision is resolved to its commit here, and gated models need the token.
@task(timeout=TIMEOUTS["cpu"], secret_requests=MODEL_SECRETS)
def resolve_config(config: FlyteFile) -> ResolvedConfig:
    """Validate the config file; return it as JSON with local paths made absolute, and each cached stage's key.

    Relative paths resolve against the working directory of the run (the repository root for `pyflyte run`). On a
    cluster, a config that only works on one machine (a local artifact root) stops the run here, before any work.
    """
    path = config.download()
    cfg = load_config(path).resolved()
    if run_id() is not None and (problems := cluster_config_problems(cfg, SECRET_ENV)):
        raise ConfigError(str(path), problems)
    return ResolvedConfig(cfg.model_dump_json(), stage_keys(cfg))


@task(timeout=TIMEOUTS["cpu"])
def finetune_enabled(config_json: str) -> bool:
    """What the pipeline's fine-tune branch turns on."""
    return PipelineConfig.model_validate_json(config_json).finetune.enabled
