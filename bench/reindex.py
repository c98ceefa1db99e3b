"""Incremental re-indexing: wall time of a re-run on an unchanged corpus against the first run, and the share of
chunks the model embeds again after 1% of the documents change.

The corpus is the SQuAD contexts written as a folder of .txt files (one per paragraph), so changing 1% means
appending a sentence to 1% of the files. Each repeat starts from a fresh corpus folder and artifacts root and
measures two ways:

- pyflyte: `pyflyte run workflows/index.py index_corpus --config <generated yaml>` as a subprocess, after
  `pyflyte local-cache clear`. HOME and TMPDIR point into the benchmark's folder, so the Flyte local cache
  cleared is the benchmark's own (other users' ~/.flyte cache is untouched) and Flyte's scratch files go away
  with it. Includes interpreter start-up and imports: the fixed cost is measured separately.
- in-process: the stage functions (as the Flyte tasks call them) in this process, after a warm-up build of a
  small corpus (model loaded, libraries imported).

"Recomputed" counts the chunks whose vectors the model computed during a run: the keys in embedding-cache
segments that the run added (embed_shard writes exactly its cache misses there). The build's own
`embedding_stats` (computed / cached / reused shard vectors of this run) is reported beside it for in-process runs:
the two counts of embedded chunks should agree.
The corpus has no questions and the config sets no eval.qa_path, so no retrieval evaluation runs and the fusion
weight falls back to 0.5.

    python -m bench.reindex                  # 3 repeats of both ways (about 7 minutes on 2 cores)
    python -m bench.reindex --repeats 1 --modes in-process
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import yaml

from bench.common import (
    REPO_ROOT,
    SQUAD,
    bench_parser,
    build,
    config_data,
    data_file,
    machine,
    print_table,
    progress,
    result_header,
    summarize,
    timed,
    write_result,
)

TARGET_RERUN_RATIO = 0.10
TARGET_RECOMPUTED_SHARE = 0.02
APPENDED = " This sentence was appended to measure incremental re-indexing."
MODES = ("pyflyte", "in-process")
# The fixed cost of a new process: a run that embeds imports torch and sentence-transformers; a fully cached
# pyflyte run needs only flytekit and the pipeline (the model is imported lazily).
IMPORT_PROBES = {
    "import llmops.index.build, sentence_transformers": "import llmops.index.build, sentence_transformers",
    "import flytekit, llmops.index.build": "import flytekit, llmops.index.build",
}


def write_corpus(squad: Path, folder: Path, limit: int | None = None) -> list[Path]:
    """One .txt file per SQuAD paragraph; returns the files in order."""
    articles = json.loads(squad.read_text(encoding="utf-8"))["data"]
    contexts = [(f"{i:03d}-{j:03d}.txt", p["context"]) for i, a in enumerate(articles) for j, p in enumerate(a["paragraphs"])]
    folder.mkdir(parents=True)
    paths = []
    for name, context in contexts[:limit]:
        paths.append(folder / name)
        paths[-1].write_text(context + "\n", encoding="utf-8")
    return paths


def change_files(paths: list[Path], fraction: float) -> list[Path]:
    """Append a sentence to `fraction` of the files, spread evenly over the corpus."""
    n = max(1, round(len(paths) * fraction))
    chosen = [paths[int(i * len(paths) / n)] for i in range(n)]
    for path in chosen:
        path.write_text(path.read_text(encoding="utf-8").rstrip("\n") + APPENDED + "\n", encoding="utf-8")
    return chosen


def corpus_config(corpus: Path, root: Path) -> dict:
    return config_data({"kind": "directory", "path": str(corpus)}, root)


def store_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def what_the_run_did(root: Path, before: set[str], changed: list[Path] = ()) -> dict:
    """Read from the files a run added to the store: chunks the model embedded, the index built, if any."""
    new = sorted(store_files(root) - before)
    computed = 0
    for rel in (r for r in new if r.startswith("embedding-cache/")):
        with np.load(root / rel) as data:
            computed += len(data["keys"])
    kinds = Counter("/".join(rel.split("/")[:2]) if rel.startswith("work/") else rel.split("/")[0] for rel in new)
    result = {"new_store_files": dict(kinds), "recomputed_chunks": computed}
    manifests = [r for r in new if r.startswith("indexes/") and r.endswith("/manifest.json")]
    if manifests:
        manifest = json.loads((root / manifests[0]).read_text(encoding="utf-8"))
        result |= {"index_version": manifest["version"], "total_chunks": manifest["counts"]["chunks"]}
    chunk_tables = [r for r in new if r.startswith("work/chunks/")]
    if chunk_tables and changed:
        sources = pq.read_table(root / chunk_tables[0], columns=["source"]).column("source").to_pylist()
        names = {p.name for p in changed}
        result["chunks_in_changed_files"] = sum(1 for s in sources if Path(s).name in names)
    return result


def code_version_now() -> str:
    """The pipeline's code digest as a new process would compute it (others may edit the source meanwhile)."""
    from llmops.provenance.code_version import code_version

    return code_version.__wrapped__()


