"""The indexing stages as plain functions over URIs in the artifact store: shard, embed, build the index.

Each stage writes its output under `artifacts.root` at a path named by the digest of its inputs (content digests,
parameters and the code version), and returns that URI. A stage whose output already exists skips its work. This
keeps re-runs cheap and correct with or without Flyte's cache, and Flyte cache hits never point at deleted temp
folders, because outputs live in the store rather than in Flyte's scratch space. Flyte tasks in `tasks/` wrap
these functions one to one. The stages before these, ingest and chunk, are in `llmops.corpus.stages`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from llmops.index.artifact import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    ChunkingSection,
    CorpusSection,
    EmbeddingSection,
    FusionSection,
    IndexCounts,
    IndexLineage,
    IndexManifest,
    RetrievalSection,
    VectorIndexSection,
    file_entries,
    git_sha,
    library_versions,
    utc_now,
    materialize,
    verify_artifact,
)
from llmops.config import PipelineConfig
from llmops.corpus.documents import split_answerable
from llmops.corpus.ingest.report import IngestReport, read_ingest_report
from llmops.corpus.qa import read_qa
from llmops.corpus.stages import ChunkOutput, IngestOutput, run_chunking, run_ingest
from llmops.index.embed_cache import EmbeddingCache
from llmops.index.embedding import get_embedder
from llmops.errors import IndexBuildError
from llmops.provenance.stage_inputs import config_record, stage_code
from llmops.storage import (
    atomic_write_json,
    digest_of,
    fetch_file,
    join_uri,
    publish_directory,
    put_file,
    staging_dir,
    uri_exists,
)
from llmops.index.vector_index import build_vector_index, choose_index_type, write_vector_index
from llmops.workspace import scratch_dir, work_uri

__all__ = [
    "BuildOutput",
    "build_locally",
    "build_index",
    "embed_shard",
    "embedding_stats",
    "index_version",
    "plan_shards",
    "shard_stats",
]

log = logging.getLogger(__name__)


# The run a call belongs to when its caller names none: every call in this process. One `pyflyte run` is one
# process; code that builds several times in one process (tests, benchmarks) passes an id per build.
_PROCESS_RUN_ID = f"process-{uuid.uuid4().hex}"


# ---------------------------------------------------------------------------------------------------------------
# 1. Shard and embed
# ---------------------------------------------------------------------------------------------------------------


def plan_shards(cfg: PipelineConfig, chunks_uri: str) -> list[str]:
    """Split the chunk table into shard files of `embedding.shard_size` rows (chunk_id, text), in order."""
    with scratch_dir() as scratch:
        table = pq.read_table(fetch_file(chunks_uri, scratch), columns=["chunk_id", "text"])
        stem = Path(chunks_uri).stem
        size = cfg.embedding.shard_size
        uris = []
        for i, start in enumerate(range(0, table.num_rows, size)):
            uri = work_uri(cfg, "shards", f"{stem}-s{size}-{i:05d}.parquet")
            if not uri_exists(uri):
                pq.write_table(table.slice(start, size), scratch / "shard.parquet")
                put_file(scratch / "shard.parquet", uri)
            uris.append(uri)
        return uris


def embed_shard(
    cfg: PipelineConfig, shard_uri: str, model_digest: str, show_progress: bool = True, run_id: str | None = None
) -> str:
    """Embed one shard, reusing cached vectors; returns the URI of an .npz with `vectors`, the `computed` count
    and the `run_id` that wrote it (default: this process). A shard embedded before is returned as it is: the
    build's stats count it as reused, not as work of this run."""
    embedder = get_embedder(cfg.embedding)
    if embedder.digest != model_digest:
        raise IndexBuildError(
            f"embedding model files changed during the run (digest {embedder.digest[:12]} != {model_digest[:12]})"
        )
    profile = embedder.profile
    out_key = digest_of({"shard": Path(shard_uri).stem, "model": model_digest, "prefix": profile.passage_prefix})
    out_uri = work_uri(cfg, "vectors", f"{out_key}.npz")
    if uri_exists(out_uri):
        return out_uri
    with scratch_dir() as scratch:
        texts = pq.read_table(fetch_file(shard_uri, scratch), columns=["text"]).column("text").to_pylist()
        cache = EmbeddingCache(cfg.artifacts.root, model_digest, profile.passage_prefix) if cfg.embedding.cache else None
        if cache is not None:
            keys = cache.keys(texts)
            found, vectors = cache.lookup(keys, embedder.dimension)
        else:
            found, vectors = np.zeros(len(texts), dtype=bool), np.zeros((len(texts), embedder.dimension), np.float32)
        missing = np.flatnonzero(~found)
        t0 = time.perf_counter()
        if len(missing):
            fresh = embedder.embed_passages([texts[i] for i in missing], show_progress=show_progress)
            vectors[missing] = fresh
            if cache is not None:
                cache.add([keys[i] for i in missing], fresh)
        seconds = time.perf_counter() - t0
        np.savez(
            scratch / "vectors.npz",
            vectors=vectors,
            count=len(texts),
            computed=len(missing),
            seconds=seconds,
            run_id=np.array(run_id or _PROCESS_RUN_ID),
            device=np.array(embedder.device),
        )
        put_file(scratch / "vectors.npz", out_uri)
        log.info("embedded shard %s: %d computed, %d from cache", Path(shard_uri).name, len(missing), found.sum())
        return out_uri


