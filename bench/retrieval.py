"""Retrieval quality on SQuAD (English) and JSQuAD (Japanese): recall@1/5/10, MRR@10 and nDCG@10 for dense, lexical
and hybrid retrieval on the held-out questions, against the targets of the indexing issue.

Each dataset is indexed through the real stage functions (ingest -> chunk -> embed -> index, fusion weight tuned on
the calibration split) with the SQuAD file as the corpus source, so its questions are the eval set. Plain RRF
(dense_weight 0.5) is scored on the same held-out questions for comparison. `--sweep` also measures alternatives
(chunk size, fusion normalization, candidate depth, BM25 tokenizer and k1/b, BM25 without document titles, titles
in the embedded text too): each is tuned on the calibration split
and scored on the held-out questions, so choosing among them never looks at the scored questions' results.

    python -m bench.retrieval                         # both datasets, library defaults
    python -m bench.retrieval --sweep --work-dir /tmp/llmops-bench   # + alternatives; re-runs reuse embeddings
    python -m bench.retrieval --datasets jsquad --lexical-tokenizer bigram --k1 1.2
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.common import (
    JSQUAD,
    SQUAD,
    bench_parser,
    build,
    data_file,
    machine,
    make_config as common_config,
    print_table,
    progress,
    result_header,
    write_result,
)

DATASETS = {"squad": (SQUAD, False), "jsquad": (JSQUAD, True)}  # file, strip 'TITLE [SEP] ' prefix
TARGETS = {"squad": {"recall@1": 0.80, "recall@5": 0.96}, "jsquad": {"recall@5": 0.97}}
METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")
NORMALIZATIONS = ("minmax", "zscore", "cosine")


def make_config(args, dataset: str, data_dir: Path, work_dir: Path, chunking: dict | None = None):
    """The pipeline config for one dataset; flags left unset keep the library's defaults."""
    relative, strip = DATASETS[dataset]
    source = {"kind": "squad", "path": str(data_file(data_dir, relative))}
    if strip:
        source["strip_title_prefix"] = True

    def given(**values):
        return {k: v for k, v in values.items() if v is not None}

    return common_config(
        source,
        work_dir / "artifacts",
        chunking=given(max_tokens=args.max_tokens, overlap_tokens=args.overlap_tokens) | (chunking or {}),
        lexical=given(tokenizer=args.lexical_tokenizer, k1=args.k1, b=args.b),
        retrieval={"fusion": given(candidates=args.candidates)},
    )


# ---------------------------------------------------------------------------------------------------------------
# Query-time variants, evaluated on a copy of the built retriever
# ---------------------------------------------------------------------------------------------------------------


class QueryMemo:
    """Embedder stand-in that embeds each distinct question once: every variant asks the same questions."""

    def __init__(self, embedder):
        self._embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}

    def embed_queries(self, texts):
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self._embedder.embed_queries(missing)))
        return np.stack([self._vectors[t] for t in texts])

    def __getattr__(self, name):
        return getattr(self._embedder, name)


def _normalized(scores: np.ndarray, dense: bool, how: str) -> np.ndarray:
    s = scores.astype(np.float64)
    if how == "zscore":
        return (s - s.mean()) / (s.std() or 1.0)
    if how == "cosine":  # dense scores are cosines already; BM25 has no scale, so it is divided by the top score
        return s if dense else s / s.max()
    raise ValueError(f"unknown normalization {how!r}")


def fuse_normalized(how: str, d_ids, d_scores, l_ids, l_scores, k: int, dense_weight: float):
    """Convex fusion like llmops.index.fusion.fuse, with another score normalization. A candidate missing from one list
    gets that list's lowest normalized score (what min-max's 0 means in the library)."""
    out_ids = np.full((len(d_ids), k), -1, dtype=np.int64)
    out_scores = np.zeros((len(d_ids), k), dtype=np.float32)
    for q in range(len(d_ids)):
        lists = []
        for ids, scores, weight, dense in (
            (d_ids[q], d_scores[q], dense_weight, True),
            (l_ids[q], l_scores[q], 1.0 - dense_weight, False),
        ):
            valid = ids >= 0
            if valid.any():
                part = weight * _normalized(scores[valid], dense, how)
                lists.append((dict(zip(ids[valid].tolist(), part.tolist())), float(part.min())))
        union = set().union(*(found for found, _ in lists))
        totals = {i: sum(found.get(i, floor) for found, floor in lists) for i in union}
        ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        for r, (i, s) in enumerate(ranked):
            out_ids[q, r], out_scores[q, r] = i, s
    return out_ids, out_scores


