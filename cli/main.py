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
    from llmops.index.artifact import verify_artifact
    from llmops.index.artifact import materialize

    try:
        m = verify_artifact(materialize(index))
    except LLMOpsError as e:
        _fail(e)
    out.print(f"[green]ok[/] index {m.version}: {m.counts.chunks} chunks, {len(m.files)} files verified")


@app.command()
def search(
    index: str,
    query: str,
    k: int = typer.Option(5, min=1, max=100),
    mode: Optional[str] = typer.Option(None, help="dense | lexical | hybrid (default: the index's)"),
) -> None:
    """Search an index artifact from the terminal."""
    from llmops.index.retriever import Retriever

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
) -> None:
    """Recall@1/5/10, MRR@10 and nDCG@10 for each retrieval mode, written as JSON. When the index's fusion weight
    was tuned, the calibration questions it was tuned on (the fraction its manifest records) are left out."""
    from eval.retrieval import evaluate_retrieval_modes
    from llmops.corpus.qa import read_qa
    from llmops.index.retriever import Retriever
    from llmops.storage import atomic_write_json

    try:
        retriever = Retriever.load(index)
        report = evaluate_retrieval_modes(retriever, read_qa(qa), max_questions=max_questions)
    except LLMOpsError as e:
        _fail(e)
    atomic_write_json(out_path, report.model_dump(mode="json"))
    t = Table("mode", *next(iter(report.modes.values())).metrics.keys())
    for mode, r in report.modes.items():
        t.add_row(mode, *(f"{v:.4f}" for v in r.metrics.values()))
    out.print(t)
    out.print(f"{report.questions} questions; report written to {out_path}")


# ---------------------------------------------------------------------------------------------------------------
# llmops registry ...
# ---------------------------------------------------------------------------------------------------------------

registry_app = typer.Typer(no_args_is_help=True, help="Releases and aliases (production, staging, ...).")
app.add_typer(registry_app, name="registry")

RootOption = typer.Option(
    None, "--root", envvar="LLMOPS_REGISTRY", help="registry root (path or URI); default: from --config"
)
ConfigOption = typer.Option(Path("configs/quickstart.yaml"), "--config", help="config whose artifacts.registry to use")


def _registry(root: Optional[str], config: Path):
    from llmops.config import load_config
    from llmops.release.registry import ReleaseRegistry

    if root is None:
        root = load_config(config).resolved().artifacts.registry_root
    return ReleaseRegistry(root)


def _registry_with_artifacts(root: Optional[str], config: Path):
    """The registry and the config whose artifacts.root confines the releases' artifacts (as the server's does)."""
    from llmops.config import load_config
    from llmops.release.registry import ReleaseRegistry

    cfg = load_config(config).resolved()
    return ReleaseRegistry(root or cfg.artifacts.registry_root), cfg


@registry_app.command("list")
def registry_list(root: Optional[str] = RootOption, config: Path = ConfigOption) -> None:
    """Every release, newest last, with the aliases that point at it."""
    try:
        reg = _registry(root, config)
        releases, aliases = reg.releases(), reg.aliases()
    except LLMOpsError as e:
        _fail(e)
    by_release: dict[str, list[str]] = {}
    for alias, pointer in aliases.items():
        by_release.setdefault(pointer.release, []).append(alias)
    t = Table()
    # Ids are what people copy into `show` / `promote`: never cut, whatever the terminal's width.
    t.add_column("release", no_wrap=True, min_width=max((len(r.release) for r in releases), default=7))
    for name in ("created", "index", "adapter", "gates", "aliases"):
        t.add_column(name, overflow="fold")
    for r in releases:
        # "passed, 2 of 3 gates skipped": a skipped gate is never shown as a pass
        colour = "red" if not r.gates_passed else "yellow" if r.gate_outcome and r.gate_outcome.skipped else "green"
        gates = f"[{colour}]{r.gates_label()}[/]"
        t.add_row(r.release, r.created_at, r.index_version, r.adapter_version or "-", gates,
                  ", ".join(by_release.get(r.release, [])))
    out.print(t)


@registry_app.command("show")
def registry_show(
    release: str = typer.Argument(..., help="release id, or an alias such as production"),
    root: Optional[str] = RootOption,
    config: Path = ConfigOption,
) -> None:
    """A release as JSON (an alias shows the release it points at, and its history)."""
    try:
        reg = _registry(root, config)
        found = reg.get(release) if release.startswith("r-") else reg.resolve(release)
        if found is None:
            raise typer.BadParameter(f"alias {release!r} points at nothing yet")
        history = [] if release.startswith("r-") else [e.model_dump() for e in reg.history(release)]
    except LLMOpsError as e:
        _fail(e)
    out.print_json(data={"release": found.model_dump(mode="json"), **({"history": history} if history else {})})