class PyflyteRunner:
    def __init__(self, work: Path):
        self.home, self.tmp = work / "home", work / "tmp"
        self.home.mkdir()
        self.tmp.mkdir()
        self.env = {**os.environ, "HOME": str(self.home), "TMPDIR": str(self.tmp), "HF_HUB_OFFLINE": "1",
                    "TOKENIZERS_PARALLELISM": "false"}
        self.pyflyte = str(Path(sys.executable).parent / "pyflyte")
        self.logs = work / "logs"
        self.logs.mkdir()

    def run(self, cmd: list[str], log_name: str) -> float:
        log = self.logs / f"{log_name}.log"
        with open(log, "w") as f:
            seconds, proc = timed(lambda: subprocess.run(cmd, cwd=REPO_ROOT, env=self.env, stdout=f, stderr=subprocess.STDOUT))
        if proc.returncode:
            sys.exit(f"error: {' '.join(cmd)} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
        return seconds

    def clear_cache(self) -> None:
        self.run([self.pyflyte, "local-cache", "clear"], "local-cache-clear")

    def index(self, config: Path, log_name: str) -> float:
        return self.run([self.pyflyte, "run", "workflows/index.py", "index_corpus", "--config", str(config)], log_name)

    def import_cost(self, statement: str, log_name: str) -> float:
        return self.run([sys.executable, "-c", statement], log_name)


def one_repeat(mode: str, r: int, squad: Path, work: Path, fraction: float, pyflyte: PyflyteRunner | None) -> dict:
    """First run, unchanged re-run, then 1% of the files changed and a third run."""
    from llmops.config import parse_config

    corpus, root = work / f"{mode}-{r}" / "corpus", work / f"{mode}-{r}" / "artifacts"
    paths = write_corpus(squad, corpus)
    data = corpus_config(corpus, root)
    config = work / f"{mode}-{r}" / "config.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    cfg = parse_config(data).resolved()
    runs = {}

    def run(name: str, changed: list[Path] = ()) -> None:
        before, version = store_files(root), code_version_now()
        if mode == "pyflyte":
            seconds, record = pyflyte.index(config, f"{mode}-{r}-{name}"), {}
        else:
            timings: dict = {}
            seconds, (out, _, _) = timed(lambda: build(cfg, show_progress=False, timings=timings))
            record = {"stage_seconds": timings, "build_embedding_stats": out.embedding_stats,
                      "index_reused": out.reused}
        runs[name] = {"seconds": seconds, **record, **what_the_run_did(root, before, changed),
                      "code_changed_during_run": code_version_now() != version}
        progress(f"{mode} repeat {r + 1} {name}: {seconds:.1f} s, recomputed {runs[name]['recomputed_chunks']} chunks")

    if pyflyte:
        pyflyte.clear_cache()
    run("first")
    run("unchanged")
    changed = change_files(paths, fraction)
    run("changed", changed)
    runs["unchanged"].setdefault("total_chunks", runs["first"]["total_chunks"])
    return {"documents": len(paths), "changed_documents": len(changed), "runs": runs}


def summarize_mode(repeats: list[dict]) -> dict:
    first = [x["runs"]["first"]["seconds"] for x in repeats]
    unchanged = [x["runs"]["unchanged"]["seconds"] for x in repeats]
    changed = [x["runs"]["changed"] for x in repeats]
    ratios = [u / f for u, f in zip(unchanged, first)]
    shares = [c["recomputed_chunks"] / c["total_chunks"] for c in changed]
    return {
        "first_seconds": summarize(first),
        "unchanged_seconds": summarize(unchanged),
        "changed_seconds": summarize([c["seconds"] for c in changed]),
        "rerun_ratio": summarize(ratios),
        "rerun_ratio_target_met": summarize(ratios)["median"] <= TARGET_RERUN_RATIO,
        "recomputed_share": summarize(shares),
        "recomputed_share_target_met": max(shares) <= TARGET_RECOMPUTED_SHARE,
        "unchanged_recomputed_chunks": [x["runs"]["unchanged"]["recomputed_chunks"] for x in repeats],
    }


def _stats_cell(stats: dict) -> str:
    return f"{stats['computed']} / {stats['cached']} / {stats['reused']}"


def main() -> None:
    parser = bench_parser(__doc__, "reindex")
    parser.add_argument("--work-dir", type=Path, help="keep corpora, artifacts and logs here (default: temp, removed)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--change-fraction", type=float, default=0.01, help="share of documents changed")
    args = parser.parse_args()
    squad = data_file(args.data_dir, SQUAD)
    if args.work_dir:
        args.work_dir.mkdir(parents=True, exist_ok=False)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="llmops-bench-reindex-"))
    result = {**result_header("reindex", machine(), args),
              "targets": {"rerun_ratio_max": TARGET_RERUN_RATIO, "recomputed_share_max": TARGET_RECOMPUTED_SHARE}}
    try:
        pyflyte = PyflyteRunner(work) if "pyflyte" in args.modes else None
        if pyflyte:
            result["import_seconds"] = {}
            for p, statement in enumerate(IMPORT_PROBES.values()):
                progress(f"fixed cost of a new process: python -c '{statement}'")
                pyflyte.import_cost(statement, f"import-{p}-warm-up")
                samples = [pyflyte.import_cost(statement, f"import-{p}-{i}") for i in range(args.repeats)]
                result["import_seconds"][statement] = summarize(samples)
        if "in-process" in args.modes:
            from llmops.config import parse_config

            progress("in-process warm-up: a 20-document build (loads the model, imports every stage's libraries)")
            warm = work / "warm-up"
            data = corpus_config(warm / "corpus", warm / "artifacts")
            write_corpus(squad, warm / "corpus", limit=20)
            build(parse_config(data).resolved(), show_progress=False)
        repeats = {mode: [] for mode in args.modes}
        for r in range(args.repeats):
            for mode in args.modes:
                repeats[mode].append(one_repeat(mode, r, squad, work, args.change_fraction, pyflyte))
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    result["modes"] = {mode: {"summary": summarize_mode(reps), "repeats": reps} for mode, reps in repeats.items()}
    rows = []
    for mode, m in result["modes"].items():
        s = m["summary"]
        last = m["repeats"][-1]["runs"]["changed"]
        rows.append([mode, s["first_seconds"]["median"], s["unchanged_seconds"]["median"],
                     f"{s['rerun_ratio']['median']:.3f} [{s['rerun_ratio']['min']:.3f}-{s['rerun_ratio']['max']:.3f}]",
                     s["changed_seconds"]["median"],
                     f"{last['recomputed_chunks']}/{last['total_chunks']} ({last.get('chunks_in_changed_files', '?')})",
                     f"{s['recomputed_share']['median']:.4f}"])
    docs = next(iter(repeats.values()))[0]
    print_table(
        ["mode", "first s", "unchanged s", "ratio [min-max]", "1%-changed s", "recomputed/total (in changed)",
         "share"],
        rows,
        f"re-indexing {docs['documents']} documents; {docs['changed_documents']} changed; medians of "
        f"{args.repeats} repeats",
    )
    for statement, i in result.get("import_seconds", {}).items():
        print(f"fixed cost of a new process, python -c '{statement}': median {i['median']:.2f} s "
              f"[{i['min']:.2f}-{i['max']:.2f}]")
    for mode, m in result["modes"].items():
        s = m["summary"]
        print(f"{mode}: re-run ratio <= {TARGET_RERUN_RATIO}: {'MET' if s['rerun_ratio_target_met'] else 'NOT MET'}; "
              f"recomputed share <= {TARGET_RECOMPUTED_SHARE}: {'MET' if s['recomputed_share_target_met'] else 'NOT MET'}")
    if "in-process" in result["modes"]:
        reps = result["modes"]["in-process"]["repeats"]
        stages = list(reps[0]["runs"]["first"]["stage_seconds"])
        print_table(
            ["in-process run", *stages, "embedding_stats computed / cached / reused", "recomputed (cache keys added)"],
            [[name, *(float(np.median([x["runs"][name]["stage_seconds"][s] for x in reps])) for s in stages),
              _stats_cell(reps[-1]["runs"][name]["build_embedding_stats"]), reps[-1]["runs"][name]["recomputed_chunks"]]
             for name in ("first", "unchanged", "changed")],
            "where the time goes (seconds per stage, medians)",
        )
    if any(run["code_changed_during_run"] for m in result["modes"].values() for x in m["repeats"]
           for run in x["runs"].values()):
        print("warning: the pipeline's source changed during a run (someone edited llmops/, tasks/ or eval/); "
              "the affected runs rebuilt work that a re-run would otherwise reuse")
    print(f"results: {write_result(args.name, result)}")


if __name__ == "__main__":
    main()
