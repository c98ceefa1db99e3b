"""Fine-tune task: RAG-aware LoRA SFT on a GPU node; publishes a verified, versioned PEFT adapter artifact.

The logic lives in `llmops.finetune.stage`; this wrapper adds the GPU request, caching and the Deck (tasks/decks/finetune.py).
"""

from __future__ import annotations

import typing

from flytekit import Resources, task
from flytekit.types.directory import FlyteDirectory

from llmops.finetune.stage import finetune as finetune_fn
from llmops.provenance.stage_inputs import config_record
from tasks.common import (
    GPU_RESOURCES,
    TIMEOUTS,
    decode_config,
    execution_id,
    gpu_task_settings,
)
from tasks.decks import finetune_deck, publish
from tasks.tracking import track_finetune

__all__ = ["FINETUNE_RESOURCES", "FinetuneOutputs", "finetune"]

# More host memory than the other GPU tasks: loading a 7-8B base model in bf16 (~16 GB) passes through CPU RAM,
# and the trainer holds the tokenized dataset beside it.
FINETUNE_RESOURCES = Resources(cpu=GPU_RESOURCES.cpu, mem="48Gi", gpu=GPU_RESOURCES.gpu)

FinetuneOutputs = typing.NamedTuple("FinetuneOutputs", [("adapter", FlyteDirectory), ("version", str)])


# Cached by the stage key (training data, base model, fine-tune/LLM/prompt config, code, libraries) and the
# content-addressed index; the adapter version is content-addressed too, so a retry after preemption finds the
# published version instead of training again.
@task(**gpu_task_settings(FINETUNE_RESOURCES, TIMEOUTS["finetune"]), enable_deck=True, deck_fields=())
def finetune(config_json: str, stage_key: str, index: FlyteDirectory) -> FinetuneOutputs:
    cfg = decode_config(config_json, "finetune")
    out = finetune_fn(cfg, index.remote_source or index.path, execution_id=execution_id())
    deck = finetune_deck(out.manifest, reused=out.reused)
    publish("Fine-tune", deck)
    # After the stage's work, from the whole config: `tracking` is outside the stage key (tasks/tracking.py).
    track_finetune(config_json, config_record(cfg), out.manifest, out.reused, deck)
    # The adapter already lives in the store: hand Flyte its location instead of copying it to scratch space.
    return FinetuneOutputs(FlyteDirectory(out.adapter_uri, remote_directory=False), out.version)