@registry_app.command("diff")
def registry_diff(
    a: str = typer.Argument(..., help="release id or alias"),
    b: str = typer.Argument(..., help="release id or alias"),
    root: Optional[str] = RootOption,
    config: Path = ConfigOption,
) -> None:
    """What changed between two releases: artifacts, metrics and config."""
    from llmops.release.registry import diff_releases

    try:
        reg = _registry(root, config)
        ra, rb = (reg.get(x) if x.startswith("r-") else reg.resolve(x) for x in (a, b))
        if ra is None or rb is None:
            raise typer.BadParameter("an alias in the diff points at nothing yet")
    except LLMOpsError as e:
        _fail(e)
    out.print_json(data=diff_releases(ra, rb))


@registry_app.command("promote")
def registry_promote(
    release: str,
    alias: str = typer.Option("production", "--alias"),
    force: bool = typer.Option(False, "--force", help="promote a release whose gates failed (needs --reason)"),
    reason: Optional[str] = typer.Option(None, "--reason", help="why; kept in the alias history"),
    root: Optional[str] = RootOption,
    config: Path = ConfigOption,
) -> None:
    """Point an alias at a release, after checking its artifacts against the digests it pins (the server checks
    them again before it serves them)."""
    from llmops.release.artifacts import artifact_roots, verify_release

    try:
        reg, cfg = _registry_with_artifacts(root, config)
        verify_release(reg.get(release), artifact_roots(cfg), cfg.serving.adapter_cache_dir)
        event = reg.promote(release, alias, force=force, reason=reason)
    except LLMOpsError as e:
        _fail(e)
    out.print(f"[green]{alias}[/] -> {event.release} (was {event.previous or 'nothing'})")


@registry_app.command("repin")
def registry_repin(
    release: str = typer.Argument(..., help="id of a release registered before release schema 2"),
    root: Optional[str] = RootOption,
    config: Path = ConfigOption,
) -> None:
    """Register a copy of an old release that pins its artifacts' manifests as they are stored now.

    Only for releases whose artifacts you trust: the pins vouch for what is stored today. Promote the new id."""
    from llmops.release.artifacts import artifact_roots, ensure_within, pin_artifacts

    try:
        reg, cfg = _registry_with_artifacts(root, config)
        old = reg.get(release)
        if not old.unpinned():
            raise typer.BadParameter(f"release {release} already pins its artifacts: promote it as it is")
        roots, what = artifact_roots(cfg), f"release {release}"
        index_uri = ensure_within(old.index_uri, roots, f"{what}: index_uri")
        adapter_uri = ensure_within(old.adapter_uri, roots, f"{what}: adapter_uri") if old.adapter_uri else None
        pins = pin_artifacts(index_uri, adapter_uri, cfg.serving.adapter_cache_dir)
        new = reg.register(**old.model_dump(exclude={"schema_version", "release", "created_at"}) | pins)
    except LLMOpsError as e:
        _fail(e)
    out.print(f"{release} -> [green]{new.release}[/] (pins its artifacts); promote it with "
              f"`llmops registry promote {new.release}`")


@registry_app.command("rollback")
def registry_rollback(
    alias: str = typer.Option("production", "--alias"),
    reason: Optional[str] = typer.Option(None, "--reason"),
    root: Optional[str] = RootOption,
    config: Path = ConfigOption,
) -> None:
    """Point an alias back at the release it pointed to before."""
    try:
        event = _registry(root, config).rollback(alias, reason=reason)
    except LLMOpsError as e:
        _fail(e)
    out.print(f"[yellow]{alias}[/] rolled back -> {event.release} (was {event.previous})")


# llmops monitor (cli/monitor.py)
from cli.monitor import monitor as monitor_command  # noqa: E402

app.command("monitor")(monitor_command)


# ---------------------------------------------------------------------------------------------------------------
# llmops serve
# ---------------------------------------------------------------------------------------------------------------


