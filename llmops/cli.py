"""`llmops`: the commands that do not need Flyte (the pipeline itself runs with `pyflyte run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from llmops.errors import LLMOpsError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
err = Console(stderr=True)
out = Console()


def _fail(e: LLMOpsError) -> None:
    err.print(f"[bold red]error:[/] {e}", highlight=False)
    raise typer.Exit(2)


@app.command("validate-config")
def validate_config(path: Path) -> None:
    """Validate a pipeline config and print it with every default filled in."""
    from llmops.config import load_config

    try:
        cfg = load_config(path)
    except LLMOpsError as e:
        _fail(e)
    out.print_json(cfg.model_dump_json())


@app.command()
def verify(index: str) -> None:
    """Verify an index artifact's checksums against its manifest."""
    from llmops.artifact import verify_artifact
    from llmops.artifact import materialize

    try:
        m = verify_artifact(materialize(index))
    except LLMOpsError as e:
        _fail(e)
    out.print(f"[green]ok[/] index {m.version}: {m.counts['chunks']} chunks, {len(m.files)} files verified")


@app.command()
def search(
    index: str,
    query: str,
    k: int = typer.Option(5, min=1, max=100),
    mode: Optional[str] = typer.Option(None, help="dense | lexical | hybrid (default: the index's)"),
) -> None:
    """Search an index artifact from the terminal."""
    from llmops.retriever import Retriever

    try:
        hits = Retriever.load(index).search(query, k, mode)
    except LLMOpsError as e:
        _fail(e)
    t = Table("rank", "score")
    t.add_column("source", overflow="fold")
    t.add_column("text", overflow="fold")
    for h in hits:
        t.add_row(str(h.rank), f"{h.score:.4f}", h.source, h.text[:160].replace("\n", " "))
    out.print(t)


@app.command("eval-retrieval")
def eval_retrieval(
    index: str = typer.Option(..., help="index artifact folder or URI"),
    qa: Path = typer.Option(..., help="SQuAD JSON or JSONL eval set"),
    out_path: Path = typer.Option(Path("retrieval_report.json"), "--out", help="where to write the JSON report"),
    max_questions: Optional[int] = typer.Option(None, min=1),
    calibration_fraction: float = typer.Option(
        0.3, help="share of questions excluded when the index's fusion weight was tuned on them"
    ),
) -> None:
    """Recall@1/5/10, MRR@10 and nDCG@10 for each retrieval mode, written as JSON."""
    from eval.retrieval import retrieval_report
    from llmops.qa import load_qa_file
    from llmops.retriever import Retriever
    from llmops.storage import atomic_write_json

    try:
        retriever = Retriever.load(index)
        report = retrieval_report(
            retriever, load_qa_file(qa), calibration_fraction=calibration_fraction, max_questions=max_questions
        )
    except LLMOpsError as e:
        _fail(e)
    atomic_write_json(out_path, report)
    t = Table("mode", *next(iter(report["modes"].values()))["metrics"].keys())
    for mode, r in report["modes"].items():
        t.add_row(mode, *(f"{v:.4f}" for v in r["metrics"].values()))
    out.print(t)
    out.print(f"{report['questions']} questions; report written to {out_path}")
