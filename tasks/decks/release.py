"""What the promote stage shows in the Flyte console: the release card."""

from __future__ import annotations

from llmops.htmlkit import Html, fragment, kv_table, section, status_badge, table
from llmops.release.promotion import PromotionResult

__all__ = ["release_card"]


def release_card(result: PromotionResult, alias: str, production_questions: int | None = None,
                 questions: int | None = None) -> str:
    """The release, whether it became `alias`, this run's gate decision, and what changed against the release it
    replaces. A re-run finds the release an earlier run registered: the card says so and links both decisions.
    `production_questions` of the `questions` its evaluation answered came from production (None: not counted)."""
    r = result.release
    gates = result.gate_outcome
    summary = {
        "release": r.release,
        "status": _status(result, alias),
        "gates (this run)": gates.summary,
        "gate decision (this run)": result.decision_uri,
    }
    if not result.created:
        summary["registered"] = (f"already existed: registered {r.created_at} by "
                                 f"{r.flyte_execution_id or 'an earlier run'} (gates {r.gates_label()})")
        summary["gate decision at registration"] = r.gate_decision_uri
    summary |= {
        "index": r.index_version,
        "base model": r.base_model,
        "adapter": r.adapter_version or "none",
        "eval report": r.eval_report_uri,
        "production questions in its evaluation": (
            "not counted" if production_questions is None
            else f"{production_questions} of {questions} evaluated questions (llmops feedback merge)"),
        "git sha": r.git_sha,
        "previous " + alias: result.previous.release if result.previous else "none (first release)",
    }
    parts = [section("Release", kv_table(summary))]
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


def _status(result: PromotionResult, alias: str) -> Html:
    r = result.release
    force = f"force with llmops registry promote {r.release} --force --reason ..."
    if result.event is not None:
        return status_badge(True, f"promoted to {alias}")
    if not result.gates_passed:
        nothing = result.gate_outcome.passed + result.gate_outcome.failed == 0
        why = "nothing was checked" if nothing else "gates failed"
        return status_badge(False, f"not promoted: {why} ({force})")
    if not r.gates_passed:
        return status_badge(False, f"not promoted: registered by an earlier run whose gates failed ({force})")
    return status_badge(True, f"already {alias}")
