"""The indexing decks say what a run did: its own embedding work apart from reused shard files."""

import html
import re

from llmops.index.artifact import IndexManifest
from eval.schemas import RetrievalEvalReport
from tasks.decks import index_deck, run_summary_deck


def manifest() -> IndexManifest:
    return IndexManifest(
        schema_version=2, version="v1", created_at="2026-11-22T00:00:00Z", corpus={"fingerprint": "f"},
        chunking={"max_tokens": 64, "overlap_tokens": 8, "tokenizer": "embedding"},
        embedding={"model": "m", "model_digest": "d" * 64, "query_prefix": "", "passage_prefix": "", "dimension": 4},
        index={"type": "Flat", "metric": "inner_product", "params": {}, "built_on": "cpu"},
        lexical={"tokenizer": "auto", "k1": 0.9, "b": 0.75},
        retrieval={"mode": "hybrid", "k": 5, "fusion": {"method": "convex", "dense_weight": 0.5, "chosen_by": "config"}},
        counts={"chunks": 12, "vectors": 12}, files={}, libraries={}, lineage={},
    )


def rows(deck: str) -> dict[str, str]:
    """The key/value rows of a deck, as text."""
    cells = re.findall(r'<th scope="row">(.*?)</th><td[^>]*>(.*?)</td>', deck, re.S)
    return {html.unescape(k): html.unescape(re.sub(r"<[^>]+>", "", v)).strip() for k, v in cells}


def test_index_deck_separates_this_runs_embedding_from_reused_shards():
    stats = {"vectors": 12, "computed": 2, "cached": 6, "reused": 4, "shards": 3, "shards_reused": 1,
             "embed_seconds": 0.25, "reused_existing_version": False, "index_seconds": 1.0}
    got = rows(index_deck(manifest(), stats))
    assert got["vectors: embedded in this run / from the embedding cache / reused shard files"] == "2 / 6 / 4"
    summary = rows(run_summary_deck(manifest(), {}, stats, [10, 20], RetrievalEvalReport(index_version="v1", status="no eval set")))
    assert summary["embedding (model time in this run)"] == "0.25"