@app.command()
def serve(
    config: Path = typer.Option(..., "--config", help="pipeline config: its llm, serving and artifacts sections"),
    port: Optional[int] = typer.Option(None, help="RAG API port (default: serving.port)"),
    alias: Optional[str] = typer.Option(None, help="registry alias to serve (default: serving.alias)"),
    print_vllm_args: bool = typer.Option(
        False, "--print-vllm-args", help="only print the vLLM LoRA flags for the alias's release (for containers)"
    ),
) -> None:
    """Start the vLLM server and the RAG API, serve the alias's release, stop both cleanly on Ctrl-C/SIGTERM."""
    from llmops.config import load_config
    from llmops.errors import ConfigError
    from serving.launcher import lora_args, serve as run_serving

    try:
        cfg = load_config(config).resolved()
        update = {k: v for k, v in (("port", port), ("alias", alias)) if v is not None}
        if update:
            cfg = cfg.model_copy(update={"serving": cfg.serving.model_copy(update=update)})
        if print_vllm_args:
            if cfg.llm is None:
                raise ConfigError(str(config), ["serving needs an llm section"])
            print(" ".join(lora_args(cfg)))
            return
        run_serving(cfg, announce=lambda line: out.print(line, highlight=False, soft_wrap=True))
    except LLMOpsError as e:
        _fail(e)
    except KeyboardInterrupt:
        out.print("interrupted; stopped")


# ---------------------------------------------------------------------------------------------------------------
# llmops compare ...
# ---------------------------------------------------------------------------------------------------------------


@app.command()
def compare(
    reports: list[str] = typer.Argument(None, help="stored evaluations: report.json files or their eval folders"),
    comparison: Optional[str] = typer.Option(None, "--comparison", help="a stored comparison's id (cmp-...)"),
    config: Path = typer.Option(Path("configs/quickstart.yaml"), "--config",
                                help="config whose artifacts.root holds the comparison (with --comparison)"),
    questions: int = typer.Option(10, min=0, help="disagreeing questions to list"),
) -> None:
    """The comparison table (best per row marked) and where the variants disagree: of a stored comparison
    (--comparison ID), or of two or more stored evaluations on the same index."""
    from cli.compare_view import render_comparison
    from eval.comparison.report import build_comparison
    from eval.comparison.store import comparison_uri, load_comparison, load_run
    from llmops.config import load_config
    from llmops.errors import ConfigError
    from llmops.index.artifact import utc_now

    try:
        if comparison is not None:
            report = load_comparison(comparison_uri(load_config(config).resolved(), comparison))
        else:
            if not reports or len(reports) < 2:
                raise ConfigError("llmops compare", ["give two or more report.json files or eval folders, or "
                                                     "--comparison ID"])
            runs = [load_run(r) for r in reports]
            labels = [r.report.label for r in runs]
            if len(set(labels)) < len(labels):  # e.g. two `base` runs: name them by their folders instead
                runs = [load_run(r, Path(run.report_uri).parent.name) for r, run in zip(reports, runs)]
            report = build_comparison(runs, disagreement_rouge_l=0.5, created_at=utc_now())
    except LLMOpsError as e:
        _fail(e)
    render_comparison(out, report, questions=questions)


