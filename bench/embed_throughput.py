"""Embed-stage throughput against raw sentence-transformers on the same chunks, and its memory as N grows.

Ours is `llmops.index.build.embed_shard` itself, with the embedding cache off: it reads the shard parquet, embeds, and
writes the vectors file (a fresh artifacts root per call, so the output never already exists). Raw is
`model.encode(texts, batch_size=B, normalize_embeddings=True)` on the same model object, texts and batch size.
After one warm-up of each, the two alternate for R repeats (which goes first alternates too). Peak RSS is measured
in a fresh subprocess per variant and size (growth = peak while embedding minus the RSS after loading the model),
for N chunks and for the same N chunks repeated 4 times (same lengths, so the same activation peak): if the stage
held every text tokenized, its growth would scale with N beyond raw encode's.

    python -m bench.embed_throughput                 # N=600 SQuAD chunks, batch 32, 3 repeats
    python -m bench.embed_throughput --chunks 300 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import (
    REPO_ROOT,
    SQUAD,
    bench_parser,
    data_file,
    machine,
    make_config as common_config,
    peak_rss_mib,
    print_table,
    progress,
    result_header,
    summarize,
    write_result,
)

TARGET_RATIO = 0.95


def make_config(squad: Path, root: Path, batch_size: int):
    return common_config({"kind": "squad", "path": str(squad)}, root,
                         embedding={"batch_size": batch_size, "cache": False})


def with_root(cfg, root: Path):
    return cfg.model_copy(update={"artifacts": cfg.artifacts.model_copy(update={"root": str(root)})})


def write_shard(texts: list[str], path: Path) -> Path:
    ids = [f"c{i:06d}" for i in range(len(texts))]
    pq.write_table(pa.table({"chunk_id": ids, "text": texts}), path)
    return path


def squad_chunks(squad: Path, work: Path, batch_size: int) -> tuple[list[str], list[int]]:
    """Texts and token counts of the SQuAD corpus chunked as the pipeline does (default chunking)."""
    from llmops.corpus.stages import read_chunk_table, run_chunking, run_ingest
    from llmops.index.embedding import get_embedder

    cfg = make_config(squad, work / "setup", batch_size)
    ing = run_ingest(cfg)
    chunked = run_chunking(cfg, ing.documents_uri, ing.corpus_fingerprint, get_embedder(cfg.embedding))
    table = read_chunk_table(chunked.chunks_uri)
    return table.column("text").to_pylist(), table.column("n_tokens").to_pylist()


def cycled(texts: list[str], n: int) -> list[str]:
    """n texts, going through `texts` again as often as needed."""
    return [texts[i % len(texts)] for i in range(n)]


class Runner:
    """Runs each variant once on the shard; the model is loaded once and shared."""

    def __init__(self, cfg, shard: Path, work: Path):
        from llmops.index.embedding import get_embedder

        self.cfg, self.shard, self.work = cfg, shard, work
        self.embedder = get_embedder(cfg.embedding)
        self.texts = pq.read_table(shard, columns=["text"]).column("text").to_pylist()
        self.calls = 0

    def ours(self) -> tuple[float, np.ndarray, float]:
        """Seconds for the whole stage call, its vectors, and the seconds it recorded for encoding alone."""
        from llmops.index.build import embed_shard

        self.calls += 1
        root = self.work / f"root-{self.calls}"
        t0 = time.perf_counter()
        uri = embed_shard(with_root(self.cfg, root), str(self.shard), self.embedder.digest, show_progress=False)
        seconds = time.perf_counter() - t0
        with np.load(uri) as data:
            vectors, encode_seconds = data["vectors"], float(data["seconds"])
        shutil.rmtree(root)
        return seconds, vectors, encode_seconds

    def raw(self) -> tuple[float, np.ndarray]:
        t0 = time.perf_counter()
        vectors = self.embedder.model.encode(
            self.texts, batch_size=self.cfg.embedding.batch_size, normalize_embeddings=True
        )
        return time.perf_counter() - t0, vectors


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status (the RSS check needs Linux)")


def child(variant: str, shard: Path, squad: Path, batch_size: int) -> None:
    """Subprocess entry: load the model, reset the peak RSS, run the variant once, print the peak as JSON."""
    work = Path(tempfile.mkdtemp(prefix="bench-embed-child-"))
    try:
        runner = Runner(make_config(squad, work, batch_size), shard, work)
        runner.embedder.model.encode(["warm up"], batch_size=1)  # torch's one-time allocations are not growth
        _ = runner.embedder.digest  # hashes the model files once
        loaded = _status_mib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
        seconds = (runner.ours if variant == "ours" else runner.raw)()[0]
        peak = _status_mib("VmHWM")
        print(json.dumps({"variant": variant, "chunks": len(runner.texts), "seconds": seconds,
                          "rss_after_model_load_mib": loaded, "peak_rss_mib": peak, "growth_mib": peak - loaded}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_rss(variant: str, shard: Path, squad: Path, batch_size: int) -> dict:
    cmd = [sys.executable, "-m", "bench.embed_throughput", "--child", variant, "--shard", str(shard),
           "--data-dir", str(squad.parents[1]), "--batch-size", str(batch_size)]
    out = subprocess.run(cmd, cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = bench_parser(__doc__, "embed_throughput")
    parser.add_argument("--chunks", type=int, default=600, help="N: chunks embedded per measurement")
    parser.add_argument("--batch-size", type=int, default=32, help="embedding.batch_size, and raw encode's")
    parser.add_argument("--repeats", type=int, default=3, help="alternating ours/raw pairs after the warm-up")
    parser.add_argument("--scale", type=int, default=4, help="the streaming check runs N and scale*N chunks")
    parser.add_argument("--child", choices=["ours", "raw"], help=argparse.SUPPRESS)
    parser.add_argument("--shard", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    squad = data_file(args.data_dir, SQUAD)
    if args.child:
        return child(args.child, args.shard, squad, args.batch_size)

    described = machine()
    work = Path(tempfile.mkdtemp(prefix="llmops-bench-embed-"))
    try:
        progress("ingest + chunking of the SQuAD corpus")
        texts, n_tokens = squad_chunks(squad, work, args.batch_size)
        # The larger shard repeats the same N chunks: the same lengths (and longest batch), only more of them.
        chosen = cycled(texts, args.chunks)  # the first N chunks (again from the start past the corpus' end)
        shard = write_shard(chosen, work / "shard-n.parquet")
        big_shard = write_shard(cycled(chosen, args.scale * args.chunks), work / "shard-big.parquet")
        runner = Runner(make_config(squad, work, args.batch_size), shard, work)
        tokens = cycled(n_tokens, args.chunks)
        progress(f"{args.chunks} chunks (corpus: {len(texts)}; mean {np.mean(tokens):.0f} tokens); warm-up")
        runner.ours()
        runner.raw()
        ours, raw, encode_only = [], [], []
        for r in range(args.repeats):
            for variant in ("ours", "raw") if r % 2 == 0 else ("raw", "ours"):  # neither always goes first
                progress(f"repeat {r + 1}/{args.repeats}: {variant}")
                if variant == "ours":
                    seconds, ours_vectors, encode_seconds = runner.ours()
                    ours.append(seconds)
                    encode_only.append(encode_seconds)
                else:
                    seconds, raw_vectors = runner.raw()
                    raw.append(seconds)
        max_diff = float(np.abs(ours_vectors - raw_vectors).max())

        rss = {}
        for label, variant, path in (("ours N", "ours", shard), ("raw N", "raw", shard),
                                     (f"ours {args.scale}N", "ours", big_shard), (f"raw {args.scale}N", "raw", big_shard)):
            progress(f"peak RSS in a subprocess: {label}")
            rss[label] = measure_rss(variant, path, squad, args.batch_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = args.chunks
    rates = {"ours": summarize([n / s for s in ours]), "raw": summarize([n / s for s in raw]),
             "ours_encode_only": summarize([n / s for s in encode_only])}
    ratio = rates["ours"]["median"] / rates["raw"]["median"]
    pair_ratios = [r / o for o, r in zip(ours, raw)]
    mean_tokens = float(np.mean(tokens))
    # What holding every text tokenized would add: input_ids + attention_mask (+ token_type_ids), int64, padded
    # to the longest chunk of its batch at least; here bounded below by the mean length.
    tokenized_mib = {label: r["chunks"] * mean_tokens * 3 * 8 / 2**20 for label, r in rss.items()}

    print_table(
        ["variant", "chunks/s median", "min", "max", "stdev"],
        [[k, v["median"], v["min"], v["max"], v["stdev"]] for k, v in rates.items()],
        f"embedding {n} SQuAD chunks (mean {mean_tokens:.0f} tokens), batch {args.batch_size}, "
        f"{args.repeats} repeats after a warm-up, alternating which goes first",
    )
    print(f"ours/raw throughput (medians): {ratio:.3f} (per pair: {', '.join(f'{x:.3f}' for x in pair_ratios)}); "
          f"target >= {TARGET_RATIO}: {'MET' if ratio >= TARGET_RATIO else 'NOT MET'}")
    print(f"max |ours - raw| over all vector components: {max_diff:.2e}")
    print_table(
        ["subprocess", "chunks", "RSS after model load MiB", "peak RSS MiB", "growth MiB", "all-tokenized MiB"],
        [[k, r["chunks"], r["rss_after_model_load_mib"], r["peak_rss_mib"], r["growth_mib"], tokenized_mib[k]]
         for k, r in rss.items()],
        "peak RSS while embedding, one fresh process per row (growth = that peak - RSS after loading the model)",
    )
    print(f"this process: peak RSS {peak_rss_mib():.0f} MiB")
    path = write_result(
        args.name,
        {
            **result_header("embed_throughput", described, args, leave_out=("child", "shard")),
            "chunks": n,
            "corpus_chunks": len(texts),
            "mean_tokens": mean_tokens,
            "seconds": {"ours": summarize(ours), "raw": summarize(raw), "ours_encode_only": summarize(encode_only)},
            "chunks_per_second": rates,
            "ratio_ours_over_raw": ratio,
            "pair_ratios": pair_ratios,
            "target_ratio": TARGET_RATIO,
            "target_met": ratio >= TARGET_RATIO,
            "max_abs_vector_difference": max_diff,
            "peak_rss": rss,
            "all_tokenized_mib_estimate": tokenized_mib,
            "process_peak_rss_mib": peak_rss_mib(),
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
