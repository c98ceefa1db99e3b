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
