"""Evaluation and gate tasks: score a model through the shared RAG chain, then decide on promotion."""

from __future__ import annotations

import tempfile
import typing
from pathlib import Path

from flytekit import task
from flytekit.types.directory import FlyteDirectory
from flytekit.types.file import FlyteFile

from eval.schemas import RetrievalEvalReport
from eval.stage import decide, evaluate_model as evaluate_model_fn, load_rag_eval_report, store_decision, store_eval_run
from llmops.corpus.documents import read_documents
from llmops.corpus.qa import read_qa
from llmops.release.promotion import production_baseline
from llmops.index.retriever import Retriever
from llmops.storage import fetch_file
from tasks.common import (
    CPU_RESOURCES,
    EVAL_SECRETS,
    TIMEOUTS,
    decode_config,
    execution_id,
    gpu_task_settings,
)
from tasks.decks import evaluation_deck, gates_deck, publish
from tasks.tracking import track_evaluation

EvalOutputs = typing.NamedTuple("EvalOutputs", [("report_uri", str), ("samples_uri", str)])
GateOutputs = typing.NamedTuple("GateOutputs", [("passed", bool), ("decision_uri", str), ("candidate_report_uri", str)])


def _local(d: FlyteDirectory | None) -> Path | None:
    return None if d is None else Path(d.download())


# On a cluster the model runs on a GPU (vLLM started in the pod, or transformers). Cached: every input is
# content-addressed (index, adapter and eval set versions) and the stage key covers the model, the generation and
# metric config and the code, so the same inputs give the same report.
@task(**gpu_task_settings(secrets=EVAL_SECRETS), enable_deck=True, deck_fields=())
def evaluate_model(
    config_json: str,
    stage_key: str,
    index: FlyteDirectory,
    qa_uri: typing.Optional[str],
    documents_uri: str,
    retrieval_report: FlyteFile,
    label: str,
    adapter: typing.Optional[FlyteDirectory] = None,
    adapter_version: str = "",
) -> EvalOutputs:
    cfg = decode_config(config_json, "evaluate")
    retriever = Retriever.load(index.remote_source or index.path)
    scratch = tempfile.mkdtemp()
    examples = read_qa(fetch_file(qa_uri, scratch)) if qa_uri else []
    gold_texts = {d.doc_id: d.text for d in read_documents(fetch_file(documents_uri, scratch))}
    run = evaluate_model_fn(
        cfg,
        retriever,
        examples,
        gold_texts,
        label=label,
        adapter_dir=_local(adapter),
        adapter_version=adapter_version or None,
        adapter_uri=(adapter.remote_source or adapter.path) if adapter is not None else None,
        retrieval_report=RetrievalEvalReport.model_validate_json(Path(retrieval_report.download()).read_bytes()),
        execution_id=execution_id(),
    )
    report_uri, samples_uri = store_eval_run(cfg, run)
    deck = evaluation_deck(run.report, run.samples)
    publish(f"Evaluation: {label}", deck)
    # After the stage's work, from the whole config: `tracking` is outside the stage key (tasks/tracking.py).
    track_evaluation(config_json, run.report, report_uri, samples_uri, deck)
    return EvalOutputs(report_uri, samples_uri)


@task(requests=CPU_RESOURCES, timeout=TIMEOUTS["cpu"])
def no_finetune() -> str:
    """The fine-tune branch when fine-tuning is off: no challenger report."""
    return ""


# Not cached: the production baseline it compares against can change between runs.
@task(requests=CPU_RESOURCES, timeout=TIMEOUTS["cpu"], enable_deck=True, deck_fields=())
def apply_gates(config_json: str, base_report_uri: str, finetuned_report_uri: str) -> GateOutputs:
    cfg = decode_config(config_json)
    reports = {"base": load_rag_eval_report(base_report_uri)}
    if finetuned_report_uri:
        reports["finetuned"] = load_rag_eval_report(finetuned_report_uri)
    baseline_uri = production_baseline(cfg)
    baseline = load_rag_eval_report(baseline_uri) if baseline_uri else None
    decision = decide(cfg, reports, baseline, baseline_uri)
    decision_uri = store_decision(cfg, decision)
    publish("Gates", gates_deck(decision, reports))
    candidate_uri = finetuned_report_uri or base_report_uri
    return GateOutputs(decision.verdict.passed, decision_uri, candidate_uri)


__all__ = ["apply_gates", "evaluate_model", "no_finetune"]
