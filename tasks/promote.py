"""Promote task: register the evaluated candidate as a release and move the served alias (serving.alias, default
production) when its gates passed."""

from __future__ import annotations

from flytekit import task
from flytekit.types.directory import FlyteDirectory

from eval.stage import load_report
from llmops.promotion import PromotionResult, promote_candidate
from llmops.report import fragment, kv_table, section, status_badge, table
from tasks.common import CPU_RESOURCES, TIMEOUTS, decode_config, execution_id
from tasks.decks import publish

# Not cached: it moves an alias, and the alias may have moved since an earlier run.
@task(requests=CPU_RESOURCES, timeout=TIMEOUTS["cpu"], enable_deck=True, deck_fields=())
def promote(config_json: str, index: FlyteDirectory, candidate_report_uri: str, decision_uri: str) -> str:
    """Returns the release id (registered even when the gates failed; only a passing one is promoted)."""
    cfg = decode_config(config_json)
    result = promote_candidate(
        cfg,
        index_uri=index.remote_source or index.path,
        report=load_report(candidate_report_uri),
        report_uri=candidate_report_uri,
        decision=load_report(decision_uri),
        decision_uri=decision_uri,
        alias=cfg.serving.alias,
        execution_id=execution_id(),
    )
    publish("Release", release_card(result, cfg.serving.alias))
    return result.release.release


def release_card(result: PromotionResult, alias: str) -> str:
    """The release, whether it became `alias`, and what changed against the release it replaces."""
    r = result.release
    if result.event is not None:
        status = status_badge(True, f"promoted to {alias}")
    elif r.gates_passed:
        status = status_badge(True, f"already {alias}")
    else:
        status = status_badge(False, f"not promoted: gates failed (force with llmops registry promote {r.release} "
                                     "--force --reason ...)")
    summary = kv_table(
        {
            "release": r.release,
            "status": status,
            "index": r.index_version,
            "base model": r.base_model,
            "adapter": r.adapter_version or "none",
            "eval report": r.eval_report_uri,
            "gate decision": r.gate_decision_uri,
            "git sha": r.git_sha,
            "previous " + alias: result.previous.release if result.previous else "none (first release)",
        }
    )
    parts = [section("Release", summary)]
    if result.diff is not None:
        d = result.diff
        changed = [[k, a, b] for k, (a, b) in d["changed"].items()]
        metrics = [[k, m["from"], m["to"], m["delta"]] for k, m in d["metrics"].items()]
        config = [[k, a, b] for k, (a, b) in d["config"].items()]
        parts += [
            section(f"Changed vs {alias}", table(["what", "before", "now"], changed)),
            section("Metrics vs " + alias, table(["metric", "before", "now", "delta"], metrics)),
            section("Config changes", table(["field", "before", "now"], config)),
        ]
    return fragment(*parts)