# ---------------------------------------------------------------------------------------------------------------
# 2. Build the index artifact
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildOutput:
    artifact_uri: str
    version: str
    reused: bool  # True when this version already existed
    embedding_stats: dict  # what this run did: see embedding_stats()
    shards: tuple[dict, ...] = ()  # the same per shard file: see shard_stats()


def embedding_stats(uris: list[str], scratch: Path, run_id: str | None = None) -> dict:
    """What embedding work this run did for the index's vectors.

    vectors = computed (the model embedded them in this run) + cached (shards embedded in this run took them from
    the embedding cache) + reused (shard files that an earlier run wrote, used as they are; their own counts
    describe that run). embed_seconds is the model time of this run. `run_id` defaults to this process's.
    """
    return _embedding_totals(shard_stats(uris, scratch, run_id))


def _embedding_totals(shards: list[dict]) -> dict:
    stats = dict.fromkeys(("vectors", "computed", "cached", "reused", "shards", "shards_reused"), 0)
    seconds = 0.0
    for shard in shards:
        stats["vectors"] += shard["vectors"]
        stats["shards"] += 1
        stats["computed"] += shard["computed"]
        stats["cached"] += shard["cached"]
        stats["reused"] += shard["reused"]
        stats["shards_reused"] += bool(shard["reused"])
        seconds += shard["seconds"]
    return stats | {"embed_seconds": round(seconds, 3)}


def shard_stats(uris: list[str], scratch: Path, run_id: str | None = None) -> list[dict]:
    """Per shard file: vectors, computed / cached in this run or reused from an earlier one, model seconds and
    device. Map-task subtasks publish no Decks, so the index task's Deck shows these rows."""
    run_id = run_id or _PROCESS_RUN_ID
    rows = []
    for uri in uris:
        with np.load(fetch_file(uri, scratch)) as data:  # members load on access: vectors only for old files
            n = int(data["count"]) if "count" in data.files else data["vectors"].shape[0]
            this_run = "run_id" in data.files and str(data["run_id"]) == run_id
            computed = int(data["computed"]) if this_run else 0
            rows.append(
                {
                    "shard": Path(uri).stem,
                    "vectors": n,
                    "computed": computed,
                    "cached": n - computed if this_run else 0,
                    "reused": 0 if this_run else n,
                    "seconds": float(data["seconds"]) if this_run else 0.0,
                    "device": str(data["device"]) if "device" in data.files else "",
                }
            )
    return rows


