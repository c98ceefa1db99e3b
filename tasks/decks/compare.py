"""What the comparison shows in the Flyte console: the metric table with the best per column marked, latency,
tokens and cost, and per question every variant's answer and sources, the disagreeing questions first.

A plain function over the stored `ComparisonReport` (eval/comparison/), so tests render it in headless Chromium.
"""

from __future__ import annotations

import html

from eval.comparison.report import ComparisonReport, QuestionComparison
from llmops.htmlkit import Html, format_value, fragment, kv_table, section, table

__all__ = ["BEST_MARK", "comparison_deck"]

BEST_MARK = "\u2605"  # marks the best value of a column (ties: each of them)
UP, DOWN = "\u2191", "\u2193"  # higher / lower is better
ANSWER_CHARS = 400  # an answer longer than this is cut in the per-question table (the samples file has it whole)


def _marked(value: float | None, best: bool) -> object:
    if not best or value is None:
        return value
    return Html(f'<strong class="best" title="best in this column">{html.escape(format_value(value))} '
                f"{BEST_MARK}</strong>")


def _metrics_section(report: ComparisonReport) -> Html:
    columns = report.columns
    rows = [
        [v.name, v.model_name, v.endpoint,
         *[_marked(report.value(v, c.name), v.name in c.best) for c in columns]]
        for v in report.variants
    ]
    heads = [f"{c.name} ({UP if c.higher_is_better else DOWN})" for c in columns]
    return section(
        "Metrics",
        table(["variant", "model", "endpoint", *heads], rows),
        note=f"{BEST_MARK} marks the best value per column (\u2191 higher is better, \u2193 lower is better; ties are "
        f"all marked). Every variant answered the same {report.questions} questions on index {report.index_version} "
        "through the same eval stage.",
    )


def _cost_section(report: ComparisonReport) -> Html:
    rows = [
        [v.name, v.latency_p50_s, v.latency_p95_s, v.prompt_tokens, v.completion_tokens, v.cost,
         v.currency or "not priced", v.seconds]
        for v in report.variants
    ]
    return section(
        "Latency, tokens and cost",
        table(["variant", "latency p50 (s)", "latency p95 (s)", "prompt tokens", "completion tokens", "cost",
               "currency", "evaluation (s)"], rows),
        note="Tokens summed over all questions; cost = tokens x the model's price per 1k where the config prices it.",
    )


def _answer_cell(q: QuestionComparison, variant: str) -> object:
    a = q.answers.get(variant)
    if a is None:
        return "not answered"
    text = a.answer if len(a.answer) <= ANSWER_CHARS else a.answer[: ANSWER_CHARS - 1] + "\u2026"
    refusal = f"[refused: {a.refusal_kind}] " if a.refusal_kind else ""
    sources = ", ".join(dict.fromkeys(s.rsplit("/", 1)[-1] for s in a.sources)) or "none"
    return Html(f"{html.escape(refusal + text)}<br><small>sources: {html.escape(sources)}</small>")


def _questions_section(report: ComparisonReport) -> Html:
    names = [v.name for v in report.variants]
    ordered = sorted(report.per_question, key=lambda q: not q.disagreement.kinds)  # disagreements first, stable
    rows = [
        [q.qid, q.question, ", ".join(q.disagreement.kinds) or "agree", q.disagreement.min_rouge_l,
         *[_answer_cell(q, n) for n in names]]
        for q in ordered
    ]
    counts = report.disagreement_counts()
    summary = kv_table({
        "questions where variants disagree": f"{counts['any']} of {report.questions}",
        "refusal (one refused, another answered)": counts["refusal"],
        "top source differs": counts["top_source"],
        f"answers differ (pairwise ROUGE-L below {report.disagreement_rouge_l})": counts["answer"],
    })
    return section(
        "Per question",
        Html(summary + table(["qid", "question", "disagreement", "lowest ROUGE-L", *names], rows)),
        note="Each variant's answer with its retrieved sources; questions where the variants disagree come first.",
    )


def comparison_deck(report: ComparisonReport) -> Html:
    summary = kv_table({
        "comparison": report.id,
        "variants": len(report.variants),
        "questions": report.questions,
        "index": report.index_version,
        "created": report.created_at,
    })
    return fragment(
        section("Comparison", summary),
        _metrics_section(report),
        _cost_section(report),
        _questions_section(report),
    )
