"""What the monitor task shows in the Flyte console: a window of production traffic against its reference release."""

from __future__ import annotations

import datetime as dt
import html

from llmops.htmlkit import Html, bar_chart_svg, fragment, kv_table, line_chart_svg, section, status_badge, table
from llmops.monitor.drift import DriftResult
from llmops.monitor.gaps import Gaps
from llmops.monitor.judge import JUDGE_METRICS, JudgeResult
from llmops.monitor.report import MonitorFiles, MonitorReport
from llmops.monitor.trends import HOUR_S, Trends

__all__ = ["monitor_deck"]


def monitor_deck(report: MonitorReport, files: MonitorFiles | None = None) -> str:
    t = report.trends
    return fragment(
        section("Summary", kv_table(_summary(report, files))),
        _traffic(report),
        _latency(t),
        _drift(report.drift),
        _judge(report.judge),
        _gaps(report.gaps),
        _skipped(report),
    )


def _summary(report: MonitorReport, files: MonitorFiles | None) -> dict:
    t, d = report.trends, report.drift
    start, end = report.window.iso()
    rows = {
        "window (UTC)": f"{start} to {end} ({report.window.days:g} days)",
        "reference": f"{report.alias}: {report.release or 'no release'}"
                     + (f" (index {report.index_version})" if report.index_version else ""),
        "requests": t.requests,
        "answered": t.answered,
        "no-answer rate (not in the documents)": _pct(t.no_answer_rate, t.not_in_documents, t.requests),
        "refusal rate (content filter)": _pct(t.refusal_rate, t.content_filter, t.requests),
        "negative feedback rate (down / rated)": _pct(t.negative_feedback_rate, t.down, t.rated),
        "feedback coverage (rated / answered)": _pct(t.feedback_coverage, t.rated_answered, t.answered),
        "retrieval drift": _drift_badge(d),
        "coverage gaps": f"{report.gaps.questions:,} questions in {len(report.gaps.clusters)} clusters",
        "log": f"{report.log.files:,} files, {report.log.skipped_lines:,} lines skipped"
               + (f" ({report.log.note})" if report.log.note else ""),
    }
    if files is not None:
        rows["metrics file"] = files.metrics
        rows["latest.json"] = files.latest if files.latest_moved else f"{files.latest} (left: it names a later window)"
    return rows


def _pct(rate: float | None, part: int, whole: int) -> str:
    return "not measured (nothing to divide by)" if rate is None else f"{rate:.1%} ({part:,} of {whole:,})"


def _drift_badge(d: DriftResult) -> Html | str:
    if d.value is None:
        return status_badge(None, f"not measured: {d.reason}")
    verdict = "exceeded" if d.exceeded else "within"
    return status_badge(not d.exceeded, f"{d.statistic_name} {d.value:.3f} {verdict} threshold {d.threshold:g}")


def _traffic(report: MonitorReport) -> Html:
    t = report.trends
    unit = "hour" if t.bucket_s == HOUR_S else "day"
    first = t.buckets[0].start if t.buckets else report.window.start
    x = [(b.start - first) / t.bucket_s for b in t.buckets]
    counts = line_chart_svg(
        {"requests": list(zip(x, (b.requests for b in t.buckets))),
         "not in the documents": list(zip(x, (b.not_in_documents for b in t.buckets))),
         "content filter": list(zip(x, (b.content_filter for b in t.buckets))),
         "down ratings": list(zip(x, (b.down for b in t.buckets)))},
        x_label=f"{unit}s since {_utc(first)}", y_label="requests",
    )
    p95 = line_chart_svg(
        {"total p95 ms": [(xi, b.total_p95_ms) for xi, b in zip(x, t.buckets) if b.total_p95_ms is not None]},
        x_label=f"{unit}s since {_utc(first)}", y_label="ms",
    )
    by = table(["release / model", "requests"],
               [[f"release {k}", v] for k, v in t.by_release.items()] + [[f"model {k}", v] for k, v in t.by_model.items()])
    return section(f"Traffic per {unit}", counts + p95 + by)