def _load_vectors(uris: list[str], scratch: Path) -> np.ndarray:
    parts = []
    for uri in uris:
        with np.load(fetch_file(uri, scratch)) as data:
            parts.append(data["vectors"])
    return np.concatenate(parts)


def index_version(cfg: PipelineConfig, chunks_uri: str, model_digest: str, factory: str, qa_uri: str | None) -> str:
    fusion = cfg.retrieval.fusion
    answerability = cfg.answerability
    # auto-tuned values (fusion weight, answerability threshold) depend on the questions they were tuned on ...
    tuned_on_eval = bool(qa_uri) and (fusion.dense_weight == "auto" or answerability.threshold == "auto")
    return digest_of(
        {
            "schema": SCHEMA_VERSION,
            "chunks": Path(chunks_uri).stem,  # digest of corpus, chunking, model and code
            "model": model_digest,
            "index": {"type": factory, **cfg.index.model_dump(exclude={"type", "flat_max_vectors", "ivf_min_vectors"})},
            "lexical": cfg.lexical.model_dump(),
            "retrieval": cfg.retrieval.model_dump(),
            "answerability": answerability.model_dump(include={"threshold", "target_answerable_recall",
                                                                  "fallback_threshold"}),
            "qa": Path(qa_uri).stem if tuned_on_eval else None,
            # ... and on the share of them tuned on (the manifest records it; eval leaves those questions out)
            "calibration_fraction": cfg.eval.calibration_fraction if tuned_on_eval else None,
            "code": stage_code("index").fingerprint,
        }
    )


def build_index(
    cfg: PipelineConfig,
    chunks_uri: str,
    vector_uris: list[str],
    model_digest: str,
    max_tokens: int,
    corpus_fingerprint: str,
    ingest_report: IngestReport | dict,
    qa_uri: str | None = None,
    flyte_execution_id: str | None = None,
    run_id: str | None = None,
) -> BuildOutput:
    """Build (or reuse) the index version for these chunks and shard vectors. `run_id` names the run, as given to
    `embed_shard` (default: this process), so the stats tell this run's embedding work from reused shards.
    `ingest_report`: the ingest stage's report, or its JSON object as it crosses a task boundary."""
    ingest_report = read_ingest_report(ingest_report, "build_index(ingest_report=...)")
    with scratch_dir() as scratch:
        chunks_path = fetch_file(chunks_uri, scratch)
        n_chunks = pq.read_metadata(chunks_path).num_rows
        factory = choose_index_type(n_chunks, cfg.index)
        version = index_version(cfg, chunks_uri, model_digest, factory, qa_uri)
        artifact_uri = join_uri(cfg.artifacts.root, "indexes", version)
        shards = shard_stats(vector_uris, scratch, run_id)
        stats = _embedding_totals(shards)
        if uri_exists(join_uri(artifact_uri, MANIFEST_NAME)):
            # Reuse only a verified artifact; a damaged one fails the build and is left for inspection.
            verify_artifact(materialize(artifact_uri))
            return BuildOutput(artifact_uri, version, True, stats, tuple(shards))
        vectors = _load_vectors(vector_uris, scratch)
        if len(vectors) != n_chunks:
            raise IndexBuildError(f"{len(vectors)} vectors for {n_chunks} chunks: shard outputs are incomplete")
        stage = staging_dir(cfg.artifacts.root)
        try:
            manifest = _write_artifact(
                cfg,
                stage=stage,
                chunks_path=chunks_path,
                vectors=vectors,
                factory=factory,
                version=version,
                model_digest=model_digest,
                max_tokens=max_tokens,
                corpus_fingerprint=corpus_fingerprint,
                ingest_report=ingest_report,
                qa_uri=qa_uri,
                flyte_execution_id=flyte_execution_id,
                scratch=scratch,
            )
            atomic_write_json(stage / MANIFEST_NAME, manifest.model_dump(mode="json"))
            publish_directory(stage, artifact_uri)
        finally:
            shutil.rmtree(stage, ignore_errors=True)  # gone already when published
        return BuildOutput(artifact_uri, version, False, stats, tuple(shards))


