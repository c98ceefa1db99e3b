"""What the evaluation and gate stages show in the Flyte console.

Plain functions over the records `eval/stage.py` writes (eval.schemas), so tests render them in headless Chromium.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from eval.gates import GateVerdict
from eval.runner import SampleRecord
from eval.schemas import GateDecision, MetricRecord, RagEvalReport
from llmops.htmlkit import Html, bar_chart_svg, fragment, kv_table, section, status_badge, table

__all__ = ["evaluation_deck", "gates_deck"]

WORST_SAMPLES = 50


def _metric_rows(metrics: Mapping[str, MetricRecord]) -> list[list[object]]:
    rows = []
    for name, m in sorted(metrics.items()):
        direction = "higher" if m.higher_is_better else "lower"
        status = "measured" if m.value is not None else f"not measured: {m.reason or 'unknown reason'}"
        rows.append([name, m.value, f"{direction} is better", status])
    return rows


def _metrics_section(report: RagEvalReport) -> Html:
    return section(
        "Metrics",
        table(["metric", "value", "direction", "status"], _metric_rows(report.metrics)),
        note=f"{report.questions} questions answered by {report.model.name}. A metric that could not be "
        "computed is listed as not measured, with its reason; a gate on it fails.",
    )


def _retrieval_section(report: RagEvalReport) -> Html:
    retrieval = report.retrieval
    modes = retrieval.modes if retrieval is not None else {}
    if not modes:
        return section("Retrieval", Html('<p class="empty">no retrieval evaluation for this run</p>'))
    keys = list(next(iter(modes.values())).metrics)
    rows = [[mode, *[m.metrics.get(k) for k in keys]] for mode, m in modes.items()]
    return section(
        "Retrieval",
        table(["mode", *keys], rows),
        note=f"Same held-out questions as the index run; the chain retrieves in {retrieval.default_mode} mode.",
    )


def _guardrails_section(report: RagEvalReport) -> Html:
    g = report.guardrails
    if g is None:
        return section("Guardrails", Html('<p class="empty">not recorded for this run</p>'))
    summary = kv_table(
        {
            "refused (content_filter)": f"{g.refusals} of {g.questions}",
            "refusal rate": g.refusal_rate,
            "added latency p50 (ms)": None if g.added_p50_s is None else round(g.added_p50_s * 1000, 3),
            "added latency p95 (ms)": None if g.added_p95_s is None else round(g.added_p95_s * 1000, 3),
        }
    )
    by_policy = table(["policy", "refusals"], [[p, n] for p, n in g.by_policy.items()]) if g.by_policy else Html("")
    return section(
        "Guardrails",
        Html(summary + by_policy),
        note="Input and output checks on the served chat path (the release's guardrails section); a refused "
        "question gets the refusal message instead of an answer. Gates can use guardrails.refusal_rate.",
    )


def _answerability_section(report: RagEvalReport) -> Html:
    a = report.answerability
    if a is None:
        return section("Answer only from the documents", Html('<p class="empty">not measured in this run</p>'))
    if not a.enabled:
        return section("Answer only from the documents", status_badge(None, "off (answerability.enabled: false)"))

    def rate(refused: int, total: int) -> str:
        return f"{refused} of {total}" + (f" ({refused / total:.0%})" if total else "")

    return section(
        "Answer only from the documents",
        kv_table({
            "threshold (best dense cosine)": a.threshold,
            "threshold from": {"calibrated": "calibrated on the eval set's calibration split",
                               "config": "set in the config",
                               "fallback": "fallback_threshold: no eval set to calibrate on"}.get(
                                   a.threshold_from or "", a.threshold_from),
            "unanswerable refused (higher is better)": rate(a.refused_unanswerable, a.unanswerable_questions),
            "answerable refused (lower is better)": rate(a.refused_answerable, a.answerable_questions),
        }),
        note="A question whose best dense match in the index scores below the threshold gets the configured "
        "message instead of a generated answer; the threshold is the index manifest's, as served. Answer metrics "
        "score the answerable questions only.",
    )


def _retrieval_cell(s: SampleRecord) -> Html:
    if not s.answerable:
        return status_badge(s.refused, "unanswerable: refused" if s.refused else "unanswerable: answered")
    if s.refused:
        return status_badge(False, "refused: not in the documents")
    return status_badge(s.retrieval_hit, "hit" if s.retrieval_hit else "miss")


def _sample_rows(samples: Sequence[SampleRecord], primary: str) -> list[list[object]]:
    def key(s: SampleRecord) -> float:
        v = s.scores.get(primary)
        return -1.0 if v is None else v  # unscorable samples first: they need a look too

    rows = []
    for s in sorted(samples, key=key)[:WORST_SAMPLES]:
        sources = "; ".join(f"[{i}] {src['title'] or src['source']}" for i, src in enumerate(s.sources, 1))
        rows.append(
            [
                s.scores.get(primary),
                s.question,
                s.answer or "(empty)",
                " | ".join(s.references) or "\u2014",
                _retrieval_cell(s),
                sources,
                round(s.latency_s, 3),
                s.completion_tokens,
            ]
        )
    return rows


def _conversation_section(report: RagEvalReport, samples: Sequence[SampleRecord]) -> Html:
    """The follow-up questions (conversational QA): how their queries were made and how they fared next to the
    single questions."""
    conv = report.conversations
    if conv is None or conv.questions == 0:
        return section("Conversations", Html('<p class="empty">no multi-turn questions in this eval set</p>'))
    names = sorted({k.split(".", 1)[1] for k in conv.metrics})
    rewrites = ", ".join(f"{method} {n}" for method, n in conv.rewrite.items()) or "\u2014"
    head = kv_table(
        {
            "multi-turn questions": conv.questions,
            "earlier turns per question (mean)": conv.turns_mean,
            "query rewrite (method: count)": rewrites,
            "rewrite time per question (s)": conv.rewrite_mean_s,
        }
    )
    rows = [[n, conv.metrics.get(f"multi_turn.{n}"), conv.metrics.get(f"single_turn.{n}")] for n in names]
    follow_ups = [
        [s.question, s.turns, s.retrieval_query, s.rewrite,
         status_badge(s.retrieval_hit, "hit" if s.retrieval_hit else "miss"), s.answer or "(empty)"]
        for s in samples if s.turns
    ]
    return Html("\n".join([
        section(
            "Conversations",
            head,
            note="Follow-ups are answered with their earlier turns through the served chat path. Their retrieval "
            "query is the model's rewrite (llm), the previous user message + the follow-up (concat), or that form "
            "after a failed rewrite (fallback).",
        ),
        section("Follow-ups vs single questions", table(["metric", "multi-turn", "single-turn"], rows),
                note="retrieval_hit_rate: a retrieved context is from the gold document or holds an answer; the "
                "others are the means of the per-sample answer metrics."),
        section(
            "Follow-ups",
            table(["follow-up", "earlier turns", "searched for", "rewrite", "retrieval", "answer"], follow_ups),
        ),
    ]))


RANDOM_MODEL_NOTE = (
    "Random test model: its weights are untrained noise (its folder's tiny_llm.json says so), so its answers are "
    "noise and answer metrics near 0 are expected. This run shows the machinery working, not model quality; point "
    "llm.model at a real checkpoint for that."
)
LATENCY_NOTE = (
    "Latency is per request: from a question's request to its own last token (in-process batches share one "
    "prefill: from the batch's start to that row's last token). Retrieval is batched: its time is the batch's mean."
)


def _production(report: RagEvalReport) -> str:
    """How many evaluated questions came from production (reviewed with `llmops feedback merge`)."""
    if report.production_questions is None:
        return "not counted (a report from before production questions)"
    return f"{report.production_questions} of {report.questions} (from production, reviewed)"


def evaluation_deck(report: RagEvalReport, samples: Sequence[SampleRecord]) -> str:
    primary = report.primary_metric
    model = report.model
    latency = report.latency
    random_weights = model.random_weights
    summary = kv_table(
        {
            "label": report.label,
            "model": model.name,
            **({"weights": status_badge(None, "random: answers are noise")} if random_weights else {}),
            "adapter": model.adapter_version or "none (base model)",
            "backend": model.backend,
            "index": report.index_version,
            "questions": report.questions,
            "production questions": _production(report),
            "latency per request p50 (s)": latency.p50_s,
            "latency per request p95 (s)": latency.p95_s,
            "retrieval per question (s)": latency.retrieval_mean_s,
            "completion tokens (mean)": latency.completion_tokens_mean,
            "wall time (s)": report.seconds,
        }
    )
    notes = [RANDOM_MODEL_NOTE] if random_weights else []
    return fragment(
        section(f"Evaluation: {report.label}", summary, note=" ".join([*notes, LATENCY_NOTE])),
        _metrics_section(report),
        _guardrails_section(report),
        _retrieval_section(report),
        _conversation_section(report, samples),
        _answerability_section(report),
        section(
            f"Samples, worst {primary} first",
            table(
                [primary, "question", "answer", "references", "retrieval", "sources", "latency s (request)",
                 "tokens"],
                _sample_rows(samples, primary),
            ),
            note=f"{min(len(samples), WORST_SAMPLES)} of {len(samples)} samples; all of them are in the "
            "per-sample parquet next to report.json.",
        ),
    )


_GATE_BADGES = {"passed": (True, "pass"), "failed": (False, "fail"), "skipped": (None, "skipped")}


def _gate_rows(verdict: GateVerdict) -> list[list[object]]:
    return [
        [
            g.metric,
            g.value,
            g.floor,
            g.baseline,
            g.max_drop,
            g.max_relative_drop,
            status_badge(*_GATE_BADGES[g.status]),
            g.reason,
        ]
        for g in verdict.gates
    ]


def _verdict_badge(verdict: GateVerdict) -> Html:
    if verdict.passed:
        return status_badge(True, "gates passed")
    return status_badge(False, "gates failed" if verdict.checked else "gates failed: nothing was checked")


def gates_deck(decision: GateDecision, reports: Mapping[str, RagEvalReport]) -> str:
    """Verdict, every gate, and champion (production / base model) vs challenger on every shared metric."""
    verdict = decision.verdict.to_verdict()
    candidate = decision.candidate
    model = decision.candidate_model
    name = model.name + ("; random test model" if model.random_weights else "")
    counts = verdict.counts()
    policy = decision.on_missing_baseline
    baseline = decision.baseline
    head = kv_table(
        {
            "verdict": _verdict_badge(verdict),
            "summary": verdict.summary(),
            "gates": f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped",
            "candidate": f"{candidate} ({name})",
            "baseline": verdict.baseline_source or "none: no production release yet",
            "without a baseline": f"regression checks {'are skipped' if policy == 'skip' else 'fail'} "
            f"(gates.on_missing_baseline: {policy}); floors always apply",
        }
    )
    series: dict[str, list[float]] = {}
    names = sorted({k for r in reports.values() for k, m in r.metrics.items() if m.value is not None})
    if baseline:
        series["production"] = [_num(baseline.get(n)) for n in names]
    for label, r in reports.items():
        values = r.metric_values()
        series[label] = [_num(values.get(n)) for n in names]
    chart = bar_chart_svg(names, series, value_label="metric value")
    return fragment(
        section("Promotion gates", head),
        section(
            "Gates",
            table(
                ["metric", "value", "floor", "baseline", "max drop", "max relative drop", "result", "reason"],
                _gate_rows(verdict),
            ),
            note="Floors always apply; regression limits compare with the production release's report. A skipped "
            "gate compared nothing (no baseline value): it is not a pass, and a verdict that checked nothing fails.",
        ),
        section(
            "Champion vs challenger",
            chart,
            note="Every measured metric of each model evaluated in this run, and of the production release when "
            "there is one. Bars are absent where a metric was not measured.",
        ),
    )


def _num(value: object) -> float:
    return float("nan") if value is None else float(value)
