"""The adapter artifact's manifest (`adapter_manifest.json`): one versioned schema with typed sections, read, written
and verified only through this module.

It sits beside the index manifest (`llmops.index.artifact`) and shares its base model, `FileEntry` and checks, so
both artifacts refuse missing, foreign, edited and incomplete folders alike. It imports no training library: the
release checks and the server read it without loading torch or peft.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from llmops.config import LoraConfig
from llmops.index.artifact import (
    ArtifactModel,
    FileEntry,
    file_problems,
    load_manifest,
    raise_if_unverified,
    unlisted_files,
)

__all__ = [
    "ADAPTER_FILES",
    "ADAPTER_MANIFEST",
    "ADAPTER_SCHEMA_VERSION",
    "AdapterLineage",
    "AdapterManifest",
    "BaseModelSection",
    "LoraSection",
    "RetrievalSettings",
    "TrainingDataSection",
    "TrainingHyperparameters",
    "TrainingSection",
    "read_adapter_manifest",
    "verify_adapter",
]

ADAPTER_MANIFEST = "adapter_manifest.json"
# 1: the JSON shape of the first, untyped manifests; the typed sections below read and write that same shape.
ADAPTER_SCHEMA_VERSION = 1
# What peft's `save_pretrained` writes and vLLM and peft load: an adapter folder without them is no adapter.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


class BaseModelSection(ArtifactModel):
    """The base model the adapter was trained on: as configured (`llm.model`), and the digest of its files."""

    model: str
    revision: str | None = None
    digest: str


class TrainingDataSection(ArtifactModel):
    """The SFT records (`finetune.build_sft_records`) and how they were made from the QA pairs."""

    train_path: str | None  # finetune.train_path, as configured
    digest: str  # sha256 of the records file (both splits)
    uri: str  # the records file in the artifact store
    questions: int
    records: int
    multi_turn: int = 0  # records of follow-up questions, trained with their conversation (0 in older manifests)
    skipped_no_answer: int
    skipped_too_long: int
    contexts_kept: int
    contexts_dropped_for_length: int
    answer_in_contexts: int  # records whose gold answer appears in a retrieved context
    max_tokens: int
    mean_tokens: float
    train: int
    validation: int
    index_version: str  # the index the contexts were retrieved from


class RetrievalSettings(ArtifactModel):
    k: int
    mode: Literal["dense", "lexical", "hybrid"]


class TrainingHyperparameters(ArtifactModel):
    """The finetune section as trained on (its data path is in `data`), and what the config does not say: the
    precision chosen for the device, the retrieval the contexts came from and the prompt budget they were fitted to.
    All of it goes into the adapter version (`llmops.finetune.stage.adapter_version`)."""

    validation_fraction: float
    lora: LoraConfig
    learning_rate: float
    epochs: float
    max_steps: int | None
    batch_size: int
    gradient_accumulation_steps: int
    max_length: int
    packing: bool
    quantization: Literal["none", "4bit"]
    seed: int
    precision: str  # fp32 | bf16 | 4bit-nf4+bf16 ...
    retrieval: RetrievalSettings
    max_prompt_tokens: int


class LoraSection(LoraConfig):
    max_lora_rank: int  # llm.max_lora_rank, which the rank was checked against (vLLM's --max-lora-rank)


class TrainingSection(ArtifactModel):
    """How training went (`llmops.finetune.training.TrainResult`)."""

    train_loss: list[tuple[int, float]]  # (optimizer step, training loss)
    validation_loss: list[tuple[int, float]]  # (optimizer step, validation loss); step 0 is before training
    final_train_loss: float | None
    initial_validation_loss: float | None
    final_validation_loss: float | None
    steps: int
    epochs: float
    seconds: float
    device: str
    precision: str
    loss_on: str
    planned_steps: int | None = None
    log_every: int | None = None
    eval_every: int | None = None


class AdapterLineage(ArtifactModel):
    git_sha: str | None = None
    code_version: str | None = None
    execution_id: str | None = None  # the Flyte execution that trained it


class AdapterManifest(ArtifactModel):
    schema_version: int
    kind: Literal["lora_adapter"] = "lora_adapter"
    version: str
    created_at: str
    base_model: BaseModelSection
    data: TrainingDataSection
    index_version: str  # the index the training contexts were retrieved from
    hyperparameters: TrainingHyperparameters
    lora: LoraSection
    training: TrainingSection
    files: dict[str, FileEntry]
    libraries: dict[str, str]
    lineage: AdapterLineage


def read_adapter_manifest(directory: str | Path, sha256: str | None = None) -> AdapterManifest:
    return load_manifest(Path(directory), ADAPTER_MANIFEST, ADAPTER_SCHEMA_VERSION, AdapterManifest,
                         "adapter artifact", "train one with the finetune task", sha256=sha256)


def verify_adapter(directory: str | Path, manifest_sha256: str | None = None) -> AdapterManifest:
    """Check every file the manifest lists (size and sha256), that it lists every file, and that the adapter files
    themselves are there; with `manifest_sha256` (a release's pin), also that the manifest itself is the one
    released."""
    directory = Path(directory)
    manifest = read_adapter_manifest(directory, manifest_sha256)
    problems = file_problems(directory, manifest.files) + unlisted_files(directory, manifest.files, ADAPTER_MANIFEST)
    for required in ADAPTER_FILES:
        if required not in manifest.files:
            problems.append(f"{required}: not listed in the manifest")
    raise_if_unverified(directory, manifest, "adapter artifact", problems, "Retrain it")
    return manifest