def _write_artifact(
    cfg: PipelineConfig,
    *,
    stage: Path,
    chunks_path: Path,
    vectors: np.ndarray,
    factory: str,
    version: str,
    model_digest: str,
    max_tokens: int,
    corpus_fingerprint: str,
    ingest_report: IngestReport,
    qa_uri: str | None,
    flyte_execution_id: str | None,
    scratch: Path,
) -> IndexManifest:
    """Write every artifact file into `stage` and return the manifest describing them."""
    embedder = get_embedder(cfg.embedding)
    built = build_vector_index(vectors, factory, cfg.index)
    write_vector_index(built.index, stage / "vectors.faiss")
    shutil.copyfile(chunks_path, stage / "chunks.parquet")
    lexical = None
    if cfg.lexical.enabled:
        from llmops.index.lexical import LexicalIndex

        table = pq.read_table(chunks_path, columns=["title", "text"])
        # BM25 sees each chunk headed by its document's title; the stored chunk text stays as it is.
        texts, titles = table.column("text").to_pylist(), table.column("title").to_pylist()
        LexicalIndex.build(texts, cfg.lexical, titles=titles).save(stage / "lexical")
        lexical = cfg.lexical
    atomic_write_json(stage / "config.json", config_record(cfg))
    atomic_write_json(stage / "ingest_report.json", ingest_report.model_dump(mode="json"))

    fusion = cfg.retrieval.fusion
    manifest = IndexManifest(
        schema_version=SCHEMA_VERSION,
        version=version,
        created_at=utc_now(),
        corpus=CorpusSection(fingerprint=corpus_fingerprint, sources=[s.path for s in cfg.corpus.sources]),
        chunking=ChunkingSection(max_tokens=max_tokens, overlap_tokens=cfg.chunking.overlap_tokens,
                                 tokenizer="embedding"),
        embedding=EmbeddingSection(
            model=cfg.embedding.model,
            revision=cfg.embedding.revision,
            model_digest=model_digest,
            profile=embedder.profile.name,
            query_prefix=embedder.profile.query_prefix,
            passage_prefix=embedder.profile.passage_prefix,
            dimension=int(vectors.shape[1]),
            normalized=True,
        ),
        index=VectorIndexSection(type=factory, metric="inner_product", params=built.params, built_on=built.built_on),
        lexical=lexical,
        retrieval=RetrievalSection(
            mode=cfg.retrieval.mode,
            k=cfg.retrieval.k,
            # "auto" is resolved below by _tune_fusion; 0.5 stands in until then
            fusion=FusionSection(
                method=fusion.method,
                dense_weight=0.5 if fusion.dense_weight == "auto" else fusion.dense_weight,
                rrf_k=fusion.rrf_k,
                candidates=fusion.candidates,
                weight_from="config",
                chosen_by="config",
            ),
        ),
        counts=IndexCounts(
            documents=ingest_report.documents,
            chunks=int(len(vectors)),
            vectors=int(built.index.ntotal),
            skipped=len(ingest_report.skipped),
            duplicates=len(ingest_report.duplicates),
        ),
        files=file_entries(stage),
        libraries=library_versions(),
        lineage=IndexLineage(
            git_sha=git_sha(),
            code_version=stage_code("index").digest,
            config_digest=digest_of(config_record(cfg)),
            flyte_execution_id=flyte_execution_id,
            qa=qa_uri,
        ),
    )
    return _tune_on_eval_set(cfg, stage, manifest, qa_uri, scratch, embedder)


