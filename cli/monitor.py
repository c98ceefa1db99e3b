"""`llmops monitor`: the monitor's report of a request log window, in the terminal."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from llmops.errors import LLMOpsError

__all__ = ["monitor"]

out = Console()
err = Console(stderr=True)


def monitor(
    config: Path = typer.Option(..., "--config", help="pipeline config: its monitoring and artifacts sections"),
    days: Optional[float] = typer.Option(None, min=0.001, help="window length (default: monitoring.monitor.window_days)"),
    end: Optional[dt.datetime] = typer.Option(None, help="window end, UTC (default: now)"),
    write: bool = typer.Option(False, "--write", help="also write metrics.json / metrics.prom / latest.json"),
) -> None:
    """Read a window of the request log and print traffic, latency, refusals, feedback, drift and coverage gaps."""
    from eval.monitor import run_monitor
    from llmops.config import load_config
    from llmops.monitor.report import write_monitor_files

    try:
        cfg = load_config(config).resolved()
        window_end = None if end is None else end.replace(tzinfo=end.tzinfo or dt.timezone.utc).timestamp()
        report = run_monitor(cfg, window_end=window_end, days=days)
        files = write_monitor_files(report, cfg.artifacts.root) if write else None
    except LLMOpsError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(2)
    print_report(report)
    if files is not None:
        out.print(f"metrics: {files.metrics}", highlight=False, soft_wrap=True)


def print_report(report) -> None:
    t, d, g, j = report.trends, report.drift, report.gaps, report.judge
    start, end = report.window.iso()
    out.print(f"[bold]window[/] {start} to {end} ({report.window.days:g} days); reference {report.alias}: "
              f"{report.release or 'no release'}", highlight=False)
    summary = Table("", "value", title="production", title_justify="left")
    for name, value in (
        ("requests", f"{t.requests:,} ({t.answered:,} answered)"),
        ("no answer (not in the documents)", _pct(t.no_answer_rate, t.not_in_documents, t.requests)),
        ("refused (content filter)", _pct(t.refusal_rate, t.content_filter, t.requests)),
        ("negative feedback (down / rated)", _pct(t.negative_feedback_rate, t.down, t.rated)),
        ("feedback coverage (rated / answered)", _pct(t.feedback_coverage, t.rated_answered, t.answered)),
        ("log", f"{report.log.files:,} files, {report.log.skipped_lines:,} lines skipped"
                + (f", {report.log.open_files:,} still being written (not read)" if report.log.open_files else "")),
    ):
        summary.add_row(name, value)
    out.print(summary)
    if report.log.note:
        err.print(f"[yellow]note:[/] {report.log.note}", highlight=False)
    latency = Table("stage", "requests", "p50 ms", "p95 ms", "p99 ms", title="latency", title_justify="left")
    for name, p in (("retrieval", t.latency.retrieval), ("first token", t.latency.ttft), ("total", t.latency.total)):
        latency.add_row(name, f"{p.count:,}", *(_ms(getattr(p, f"{q}_ms")) for q in ("p50", "p95", "p99")))
    out.print(latency)
    if d.value is None:
        out.print(f"[bold]drift[/] not measured: {d.reason}", highlight=False)
    else:
        verdict = "[red]EXCEEDED[/]" if d.exceeded else "[green]within[/]"
        out.print(f"[bold]drift[/] {d.statistic_name} {d.value:.3f} {verdict} threshold {d.threshold:g} "
                  f"({d.production:,} requests vs {d.reference:,} eval questions)", highlight=False)
    if j.sampled:
        scores = ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in j.metrics.items())
        out.print(f"[bold]judge[/] {j.sampled} answers: {scores}", highlight=False)
    else:
        out.print(f"[bold]judge[/] {j.reason}", highlight=False)
    out.print(f"[bold]gaps[/] {g.questions:,} questions below relevance {g.threshold:g} or not in the documents",
              highlight=False)
    if g.clusters:
        gaps = Table("questions", "examples")
        for c in g.clusters:
            gaps.add_row(f"{c.size:,}", " | ".join(c.examples))
        out.print(gaps)


def _pct(rate: float | None, part: int, whole: int) -> str:
    return "-" if rate is None else f"{rate:.1%} ({part:,} of {whole:,})"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"