@dataclass(frozen=True)
class Variant:
    name: str
    method: str = "convex"
    normalization: str = "minmax"  # minmax is the library's fuse(); others use fuse_normalized
    candidates: int | None = None  # None: the index's fusion.candidates
    lexical: dict | None = None  # LexicalConfig fields for a rebuilt BM25 index; None: the index's
    text_only: bool = False  # rebuild BM25 over the chunk text alone (indexes head each chunk with its title)
    dense_titles: bool = False  # embed 'title + newline + chunk text' too (a flat index over those vectors)
    dense_weight: float | None = None  # None: tuned on the calibration split (MRR@10), as the index build does


def query_time_variants(dataset: str) -> list[Variant]:
    from llmops.config import LexicalConfig

    default = LexicalConfig()
    variants = [Variant("default: convex min-max, tuned")]
    variants += [Variant(f"convex {n}, tuned", normalization=n) for n in NORMALIZATIONS[1:]]
    variants += [Variant(f"candidates {c}", candidates=c) for c in (20, 50, 200)]
    variants += [Variant("rrf, weight tuned", method="rrf")]
    tokenizers = ("mecab", "bigram") if dataset == "jsquad" else ()
    variants += [Variant(f"lexical.tokenizer {t}", lexical={"tokenizer": t}) for t in tokenizers]
    variants += [
        Variant(f"lexical k1 {k1} b {b}", lexical={"k1": k1, "b": b})
        for k1 in (0.9, 1.2, 1.5, 2.0)
        for b in (0.5, 0.75, 0.9)
        if (k1, b) != (default.k1, default.b)
    ]
    variants += [Variant("lexical over text only (no titles)", lexical={}, text_only=True)]
    variants += [Variant(f"lexical over text only, k1 {k1}", lexical={"k1": k1}, text_only=True) for k1 in (1.2, 1.5)]
    variants += [Variant("dense over title + text too", dense_titles=True)]
    return variants


def titled_texts(chunks: dict[str, list[str]]) -> list[str]:
    """Chunk texts headed by their document's title, as the BM25 index sees them."""
    from llmops.index.lexical import titled

    return [titled(title, text) for title, text in zip(chunks["title"], chunks["text"])]


def embed_cached(embedder, texts: list[str], cache_root: str) -> np.ndarray:
    """Passage vectors through the pipeline's embedding cache, so re-runs of the sweep embed nothing."""
    from llmops.index.embed_cache import EmbeddingCache

    cache = EmbeddingCache(cache_root, embedder.digest, embedder.profile.passage_prefix)
    keys = cache.keys(texts)
    found, vectors = cache.lookup(keys, embedder.dimension)
    missing = np.flatnonzero(~found)
    if len(missing):
        fresh = embedder.embed_passages([texts[i] for i in missing], show_progress=True)
        vectors[missing] = fresh
        cache.add([keys[i] for i in missing], fresh)
    return vectors


@dataclass
class Built:
    """An index built through the stage functions, loaded, with the questions split as its tuning split them."""

    retriever: object  # llmops.index.retriever.Retriever, its embedder wrapped in QueryMemo
    chunks: dict[str, list[str]]  # doc_id, text and title of every chunk, in index order
    cache_root: str  # the artifacts root: its embedding cache serves the dense variants
    calibration: list
    held_out: list
    summary: dict


def variant_retriever(built: Built, variant: Variant):
    """A copy of the built retriever that fuses (and, for lexical and dense variants, searches) as `variant` says."""
    from llmops.config import IndexConfig, LexicalConfig
    from llmops.index.lexical import LexicalIndex
    from llmops.index.vector_index import build_vector_index

    lexical_index = vector_index = None
    if variant.lexical is not None:
        # what build_index would write for this lexical config
        cfg = LexicalConfig(**{**built.retriever.manifest.lexical.model_dump(), **variant.lexical})
        titles = None if variant.text_only else built.chunks["title"]
        lexical_index = LexicalIndex.build(built.chunks["text"], cfg, titles=titles)
    if variant.dense_titles:
        vectors = embed_cached(built.retriever.embedder, titled_texts(built.chunks), built.cache_root)
        vector_index = build_vector_index(vectors, "Flat", IndexConfig()).index
    r = built.retriever.with_indexes(vector_index=vector_index, lexical_index=lexical_index)
    r.fusion_method = variant.method
    if variant.candidates:
        r.candidates = variant.candidates
    if variant.normalization != "minmax":
        r.fuse_candidates = lambda *a, **kw: fuse_normalized(variant.normalization, *a, **kw)
    return r


def evaluate_variant(built: Built, variant: Variant) -> dict:
    from eval.retrieval import evaluate_mode
    from llmops.index.tuning import tune_dense_weight

    r = variant_retriever(built, variant)
    if variant.dense_weight is None:
        weight, curve = tune_dense_weight(r, built.calibration)
        calibration_mrr = curve[weight]
    else:
        weight, calibration_mrr = variant.dense_weight, None
    r.dense_weight = weight
    row = {
        "variant": variant.name,
        "dense_weight": weight,
        "calibration_mrr@10": calibration_mrr,
        "hybrid": evaluate_mode(r, built.held_out, "hybrid").metrics,
    }
    if variant.lexical is not None:
        row["lexical"] = evaluate_mode(r, built.held_out, "lexical").metrics
    if variant.dense_titles:
        row["dense"] = evaluate_mode(r, built.held_out, "dense").metrics
    return row


