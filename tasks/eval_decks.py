"""What the evaluation and gate stages show in the Flyte console.

Plain functions over the report dicts written by `eval/stage.py`, so tests render them in headless Chromium.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from eval.runner import SampleRecord
from llmops.report import Html, bar_chart_svg, fragment, kv_table, section, status_badge, table

__all__ = ["evaluation_deck", "gates_deck"]

WORST_SAMPLES = 50


def _metric_rows(metrics: Mapping[str, dict]) -> list[list[object]]:
    rows = []
    for name, m in sorted(metrics.items()):
        direction = "higher" if m["higher_is_better"] else "lower"
        status = "measured" if m["value"] is not None else f"not measured: {m.get('reason') or 'unknown reason'}"
        rows.append([name, m["value"], f"{direction} is better", status])
    return rows


def _metrics_section(report: dict) -> Html:
    return section(
        "Metrics",
        table(["metric", "value", "direction", "status"], _metric_rows(report["metrics"])),
        note=f"{report['questions']} questions answered by {report['model']['name']}. A metric that could not be "
        "computed is listed as not measured, with its reason; a gate on it fails.",
    )


def _retrieval_section(report: dict) -> Html:
    retrieval = report.get("retrieval") or {}
    modes = retrieval.get("modes") or {}
    if not modes:
        return section("Retrieval", Html('<p class="empty">no retrieval evaluation for this run</p>'))
    keys = [k for k in next(iter(modes.values()))["metrics"]]
    rows = [[mode, *[m["metrics"].get(k) for k in keys]] for mode, m in modes.items()]
    return section(
        "Retrieval",
        table(["mode", *keys], rows),
        note=f"Same held-out questions as the index run; the chain retrieves in {retrieval.get('default_mode')} mode.",
    )


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
                status_badge(s.retrieval_hit, "hit" if s.retrieval_hit else "miss"),
                sources,
                round(s.latency_s, 3),
                s.completion_tokens,
            ]
        )
    return rows


def evaluation_deck(report: dict, samples: Sequence[SampleRecord]) -> str:
    primary = report["primary_metric"]
    model = report["model"]
    latency = report["latency"]
    summary = kv_table(
        {
            "label": report["label"],
            "model": model["name"],
            "adapter": model.get("adapter_version") or "none (base model)",
            "backend": model["backend"],
            "index": report["index_version"],
            "questions": report["questions"],
            "latency p50 (s)": latency["p50_s"],
            "latency p95 (s)": latency["p95_s"],
            "retrieval per question (s)": latency["retrieval_mean_s"],
            "completion tokens (mean)": latency["completion_tokens_mean"],
            "wall time (s)": report["seconds"],
        }
    )
    return fragment(
        section(f"Evaluation: {report['label']}", summary),
        _metrics_section(report),
        _retrieval_section(report),
        section(
            f"Samples, worst {primary} first",
            table(
                [primary, "question", "answer", "references", "retrieval", "sources", "latency s", "tokens"],
                _sample_rows(samples, primary),
            ),
            note=f"{min(len(samples), WORST_SAMPLES)} of {len(samples)} samples; all of them are in the "
            "per-sample parquet next to report.json.",
        ),
    )


def _gate_rows(verdict: dict) -> list[list[object]]:
    return [
        [
            g["metric"],
            g["value"],
            g["floor"],
            g["baseline"],
            g["max_drop"],
            g["max_relative_drop"],
            status_badge(g["passed"], "pass" if g["passed"] else "fail"),
            g.get("reason") or "",
        ]
        for g in verdict["gates"]
    ]


def gates_deck(decision: dict, reports: Mapping[str, dict], baseline: Mapping[str, float | None] | None) -> str:
    """Verdict, every gate, and champion (production / base model) vs challenger on every shared metric."""
    verdict = decision["verdict"]
    candidate = decision["candidate"]
    head = kv_table(
        {
            "verdict": status_badge(verdict["passed"], "gates passed" if verdict["passed"] else "gates failed"),
            "candidate": f"{candidate} ({reports[candidate]['model']['name']})",
            "baseline": verdict.get("baseline_source") or "none: no production release yet, floors only",
        }
    )
    series: dict[str, list[float]] = {}
    names = sorted({k for r in reports.values() for k, m in r["metrics"].items() if m["value"] is not None})
    if baseline:
        series["production"] = [_num(baseline.get(n)) for n in names]
    for label, r in reports.items():
        series[label] = [_num(r["metrics"].get(n, {}).get("value")) for n in names]
    chart = bar_chart_svg(names, series, value_label="metric value")
    return fragment(
        section("Promotion gates", head),
        section(
            "Gates",
            table(
                ["metric", "value", "floor", "baseline", "max drop", "max relative drop", "result", "reason"],
                _gate_rows(verdict),
            ),
            note="Floors always apply; regression limits compare with the production release's report.",
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