def _tune_on_eval_set(cfg, stage: Path, manifest: IndexManifest, qa_uri, scratch: Path, embedder) -> IndexManifest:
    """Resolve what `auto` leaves to the calibration split of the eval set: the fusion weight and the answerability
    threshold (one split, one retriever over the staged files)."""
    from llmops.index.answerability import resolve_answerability
    from llmops.index.retriever import Retriever
    from llmops.index.tuning import split_calibration

    fusion_auto = cfg.retrieval.fusion.dense_weight == "auto"
    fraction = cfg.eval.calibration_fraction
    calibration = []
    if qa_uri and (fusion_auto or cfg.answerability.threshold == "auto"):
        calibration, _ = split_calibration(read_qa(fetch_file(qa_uri, scratch)), fraction)
    retriever = Retriever(stage, manifest, embedder) if calibration else None
    if fusion_auto:
        manifest = _tune_fusion(fraction, manifest, calibration if manifest.lexical is not None else [], retriever)
    answerability = resolve_answerability(cfg.answerability, retriever, calibration, fraction)
    return manifest.model_copy(update={"answerability": answerability})


def _tune_fusion(fraction: float, manifest: IndexManifest, calibration, retriever) -> IndexManifest:
    """Resolve `dense_weight: auto` on the calibration split of the eval set (0.5 when there is none)."""
    from llmops.index.tuning import tune_dense_weight

    fusion = manifest.retrieval.fusion
    calibration, _ = split_answerable(calibration)  # no chunk is relevant to an unanswerable question
    if calibration:
        weight, curve = tune_dense_weight(retriever, calibration)
        fusion = fusion.model_copy(update=dict(
            dense_weight=weight,
            weight_from="tuned",
            calibration_fraction=fraction,
            calibration_questions=len(calibration),
            chosen_by=f"tuned on {len(calibration)} calibration questions (MRR@10)",
            tuning_curve={str(w): round(s, 4) for w, s in curve.items()},
        ))
    else:
        fusion = fusion.model_copy(update=dict(dense_weight=0.5, weight_from="default",
                                               chosen_by="default: no eval set to tune on"))
    return manifest.model_copy(update={"retrieval": manifest.retrieval.model_copy(update={"fusion": fusion})})


def build_locally(
    cfg: PipelineConfig,
    run_id: str | None = None,
    show_progress: bool = False,
    timings: dict | None = None,
) -> tuple[BuildOutput, IngestOutput, ChunkOutput]:
    """ingest -> chunk -> plan shards -> embed -> index in this process, without Flyte: the same stage functions
    the Flyte tasks call, as one run (a fresh `run_id` unless given, so `embedding_stats` counts only this build's
    embedding work). `timings`, when given, receives seconds per stage. Returns (BuildOutput, IngestOutput,
    ChunkOutput)."""
    run_id = run_id or f"local-{uuid.uuid4().hex}"
    timings = {} if timings is None else timings

    def stage(name, fn):
        t0 = time.perf_counter()
        result = fn()
        timings[name] = time.perf_counter() - t0
        return result

    ing = stage("ingest", lambda: run_ingest(cfg))
    ch = stage(
        "chunk", lambda: run_chunking(cfg, ing.documents_uri, ing.corpus_fingerprint, get_embedder(cfg.embedding))
    )
    shards = stage("plan_shards", lambda: plan_shards(cfg, ch.chunks_uri))
    vectors = stage(
        "embed",
        lambda: [embed_shard(cfg, s, ch.model_digest, show_progress=show_progress, run_id=run_id) for s in shards],
    )
    out = stage(
        "index",
        lambda: build_index(
            cfg,
            chunks_uri=ch.chunks_uri,
            vector_uris=vectors,
            model_digest=ch.model_digest,
            max_tokens=ch.max_tokens,
            corpus_fingerprint=ing.corpus_fingerprint,
            ingest_report=json.loads(ing.report.model_dump_json()),  # as it crosses the Flyte task boundary
            qa_uri=ing.qa_uri,
            run_id=run_id,
        ),
    )
    return out, ing, ch