# ---------------------------------------------------------------------------------------------------------------
# One dataset
# ---------------------------------------------------------------------------------------------------------------


def build_and_report(cfg, label: str, work_dir: Path) -> Built:
    """Index through the stage functions and score every mode on the held-out questions."""
    from eval.retrieval import evaluate_retrieval_modes
    from llmops.index.tuning import split_calibration
    from llmops.corpus.qa import read_qa
    from llmops.index.retriever import Retriever
    from llmops.storage import fetch_file

    progress(f"{label}: building the index (ingest, chunk, embed, index, tune fusion)")
    t0 = time.perf_counter()
    out, ing, ch = build(cfg)
    seconds = time.perf_counter() - t0
    progress(f"{label}: index {out.version} built in {seconds:.0f} s ({out.embedding_stats}); scoring")
    retriever = Retriever.load(out.artifact_uri)
    retriever.embedder = QueryMemo(retriever.embedder)
    examples = read_qa(fetch_file(ing.qa_uri, work_dir))
    report = evaluate_retrieval_modes(retriever, examples, cfg.eval.ks).model_dump(mode="json")
    calibration, held_out = split_calibration(examples, cfg.eval.calibration_fraction)
    fusion = retriever.manifest.retrieval.fusion
    summary = {
        "config": {
            "chunking.max_tokens": ch.max_tokens,
            "chunking.overlap_tokens": cfg.chunking.overlap_tokens,
            "lexical": cfg.lexical.model_dump(),
            "fusion": cfg.retrieval.fusion.model_dump(),
        },
        "index_version": out.version,
        "build_seconds": round(seconds, 1),
        "embedding_stats": out.embedding_stats,
        "chunks": retriever.size,
        "tuned_dense_weight": fusion.dense_weight,
        "tuning_curve": fusion.tuning_curve,
        "chosen_by": fusion.chosen_by,
        "report": report,
    }
    chunks = pq.read_table(retriever.directory / "chunks.parquet", columns=["doc_id", "text", "title"]).to_pydict()
    return Built(retriever, chunks, cfg.artifacts.root, calibration, held_out, summary)


