"""`llmops compare` in the terminal: the comparison's table (one row per metric, one column per variant, the best
marked) and the questions where the variants disagree."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from eval.comparison.report import ComparisonReport
from llmops.htmlkit import format_value

__all__ = ["BEST_MARK", "render_comparison"]

BEST_MARK = "\u2605"
UP, DOWN = "\u2191", "\u2193"


def render_comparison(console: Console, report: ComparisonReport, *, questions: int = 10) -> None:
    console.print(f"[bold]{report.id}[/]: {len(report.variants)} variants, {report.questions} questions, "
                  f"index {report.index_version}", highlight=False)
    t = Table(title=f"{BEST_MARK} best per row (\u2191 higher is better, \u2193 lower)", title_justify="left")
    t.add_column("metric", no_wrap=True)
    for v in report.variants:
        t.add_column(v.name, justify="right", overflow="fold")
    for column in report.columns:
        cells = []
        for v in report.variants:
            value = report.value(v, column.name)
            text = format_value(value)
            cells.append(f"[bold green]{text} {BEST_MARK}[/]" if v.name in column.best else text)
        t.add_row(f"{column.name} {UP if column.higher_is_better else DOWN}", *cells)
    t.add_row("tokens (prompt / completion)", *[f"{v.prompt_tokens:,} / {v.completion_tokens:,}"
                                               for v in report.variants])
    t.add_row("model @ endpoint", *[f"{v.model_name} @ {v.endpoint}" for v in report.variants])
    console.print(t)

    counts = report.disagreement_counts()
    console.print(
        f"Variants disagree on {counts['any']} of {report.questions} questions: {counts['refusal']} refusal "
        f"(one refused, another answered), {counts['top_source']} top source, {counts['answer']} answers "
        f"(pairwise ROUGE-L < {report.disagreement_rouge_l})", highlight=False)
    disagreeing = [q for q in report.per_question if q.disagreement.kinds][:questions]
    if disagreeing:
        d = Table("qid", "disagreement", show_lines=False)
        d.add_column("question", overflow="fold")
        for q in disagreeing:
            d.add_row(q.qid, ", ".join(q.disagreement.kinds), q.question[:120])
        console.print(d)