@app.command("compare-export")
def compare_export(
    variant: str = typer.Argument(..., help="variant name, e.g. terse/tiny/greedy"),
    config: Path = typer.Option(..., "--config", help="the config whose compare section names the variant"),
    out_path: Path = typer.Option(..., "--out", help="where to write the pipeline config (YAML)"),
) -> None:
    """Write a config for llmops_pipeline whose candidate is the variant (its llm, prompt and sampling sections)."""
    import yaml

    from eval.comparison.variants import candidate_config
    from llmops.config import load_config

    try:
        cfg = candidate_config(load_config(config), variant)  # paths as written, so it runs wherever the config does
        out_path.write_text(
            f"# llmops_pipeline config: the candidate is compare variant {variant} of {config}\n"
            + yaml.safe_dump(cfg.model_dump(mode="json", exclude={"compare"}), allow_unicode=True, sort_keys=False),
            encoding="utf-8",
        )
        load_config(out_path)  # what was written is what the pipeline will accept
    except LLMOpsError as e:
        _fail(e)
    out.print(f"[green]wrote[/] {out_path}: pyflyte run workflows/pipeline.py llmops_pipeline --config {out_path}",
              highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------------------------------
# llmops feedback ...
# ---------------------------------------------------------------------------------------------------------------

feedback_app = typer.Typer(no_args_is_help=True, help="Production questions into the eval set and fine-tune data.")
app.add_typer(feedback_app, name="feedback")


def _log_window_bounds(days: Optional[float], since: Optional[str], default_days: float) -> tuple[float, float]:
    import datetime as dt

    end = dt.datetime.now(dt.timezone.utc)
    if since is not None:
        try:
            start = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
        except ValueError:
            raise typer.BadParameter(f"--since {since!r} is not an ISO date/time (e.g. 2026-01-31 or "
                                     "2026-01-31T12:00:00Z)") from None
        start = start if start.tzinfo else start.replace(tzinfo=dt.timezone.utc)
        return start.timestamp(), end.timestamp()
    return end.timestamp() - (days if days is not None else default_days) * 86400, end.timestamp()


@feedback_app.command("export")
def feedback_export(
    config: Path = typer.Option(..., "--config", help="pipeline config: monitoring.request_log.path, the registry"),
    days: Optional[float] = typer.Option(None, "--days", min=0.001,
                                         help="read the last N days (default: monitoring.feedback.window_days)"),
    since: Optional[str] = typer.Option(None, "--since", help="read from this ISO date/time (UTC unless given)"),
    out_path: Path = typer.Option(Path("review.jsonl"), "--out", help="the review file to write"),
    min_relevance: Optional[float] = typer.Option(
        None, "--min-relevance", min=-1, max=1,
        help="select questions scoring below this (default: monitoring.feedback.min_relevance, else the "
             "answering release's answerability threshold)"),
) -> None:
    """Write a review file: the request log's questions with negative feedback, a "not in the documents" refusal
    or a low relevance score, one row per distinct question, with empty `reference` / `irrelevant` fields."""
    from llmops.config import load_config
    from llmops.errors import ConfigError
    from llmops.feedback.merge import known_questions
    from llmops.feedback.review import select_for_review, write_review_file
    from llmops.feedback.thresholds import threshold_lookup
    from llmops.requestlog.reader import read_window, unread_note

    if days is not None and since is not None:
        raise typer.BadParameter("give --days or --since, not both")
    try:
        cfg = load_config(config).resolved()
        root = cfg.monitoring.request_log.path
        if root is None:
            raise ConfigError(str(config), ["monitoring.request_log.path is not set: no request log to read "
                                            "(set it to the folder or URI serving writes the log to)"])
        start, end = _log_window_bounds(days, since, cfg.monitoring.feedback.window_days)
        window = read_window(root, start, end)
        threshold = min_relevance if min_relevance is not None else cfg.monitoring.feedback.min_relevance
        export = select_for_review(window, threshold_lookup(threshold, cfg.artifacts.registry_root),
                                   known=known_questions(cfg))
        write_review_file(export.rows, out_path)
    except LLMOpsError as e:
        _fail(e)
    out.print(f"read {window.files} log file(s): {export.requests} requests, {len(window.feedback)} ratings"
              + (f", {window.skipped_lines} unreadable line(s) skipped" if window.skipped_lines else ""))
    for reason in window.skip_reasons[:5]:
        err.print(f"  skipped: {reason}", highlight=False)
    if note := unread_note(window, root):
        err.print(f"[yellow]note:[/] {note}", highlight=False)
    t = Table("reason", "questions")
    for reason, n in sorted(export.reasons.items()):
        t.add_row(reason, str(n))
    out.print(t)
    out.print(f"{len(export.rows)} question(s) to review ({export.selected} requests selected, "
              f"{export.duplicates} duplicate(s) of a question folded into its latest row); written to {out_path}")
    if export.already_known:
        out.print(f"{export.already_known} question(s) left out: already in the eval set or the fine-tune data "
                  "(merged before)")
    out.print("Review: set `reference` to the correct answer, or `irrelevant` to true (out of scope); leave both "
              f"empty to skip. Then: llmops feedback merge {out_path} --config {config}")


@feedback_app.command("merge")
def feedback_merge(
    review_file: Path = typer.Argument(..., help="a review file written by `llmops feedback export`, reviewed"),
    config: Path = typer.Option(..., "--config", help="pipeline config: eval.qa_path, finetune.train_path"),
    dry_run: bool = typer.Option(False, "--dry-run", help="report what would be merged; write nothing"),
) -> None:
    """Merge the reviewed rows into the eval set (eval.qa_path) and the fine-tune data (finetune.train_path) with
    provenance; questions already there are skipped and reported, so a re-run is idempotent."""
    from llmops.config import load_config
    from llmops.feedback.merge import apply_merge, plan_merge

    try:
        plan = plan_merge(load_config(config).resolved(), review_file)
        if not dry_run:
            apply_merge(plan)
    except LLMOpsError as e:
        _fail(e)
    verb = "would add" if dry_run else "added"
    out.print(f"{plan.eval_path}: {verb} {plan.count('eval', True)} answerable and {plan.count('eval', False)} "
              "unanswerable production question(s)")
    if plan.finetune_path:
        out.print(f"{plan.finetune_path}: {verb} {plan.count('finetune')} training question(s)")
    if plan.unreviewed:
        out.print(f"{plan.unreviewed} row(s) not reviewed (no reference, not irrelevant): left out")
    if plan.skipped:
        t = Table("review line", "skipped because")
        for line, why in plan.skipped:
            t.add_row(str(line), why)
        out.print(t)
    if dry_run:
        out.print("dry run: nothing written")
