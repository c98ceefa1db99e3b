"""RAG-aware LoRA fine-tuning: QA pairs + retrieved contexts -> chat SFT data -> trl SFTTrainer -> PEFT adapter.

The model is trained on exactly the prompts it will see in evaluation and serving: every training question is run
through the index (`retrieval.k`, `retrieval.mode`) and the shared `PromptBuilder`, and the gold answer becomes the
assistant turn. The loss covers the assistant turn only: records are given to trl as prompt/completion pairs, which
works with any chat template (the `{% generation %}` markers that trl's `assistant_only_loss` needs are rare in
real models' templates).

Plain functions, in the order `finetune` calls them:

    load_training_examples -> build_sft_dataset (build_sft_records, split_records) -> adapter_version
    -> train_lora -> publish the adapter artifact (adapter files + adapter_manifest.json, `llmops.finetune.manifest`)

The adapter artifact is content-addressed like an index: its version is a digest of the base model's files, the
training data, the hyperparameters and the code version, so a rerun with the same inputs reuses the verified
existing version instead of training again.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from llmops.index.artifact import FileEntry, git_sha, library_versions, materialize, utc_now
from llmops.config import PipelineConfig
from llmops.index.embedding import model_digest
from llmops.finetune.sft_data import build_sft_dataset, load_tokenizer, require_llm, resolve_base_model
from llmops.finetune.training import TRAINING_LIBRARIES, check_lora_rank, train_lora, training_device, training_precision
from llmops.finetune.manifest import (
    ADAPTER_MANIFEST,
    ADAPTER_SCHEMA_VERSION,
    AdapterLineage,
    AdapterManifest,
    BaseModelSection,
    LoraSection,
    RetrievalSettings,
    TrainingDataSection,
    TrainingHyperparameters,
    verify_adapter,
)
from llmops.index.retriever import Retriever
from llmops.provenance.stage_inputs import config_record, stage_code
from llmops.storage import (
    atomic_write_json,
    digest_of,
    file_checksums,
    join_uri,
    publish_directory,
    staging_dir,
    uri_exists,
)


# ---------------------------------------------------------------------------------------------------------------
# The stage: dataset -> version -> (reuse | train + publish)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneOutput:
    adapter_uri: str
    version: str
    reused: bool
    manifest: AdapterManifest


def _hyperparameters(cfg: PipelineConfig, precision: str, max_prompt_tokens: int) -> TrainingHyperparameters:
    return TrainingHyperparameters(
        **cfg.finetune.model_dump(exclude={"enabled", "train_path"}),
        precision=precision,
        retrieval=RetrievalSettings(k=cfg.retrieval.k, mode=cfg.retrieval.mode),
        max_prompt_tokens=max_prompt_tokens,
    )


def adapter_version(
    base_digest: str, data_digest: str, hyperparameters: TrainingHyperparameters, code: str | None = None
) -> str:
    """Digest of everything that determines the adapter: base model files, training data, hyperparameters, code."""
    return digest_of(
        {
            "schema": ADAPTER_SCHEMA_VERSION,
            "base_model": base_digest,
            "data": data_digest,
            "hyperparameters": hyperparameters.model_dump(mode="json"),
            "code": code if code is not None else stage_code("finetune").fingerprint,
        }
    )


def finetune(
    cfg: PipelineConfig,
    index_uri: str | Path,
    *,
    retriever: Retriever | None = None,
    execution_id: str | None = None,
) -> FinetuneOutput:
    """Build the SFT data from `finetune.train_path` and the index, then train and publish the adapter (or reuse the
    verified existing version for the same inputs). Artifacts go to `<artifacts.root>/adapters/<version>`."""
    llm = require_llm(cfg)
    ft = cfg.finetune
    check_lora_rank(ft, llm)
    device = training_device(llm.device)
    precision = training_precision(ft, device)
    model_path = resolve_base_model(llm)
    base_digest = model_digest(model_path)
    tokenizer = load_tokenizer(model_path)
    retriever = retriever or Retriever.load(index_uri)
    dataset = build_sft_dataset(cfg, retriever, tokenizer)
    hyperparameters = _hyperparameters(cfg, precision, dataset.max_prompt_tokens)
    version = adapter_version(base_digest, dataset.digest, hyperparameters)
    artifact_uri = join_uri(cfg.artifacts.root, "adapters", version)
    if uri_exists(join_uri(artifact_uri, ADAPTER_MANIFEST)):
        # Reuse only a verified artifact; a damaged one fails the run and is left for inspection.
        return FinetuneOutput(artifact_uri, version, True, verify_adapter(materialize(artifact_uri)))

    stage = staging_dir(cfg.artifacts.root)
    try:
        result = train_lora(
            model_path, dataset.train, dataset.validation, ft, stage, device=device, base_model_name=llm.model
        )
        atomic_write_json(stage / "pipeline_config.json", config_record(cfg))
        files = {
            name: FileEntry(sha256=digest, bytes=(stage / name).stat().st_size)
            for name, digest in file_checksums(stage, exclude=(ADAPTER_MANIFEST,)).items()
        }
        manifest = AdapterManifest(
            schema_version=ADAPTER_SCHEMA_VERSION,
            version=version,
            created_at=utc_now(),
            base_model=BaseModelSection(model=llm.model, revision=llm.revision, digest=base_digest),
            data=TrainingDataSection(train_path=ft.train_path, digest=dataset.digest, uri=dataset.uri,
                                     **dataset.stats),
            index_version=retriever.version,
            hyperparameters=hyperparameters,
            lora=LoraSection(**ft.lora.model_dump(), max_lora_rank=llm.max_lora_rank),
            training=result.section(),
            files=files,
            libraries=library_versions(*TRAINING_LIBRARIES),
            lineage=AdapterLineage(git_sha=git_sha(), code_version=stage_code("finetune").digest,
                                   execution_id=execution_id),
        )
        atomic_write_json(stage / ADAPTER_MANIFEST, manifest.model_dump(mode="json"))
        publish_directory(stage, artifact_uri, commit_file=ADAPTER_MANIFEST)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # gone already when published
    return FinetuneOutput(artifact_uri, version, False, manifest)


