"""First task of every workflow: validate the YAML config once, before any work starts."""

from __future__ import annotations

from flytekit import task
from flytekit.types.file import FlyteFile

from llmops.config import PipelineConfig, load_config


@task
def resolve_config(config: FlyteFile) -> str:
    """Validate the config file and return it as JSON with local paths made absolute.

    Relative paths resolve against the working directory of the run (the repository root for `pyflyte run`).
    """
    return load_config(config.download()).resolved().model_dump_json()


@task
def finetune_enabled(config_json: str) -> bool:
    """What the pipeline's fine-tune branch turns on."""
    return PipelineConfig.model_validate_json(config_json).finetune.enabled
