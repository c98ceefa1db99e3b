"""llmops_pipeline: index -> (LoRA fine-tune) -> evaluate -> gates -> promote.

Run locally (offline quickstart, a few minutes on a laptop CPU):
    pyflyte run workflows/pipeline.py llmops_pipeline --config configs/quickstart.yaml
On a cluster: add --remote (see README, "Run on a Flyte cluster").

With fine-tuning on, the base model and the fine-tuned one are both evaluated on the same questions, and the
fine-tuned one is the candidate the gates judge. With it off, the fine-tune branch is skipped and the base model is
the candidate. The candidate becomes a release in the registry; only when its gates pass does the production alias
move to it (the serving deployment follows the alias).
"""

from __future__ import annotations

import typing

from flytekit import conditional, workflow
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from tasks.config import finetune_enabled, resolve_config
from tasks.evaluate import apply_gates, evaluate_model, no_finetune
from tasks.finetune import finetune
from tasks.promote import promote
from workflows.index import index_stage

PipelineOutputs = typing.NamedTuple(
    "PipelineOutputs",
    [
        ("index", FlyteDirectory),
        ("index_version", str),
        ("candidate_report", str),
        ("decision", str),
        ("passed", bool),
        ("release", str),
    ],
)


@workflow
def finetune_and_evaluate(
    config_json: str,
    stage_keys: dict[str, str],
    index: FlyteDirectory,
    qa_uri: typing.Optional[str],
    documents_uri: str,
    retrieval_report: FlyteFile,
) -> str:
    """LoRA fine-tune on retrieval-augmented QA pairs, then evaluate base + adapter. Returns the report URI."""
    tuned = finetune(config_json=config_json, stage_key=stage_keys["finetune"], index=index)
    evaluated = evaluate_model(
        config_json=config_json,
        stage_key=stage_keys["evaluate"],
        index=index,
        qa_uri=qa_uri,
        documents_uri=documents_uri,
        retrieval_report=retrieval_report,
        label="finetuned",
        adapter=tuned.adapter,
        adapter_version=tuned.version,
    )
    return evaluated.report_uri


@workflow
def llmops_pipeline(config: FlyteFile) -> PipelineOutputs:
    resolved = resolve_config(config=config)
    config_json = resolved.config_json
    idx = index_stage(config_json=config_json, stage_keys=resolved.stage_keys)
    base = evaluate_model(
        config_json=config_json,
        stage_key=resolved.stage_keys["evaluate"],
        index=idx.index,
        qa_uri=idx.qa_uri,
        documents_uri=idx.documents_uri,
        retrieval_report=idx.retrieval_report,
        label="base",
    )
    enabled = finetune_enabled(config_json=config_json)
    finetuned_report = (
        conditional("finetune")
        .if_(enabled.is_true())
        .then(
            finetune_and_evaluate(
                config_json=config_json,
                stage_keys=resolved.stage_keys,
                index=idx.index,
                qa_uri=idx.qa_uri,
                documents_uri=idx.documents_uri,
                retrieval_report=idx.retrieval_report,
            )
        )
        .else_()
        .then(no_finetune())
    )
    gates = apply_gates(
        config_json=config_json, base_report_uri=base.report_uri, finetuned_report_uri=finetuned_report
    )
    release = promote(
        config_json=config_json,
        index=idx.index,
        candidate_report_uri=gates.candidate_report_uri,
        decision_uri=gates.decision_uri,
    )
    return PipelineOutputs(
        idx.index, idx.version, gates.candidate_report_uri, gates.decision_uri, gates.passed, release
    )
