import numpy as np
import pytest

from llmops.config import IndexConfig
from llmops.errors import IndexBuildError
from llmops.index.vector_index import build_vector_index, choose_index_type


def _unit(n, d=32, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_auto_type_follows_size_thresholds():
    cfg = IndexConfig(flat_max_vectors=1000, ivf_min_vectors=100_000, hnsw_m=16)
    assert choose_index_type(1000, cfg) == "Flat"
    assert choose_index_type(1001, cfg) == "HNSW16"
    assert choose_index_type(1_000_000, cfg) == "IVF4096,Flat"  # 4*sqrt(N) rounded to a power of two
    assert choose_index_type(10, IndexConfig(type="HNSW8")) == "HNSW8"  # override wins


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF8,Flat"])
def test_each_type_finds_exact_neighbours_of_indexed_vectors(factory):
    x = _unit(400)
    built = build_vector_index(x, factory, IndexConfig(ivf_nprobe=8))
    scores, ids = built.index.search(x[:20], 1)
    assert ids[:, 0].tolist() == list(range(20))
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5)  # inner product of unit vectors = cosine
    assert built.built_on == "cpu"


def test_bad_factory_and_too_few_vectors_for_ivf():
    with pytest.raises(IndexBuildError, match="not a valid FAISS index_factory"):
        build_vector_index(_unit(10), "NotAnIndex", IndexConfig())
    with pytest.raises(IndexBuildError, match="needs at least 64 vectors"):
        build_vector_index(_unit(10), "IVF64,Flat", IndexConfig())
