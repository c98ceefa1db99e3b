"""Promote task: register the evaluated candidate as a release and move the served alias (serving.alias, default
production) when its gates passed."""

from __future__ import annotations

from flytekit import task
from flytekit.types.directory import FlyteDirectory

from eval.stage import load_gate_decision, load_rag_eval_report, release_candidate
from llmops.release.promotion import promote_candidate
from tasks.common import CPU_RESOURCES, TIMEOUTS, decode_config, execution_id
from tasks.decks import publish, release_card

__all__ = ["promote"]


# Not cached: it moves an alias, and the alias may have moved since an earlier run.
@task(requests=CPU_RESOURCES, timeout=TIMEOUTS["cpu"], enable_deck=True, deck_fields=())
def promote(config_json: str, index: FlyteDirectory, candidate_report_uri: str, decision_uri: str) -> str:
    """Returns the release id (registered even when the gates failed; only a passing one is promoted)."""
    cfg = decode_config(config_json)
    report = load_rag_eval_report(candidate_report_uri)
    candidate = release_candidate(report, candidate_report_uri, load_gate_decision(decision_uri), decision_uri)
    result = promote_candidate(
        cfg,
        index_uri=index.remote_source or index.path,
        candidate=candidate,
        alias=cfg.serving.alias,
        execution_id=execution_id(),
    )
    publish("Release", release_card(result, cfg.serving.alias, report.production_questions, report.questions))
    return result.release.release
