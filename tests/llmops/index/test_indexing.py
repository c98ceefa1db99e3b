"""The indexing stages end to end, in-process: artifacts, versions, verification, caching, sharding."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from llmops.corpus.ingest.report import IngestReport, read_ingest_report
from llmops.index.artifact import read_manifest, verify_artifact
from llmops.errors import ArtifactIntegrityError, ArtifactNotFoundError, InvalidRequestError
from llmops.index.retriever import Retriever
from tests.conftest import write_corpus
from tests.helpers import CORPUS, build, make_config


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("indexing")
    cfg = make_config(tmp, write_corpus(tmp / "corpus", CORPUS))
    out, ing, ch = build(cfg)
    return cfg, out, ing, ch


def test_manifest_records_lineage_and_every_file(built):
    cfg, out, ing, _ = built
    m = verify_artifact(out.artifact_uri)
    assert m.version == out.version and out.artifact_uri.endswith(m.version)
    top_level = {name for name in m.files if "/" not in name}
    assert top_level == {"vectors.faiss", "chunks.parquet", "config.json", "ingest_report.json"}
    assert any(name.startswith("lexical/") for name in m.files)
    assert m.corpus.fingerprint == ing.corpus_fingerprint
    assert m.embedding.dimension == 384 and len(m.embedding.model_digest) == 64
    assert m.index.type == "Flat" and m.counts.chunks == m.counts.vectors > len(CORPUS)
    assert {"faiss-cpu", "sentence-transformers", "transformers", "flytekit"} <= set(m.libraries)
    assert m.lineage.git_sha and m.lineage.code_version
    assert json.loads((out_dir(out) / "config.json").read_text())["embedding"]["model"] == cfg.embedding.model


def out_dir(out):
    return Path(out.artifact_uri)


def test_same_inputs_same_version_and_reuse(built):
    cfg, out, _, _ = built
    first = out.embedding_stats
    assert first["computed"] + first["cached"] == first["vectors"] == out_chunks(out) and first["computed"] > 0
    assert first["reused"] == first["shards_reused"] == 0 and first["shards"] > 1
    again, _, _ = build(cfg)
    assert again.version == out.version and again.reused
    # This run embedded nothing: every shard file was written by the first run and reused as it was.
    assert again.embedding_stats == {"vectors": first["vectors"], "computed": 0, "cached": 0,
                                     "reused": first["vectors"], "shards": first["shards"],
                                     "shards_reused": first["shards"], "embed_seconds": 0.0}


def out_chunks(out) -> int:
    return read_manifest(out.artifact_uri).counts.chunks


def test_stats_count_this_runs_work_when_only_the_index_changes(built):
    cfg, out, _, _ = built
    # Another BM25 parameter: a new index version over the same chunks, so the shard vectors are reused.
    other = cfg.model_copy(update={"lexical": cfg.lexical.model_copy(update={"k1": 1.2})})
    rebuilt, _, _ = build(other)
    assert rebuilt.version != out.version and not rebuilt.reused
    stats = rebuilt.embedding_stats
    assert (stats["computed"], stats["cached"], stats["reused"]) == (0, 0, out_chunks(out))
    # Calls that name the same run (a retried task of one execution) count the shard files it wrote as its own.
    retried, _, _ = build(other, run_id="run-x")
    assert retried.embedding_stats["reused"] == out_chunks(out)
    fresh = other.model_copy(update={"artifacts": other.artifacts.model_copy(
        update={"root": str(Path(cfg.artifacts.root).parent / "fresh")})})
    first, _, _ = build(fresh, run_id="run-y")
    again, _, _ = build(fresh, run_id="run-y")
    assert again.embedding_stats == first.embedding_stats and first.embedding_stats["computed"] > 0


def test_shard_files_from_before_run_ids_count_as_reused(tmp_path):
    from llmops.index.build import embedding_stats

    np.savez(tmp_path / "old.npz", vectors=np.zeros((3, 4), np.float32), computed=3, seconds=1.5)
    assert embedding_stats([str(tmp_path / "old.npz")], tmp_path / "scratch", "any") == {
        "vectors": 3, "computed": 0, "cached": 0, "reused": 3, "shards": 1, "shards_reused": 1, "embed_seconds": 0.0}


def test_changed_document_changes_version_and_reembeds_only_its_chunks(tmp_path, built):
    cfg, out, _, _ = built
    corpus = tmp_path / "corpus"
    shutil.copytree(cfg.corpus.sources[0].path, corpus)
    (corpus / "tea.txt").write_text(CORPUS["tea.txt"] + "\n\nSencha is the most popular tea in Japan.")
    cfg2 = cfg.model_copy(update={"corpus": cfg.corpus.model_copy(
        update={"sources": (cfg.corpus.sources[0].model_copy(update={"path": str(corpus)}),)})})
    changed, _, _ = build(cfg2)
    assert changed.version != out.version and not changed.reused
    tea_chunks = sum(1 for c in Retriever.load(changed.artifact_uri).chunk_column("source") if c.endswith("tea.txt"))
    stats = changed.embedding_stats
    assert 0 < stats["computed"] <= tea_chunks
    assert stats["cached"] == stats["vectors"] - stats["computed"] and stats["reused"] == 0  # shards are new


def test_corrupted_truncated_and_incomplete_artifacts_are_refused(tmp_path, built):
    _, out, _, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out.artifact_uri, copy)
    verify_artifact(copy)

    chunks = copy / "chunks.parquet"
    data = bytearray(chunks.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunks.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="chunks.parquet: sha256 mismatch"):
        Retriever.load(str(copy))

    (copy / "vectors.faiss").write_bytes(b"short")
    with pytest.raises(ArtifactIntegrityError, match="vectors.faiss: 5 bytes"):
        verify_artifact(copy)

    (copy / "manifest.json").unlink()
    with pytest.raises(ArtifactIntegrityError, match="incomplete: no manifest.json"):
        read_manifest(copy)
    with pytest.raises(ArtifactNotFoundError):
        read_manifest(tmp_path / "missing")


def test_an_index_manifest_of_schema_1_is_refused_with_the_fix(tmp_path, built):
    _, out, _, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out.artifact_uri, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    # schema 1: untyped sections; its fusion section did not say whether the weight was tuned, or on which fraction
    fusion = manifest["retrieval"]["fusion"]
    for field in ("weight_from", "calibration_fraction", "calibration_questions"):
        fusion.pop(field)
    (copy / "manifest.json").write_text(json.dumps({**manifest, "schema_version": 1}))
    refusal = (f"{copy / 'manifest.json'} has schema_version 1; this llmops reads 2. "
               "Build one with index_corpus with this version of llmops")
    for read in (read_manifest, verify_artifact, Retriever.load):
        with pytest.raises(ArtifactIntegrityError, match=re.escape(refusal)):
            read(str(copy))


def test_the_artifacts_ingest_report_is_the_ingest_stages(built):
    _, out, ing, _ = built
    stored = (Path(out.artifact_uri) / "ingest_report.json").read_text(encoding="utf-8")
    report = read_ingest_report(stored, "ingest_report.json")
    assert report == ing.report == IngestReport.model_validate_json(stored)
    assert report.documents == read_manifest(out.artifact_uri).counts.documents == len(CORPUS)


def test_no_staging_leftovers(built):
    cfg, _, _, _ = built
    staging = Path(cfg.artifacts.root, ".staging")
    assert not staging.exists() or not any(staging.iterdir())


def test_shards_give_the_same_index_as_one_shard(tmp_path, built):
    cfg, out, _, _ = built
    one_shard = cfg.model_copy(update={
        "embedding": cfg.embedding.model_copy(update={"shard_size": 100_000, "cache": False}),
        "artifacts": cfg.artifacts.model_copy(update={"root": str(tmp_path / "one")}),
    })
    single, _, _ = build(one_shard)
    many, one = Retriever.load(out.artifact_uri), Retriever.load(single.artifact_uri)
    assert many.chunk_column("chunk_id") == one.chunk_column("chunk_id")
    a = many._index.reconstruct_n(0, many.size)
    b = one._index.reconstruct_n(0, one.size)
    assert np.allclose(a, b, atol=1e-5)
    for q in ["active volcano in Sicily", "富士山の高さ", "powdered green tea"]:
        assert [h.chunk_id for h in many.search(q, 3, "hybrid")] == [h.chunk_id for h in one.search(q, 3, "hybrid")]


def test_retriever_answers_each_mode_with_sources(built):
    _, out, _, _ = built
    r = Retriever.load(out.artifact_uri)
    for mode in ("dense", "lexical", "hybrid"):
        hits = r.search("high-speed railway in Japan", 2, mode)
        assert hits[0].source.endswith("rail.md"), mode
        assert hits[0].rank == 1 and "Shinkansen" in hits[0].text
    ja = r.search("日本最高峰の山", 1, "hybrid")[0]
    assert ja.source.endswith("fuji_ja.md")
    with pytest.raises(InvalidRequestError, match="allowed: dense, lexical, hybrid"):
        r.search("x", 1, "fuzzy")


def test_query_embedding_cache_gives_the_same_results_and_counts_hits(built):
    _, out, _, _ = built
    plain = Retriever.load(out.artifact_uri)
    cached = Retriever.load(out.artifact_uri, query_cache_size=2)
    questions = ["high-speed railway in Japan", "日本最高峰の山", "green tea", "high-speed railway in Japan"]
    for q in questions + questions[::-1]:
        for mode in ("dense", "hybrid"):
            assert cached.search(q, 3, mode) == plain.search(q, 3, mode), (q, mode)
    cache = cached.query_vectors
    # 16 lookups; 2 slots: only back-to-back repeats of a question hit
    assert (cache.hits, cache.misses) == (10, 6)
    assert len(cache._vectors) == 2
    batch = ["green tea", "volcano", "green tea"]
    np.testing.assert_array_equal(cached.dense(batch, 2)[0], plain.dense(batch, 2)[0])
    assert Retriever.load(out.artifact_uri).query_vectors.size == 0  # off unless asked for (eval, builds)


def test_bm25_indexes_document_titles_but_hits_carry_the_chunk_text(tmp_path):
    mountain = "The mountain rises 5,895 metres above sea level in Tanzania."
    corpus = write_corpus(tmp_path / "corpus", {"Mount_Kilimanjaro.txt": mountain})
    notes = tmp_path / "notes.jsonl"  # records without a title field: documents without a title
    notes.write_text(json.dumps({"text": "Glaciers on high peaks have been retreating for a century."}) + "\n")
    sources = [{"kind": "directory", "path": str(corpus)}, {"kind": "jsonl", "path": str(notes)}]
    out, _, _ = build(make_config(tmp_path, corpus, corpus={"sources": sources}))
    r = Retriever.load(out.artifact_uri)
    assert json.loads((Path(out.artifact_uri) / "lexical" / "lexical.json").read_text())["fields"] == "title + text"

    for mode in ("lexical", "hybrid"):
        hit = r.search("Kilimanjaro", 1, mode)[0]  # named only by the title (the file name)
        assert (hit.title, hit.text) == ("Mount_Kilimanjaro", mountain), mode
    untitled = r.search("retreating glaciers", 1, "lexical")[0]
    assert untitled.title == "" and untitled.text.startswith("Glaciers on high peaks")