def _stderr(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else 0.0


def check_targets(dataset: str, report: dict) -> list[dict]:
    hybrid = report["modes"]["hybrid"]
    n = hybrid["questions"]
    return [
        {
            "metric": f"hybrid {metric}",
            "value": hybrid["metrics"][metric],
            "stderr": _stderr(hybrid["metrics"][metric], n),
            "target": threshold,
            "met": hybrid["metrics"][metric] >= threshold,
        }
        for metric, threshold in TARGETS[dataset].items()
    ]


def title_misses(built: Built) -> dict:
    """Hybrid misses at rank 5 whose question names the gold document's title while the gold text does not:
    what BM25 over the chunk text alone cannot match, and the title heading each chunk in the BM25 index is for."""
    from eval.retrieval import evaluate_mode
    from llmops.index.lexical import tokenize

    rows = evaluate_mode(built.retriever, built.held_out, "hybrid").per_question
    by_id = {ex.qid: ex for ex in built.held_out}
    title, text = {}, {}
    for doc_id, t, chunk in zip(built.chunks["doc_id"], built.chunks["title"], built.chunks["text"]):
        title[doc_id] = t.replace("_", " ")
        text[doc_id] = text.get(doc_id, "") + "\n" + chunk
    missed = [by_id[r["qid"]] for r in rows if not r["first_relevant_rank"] or r["first_relevant_rank"] > 5]

    def names_title_only(ex) -> bool:
        words = set(tokenize(title[ex.gold_doc_id], "auto"))
        return bool(words) and words <= set(tokenize(ex.question, "auto")) and not words <= set(
            tokenize(text[ex.gold_doc_id], "auto"))

    return {"missed_at_5": len(missed), "question_names_title_absent_from_gold_text": sum(map(names_title_only, missed))}


def run_dataset(args, dataset: str, data_dir: Path, work_dir: Path) -> dict:
    built = build_and_report(make_config(args, dataset, data_dir, work_dir), dataset, work_dir)
    summary, report = built.summary, built.summary["report"]
    progress(f"{dataset}: plain RRF (dense_weight 0.5) on the same held-out questions")
    rrf = evaluate_variant(built, Variant("plain rrf", method="rrf", dense_weight=0.5))
    summary |= {"plain_rrf": rrf["hybrid"], "targets": check_targets(dataset, report), "misses": title_misses(built)}

    rows = [[mode, *(r["metrics"][m] for m in METRICS)] for mode, r in report["modes"].items()]
    rows.append(["hybrid, plain RRF", *(rrf["hybrid"][m] for m in METRICS)])
    print_table(
        ["mode", *METRICS], rows,
        f"{dataset}: {report['questions']} held-out questions, {summary['chunks']} chunks "
        f"(max_tokens {summary['config']['chunking.max_tokens']}); tuned dense weight {summary['tuned_dense_weight']}",
    )
    curve = summary["tuning_curve"] or {}
    print("tuning curve (dense weight: calibration MRR@10): " + ", ".join(f"{w}: {s:.3f}" for w, s in curve.items()))
    misses = summary["misses"]
    print(f"hybrid misses at rank 5: {misses['missed_at_5']}, of which the question names the document title and "
          f"the gold text does not: {misses['question_names_title_absent_from_gold_text']}")
    for t in summary["targets"]:
        print(f"target {t['metric']} >= {t['target']}: {t['value']:.4f} (s.e. {t['stderr']:.4f}) "
              f"{'MET' if t['met'] else 'NOT MET'}")
    if args.sweep:
        summary["sweep"] = sweep(args, dataset, data_dir, work_dir, built)
    return summary


def sweep(args, dataset: str, data_dir: Path, work_dir: Path, built: Built) -> dict:
    variants = query_time_variants(dataset)
    rows = []
    for i, variant in enumerate(variants, 1):
        progress(f"{dataset}: sweep {i}/{len(variants)}: {variant.name}")
        rows.append(evaluate_variant(built, variant))
    chunk_sizes = []
    for max_tokens in args.sweep_max_tokens:
        if max_tokens == built.summary["config"]["chunking.max_tokens"]:
            continue
        cfg = make_config(args, dataset, data_dir, work_dir, chunking={"max_tokens": max_tokens})
        other = build_and_report(cfg, f"{dataset} max_tokens {max_tokens}", work_dir).summary
        chunk_sizes.append({k: v for k, v in other.items() if k != "report"}
                           | {"modes": {m: r["metrics"] for m, r in other["report"]["modes"].items()}})
    table = [
        [r["variant"], r["dense_weight"], r["calibration_mrr@10"] if r["calibration_mrr@10"] is not None else "-",
         *(r["hybrid"][m] for m in METRICS), r["lexical"]["recall@5"] if "lexical" in r else "-"]
        for r in rows
    ]
    table += [
        [f"chunking.max_tokens {c['config']['chunking.max_tokens']} (rebuilt)", c["tuned_dense_weight"], "-",
         *(c["modes"]["hybrid"][m] for m in METRICS), c["modes"]["lexical"]["recall@5"]]
        for c in chunk_sizes
    ]
    print_table(
        ["variant (hybrid, held-out)", "w", "calib MRR", *METRICS, "lex R@5"], table,
        f"{dataset}: alternatives (weights tuned on the calibration split; metrics on held-out questions)",
    )
    return {"query_time": rows, "chunk_size": chunk_sizes}


def main() -> None:
    parser = bench_parser(__doc__, "retrieval", data_help="folder with squad/ and jsquad/")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=["squad", "jsquad"])
    parser.add_argument("--work-dir", type=Path, help="artifacts folder to keep and reuse (default: a temp folder)")
    parser.add_argument("--max-tokens", type=int, help="chunking.max_tokens (default: the model's limit)")
    parser.add_argument("--overlap-tokens", type=int, help="chunking.overlap_tokens")
    parser.add_argument("--lexical-tokenizer", choices=["auto", "word", "mecab", "bigram"], help="lexical.tokenizer")
    parser.add_argument("--k1", type=float, help="lexical.k1")
    parser.add_argument("--b", type=float, help="lexical.b")
    parser.add_argument("--candidates", type=int, help="retrieval.fusion.candidates")
    parser.add_argument("--sweep", action="store_true", help="also measure the alternatives (adds minutes)")
    parser.add_argument("--sweep-max-tokens", type=int, nargs="*", default=[128], help="chunk sizes to rebuild with")
    args = parser.parse_args()

    for dataset in args.datasets:
        data_file(args.data_dir, DATASETS[dataset][0])
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="llmops-bench-retrieval-"))
    result = {**result_header("retrieval", machine(), args),
              "targets": TARGETS, "datasets": {}}
    try:
        for dataset in args.datasets:
            result["datasets"][dataset] = run_dataset(args, dataset, args.data_dir, work_dir)
    finally:
        if args.work_dir is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    path = write_result(args.name, result)
    met = all(t["met"] for d in result["datasets"].values() for t in d["targets"])
    print(f"\nall targets met: {'yes' if met else 'no'}; results: {path}")


if __name__ == "__main__":
    main()