def _latency(t: Trends) -> Html:
    stages = {"retrieval": t.latency.retrieval, "time to first token": t.latency.ttft, "total": t.latency.total}
    rows = [[name, p.count, p.p50_ms, p.p95_ms, p.p99_ms] for name, p in stages.items()]
    measured = {name: p for name, p in stages.items() if p.count}
    chart = bar_chart_svg(
        list(measured), {q: [getattr(p, f"{q}_ms") for p in measured.values()] for q in ("p50", "p95", "p99")},
        value_label="ms",
    )
    return section("Latency percentiles", table(["stage", "requests", "p50 ms", "p95 ms", "p99 ms"], rows) + chart,
                   note="time to first token: streamed requests only")


def _drift(d: DriftResult) -> Html:
    rows = {
        "quantity": d.quantity,
        "statistic": d.statistic_name,
        "value": d.value if d.value is not None else f"not measured: {d.reason}",
        "threshold": d.threshold,
        "verdict": _drift_badge(d),
        "p-value (not gated on)": d.p_value,
        "production requests scored / mean": f"{d.production:,} / {_num(d.production_mean)}",
        "eval questions / mean": f"{d.reference:,} / {_num(d.reference_mean)}",
        "reference eval report": d.reference_source or "none",
    }
    chart = Html("")
    if d.bin_edges:
        labels = [f"{a:.2f}-{b:.2f}" for a, b in zip(d.bin_edges, d.bin_edges[1:])]
        chart = bar_chart_svg(labels, {"production": d.production_share, "eval set": d.reference_share},
                              horizontal=False, value_label="share of questions")
    return section("Retrieval score drift", kv_table(rows) + chart,
                   note="relevance: each question's best dense cosine against the index (the answerability score)")


def _judge(j: JudgeResult) -> Html:
    if not j.configured or not j.sampled:
        return section("RAGAS judge (sample of answers)", Html(f'<p class="empty">{_text(j.reason)}</p>'))
    rows = [[key, j.metrics.get(key), j.reasons.get(key, "")] for key in JUDGE_METRICS]
    answers = [[a.question, a.answer, *(a.scores.get(key) for key in JUDGE_METRICS)] for a in j.answers]
    return section(
        "RAGAS judge (sample of answers)",
        table(["metric", "mean", "note"], rows)
        + table(["question", "answer", *JUDGE_METRICS], answers),
        note=f"judge {j.judge_model}: {j.sampled} of {j.eligible} answered requests, a seeded sample",
    )


def _gaps(g: Gaps) -> Html:
    note = (f"{g.questions:,} questions refused as not in the documents ({g.not_in_documents:,}) or with relevance "
            f"below {g.threshold:g} ({g.threshold_from})")
    if not g.clusters:
        return section("Questions the corpus does not cover", Html(f'<p class="empty">{_text(g.reason)}</p>'),
                       note=note)
    rows = [[c.size, c.distinct, c.mean_relevance, " | ".join(c.examples)] for c in g.clusters]
    if g.unclustered:
        note += f"; {g.unclustered:,} more in smaller clusters"
    return section("Questions the corpus does not cover",
                   table(["questions", "distinct", "mean relevance", "examples"], rows), note=note)


def _skipped(report: MonitorReport) -> Html:
    n = report.log.skipped_lines
    if not n:
        return section("Skipped log lines", Html('<p class="empty">none: every line was read</p>'))
    shown = len(report.log.skip_reasons)
    return section("Skipped log lines", table(["file:line and why"], [[r] for r in report.log.skip_reasons]),
                   note=f"{n:,} lines could not be read" + (f"; the first {shown} are listed" if shown < n else ""))


def _utc(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _num(v: float | None) -> str:
    return "\u2014" if v is None else f"{v:.3f}"


def _text(s: str | None) -> str:
    return html.escape(s or "")
