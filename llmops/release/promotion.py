"""Promotion: turn an evaluated candidate into a release and point the serving alias at it when its gates passed.

The release binds what serving needs (index artifact, base model, adapter, and the sha256 of each artifact's
manifest, checked here against every file) with the evidence that approved it (eval report and gate decision), the
config, git sha and Flyte execution id.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmops.index.artifact import git_sha
from llmops.config import PipelineConfig
from llmops.release.registry import AliasEvent, GateOutcome, Release, ReleaseRegistry, diff_releases
from llmops.release.artifacts import pin_artifacts

__all__ = ["Candidate", "PromotionResult", "production_baseline", "promote_candidate"]


@dataclass(frozen=True)
class Candidate:
    """What a release binds from the candidate's eval report and gate decision (eval.schemas.RagEvalReport and
    GateDecision; the task that promotes reads them, as llmops sits below eval)."""

    index_version: str
    base_model: str
    adapter_version: str | None
    adapter_uri: str | None
    metrics: dict[str, float | None]
    report_uri: str
    decision_uri: str
    gates_passed: bool  # this run's verdict
    gate_outcome: GateOutcome  # this run's gates per status, and its summary


@dataclass(frozen=True)
class PromotionResult:
    release: Release
    event: AliasEvent | None  # None when the gates failed and nothing moved
    previous: Release | None  # what the alias pointed at before
    diff: dict | None  # previous -> new, for the release card
    created: bool  # False: an earlier run registered this release (with its own gate decision)
    decision_uri: str  # this run's gate decision
    gates_passed: bool  # this run's verdict
    gate_outcome: GateOutcome  # this run's gates per status, and its summary


def promote_candidate(
    cfg: PipelineConfig,
    *,
    index_uri: str,
    candidate: Candidate,
    alias: str,
    execution_id: str | None = None,
) -> PromotionResult:
    """Register the candidate as a release (always: failed candidates are kept for inspection and forced
    promotion), and move `alias` to it only when its gates passed: in this run, and when it was registered (a re-run
    finds the release an earlier run registered; the registry will not promote one registered with failed gates)."""
    registry = ReleaseRegistry(cfg.artifacts.registry_root)
    passed = candidate.gates_passed
    release, created = registry.register_or_find(
        index_version=candidate.index_version,
        index_uri=index_uri,
        base_model=candidate.base_model,
        adapter_version=candidate.adapter_version,
        adapter_uri=candidate.adapter_uri,
        **pin_artifacts(index_uri, candidate.adapter_uri, cfg.serving.adapter_cache_dir),
        eval_report_uri=candidate.report_uri,
        gate_decision_uri=candidate.decision_uri,
        gates_passed=passed,
        gate_outcome=candidate.gate_outcome,
        metrics=dict(candidate.metrics),
        config=cfg.model_dump(mode="json"),
        git_sha=git_sha(),
        flyte_execution_id=execution_id,
    )
    previous = registry.resolve(alias)
    event = None
    if passed and release.gates_passed and (previous is None or previous.release != release.release):
        event = registry.promote(release.release, alias, actor=execution_id)
    diff = diff_releases(previous, release) if previous is not None else None
    return PromotionResult(release, event, previous, diff, created, candidate.decision_uri, passed,
                           candidate.gate_outcome)


def production_baseline(cfg: PipelineConfig) -> str | None:
    """The report the gates compare with: `gates.baseline_report` if set, else the served release's
    (`serving.alias`, production by default)."""
    if cfg.gates.baseline_report:
        return cfg.gates.baseline_report
    release = ReleaseRegistry(cfg.artifacts.registry_root).resolve(cfg.serving.alias)
    return release.eval_report_uri if release else None
