"""The index: embedding (with its cache), the FAISS vector index, BM25, hybrid fusion and its tuning, the
`Retriever`, retrieval judging, the index artifact and its manifest, and the shard/embed/index stages.

The re-exports below are lazy (`llmops.exports`): importing this package loads neither torch nor faiss.
"""

from llmops.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "artifact": ("IndexManifest", "materialize", "read_manifest", "verify_artifact"),
        "build": ("BuildOutput", "build_index", "build_locally", "embed_shard", "plan_shards"),
        "embed_cache": ("EmbeddingCache",),
        "embedding": ("Embedder", "get_embedder"),
        "fusion": ("fuse",),
        "lexical": ("LexicalIndex",),
        "relevance": ("RelevanceJudge", "aggregate_scores", "score_questions"),
        "retriever": ("Retriever", "SearchHit"),
        "tuning": ("select_questions", "split_calibration", "tune_dense_weight"),
        "vector_index": ("build_vector_index", "choose_index_type"),
    },
)
