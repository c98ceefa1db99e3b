"""FAISS index choice and construction (inner product over L2-normalized vectors = cosine similarity).

Index type follows FAISS's guidelines (github.com/facebookresearch/faiss/wiki/Guidelines-to-choose-an-index):
exact `Flat` while brute force is cheap, graph-based `HNSW` for up to about a million vectors when memory allows,
and `IVF` with 4*sqrt(N) lists (trained on the vectors) beyond that. Thresholds live in `IndexConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmops.config import IndexConfig
from llmops.errors import IndexBuildError

__all__ = ["BuiltIndex", "build_vector_index", "choose_index_type", "load_vector_index", "gpu_available"]


def choose_index_type(n_vectors: int, cfg: IndexConfig) -> str:
    if cfg.type != "auto":
        return cfg.type
    if n_vectors <= cfg.flat_max_vectors:
        return "Flat"
    if n_vectors < cfg.ivf_min_vectors:
        return f"HNSW{cfg.hnsw_m}"
    nlist = 1 << round(math.log2(4 * math.sqrt(n_vectors)))  # FAISS: 4*sqrt(N) to 16*sqrt(N) lists
    return f"IVF{nlist},Flat"


def gpu_available() -> bool:
    import faiss

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


@dataclass(frozen=True)
class BuiltIndex:
    index: object  # faiss.Index, on the CPU (ready to write)
    factory: str
    params: dict[str, int]  # search-time parameters recorded in the manifest
    built_on: str  # "cpu" or "gpu"


def build_vector_index(vectors: np.ndarray, factory: str, cfg: IndexConfig) -> BuiltIndex:
    import faiss

    if vectors.ndim != 2 or not len(vectors):
        raise IndexBuildError(f"cannot build a vector index from an array of shape {vectors.shape}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    try:
        index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise IndexBuildError(f"index.type {factory!r} is not a valid FAISS index_factory string: {e}") from None

    params: dict[str, int] = {}
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
        params["efSearch"] = cfg.hnsw_ef_search
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        if len(vectors) < ivf.nlist:
            raise IndexBuildError(
                f"index.type {factory!r} needs at least {ivf.nlist} vectors to train, got {len(vectors)}; "
                f"use a smaller list count or index.type: auto"
            )
        params["nprobe"] = min(cfg.ivf_nprobe, ivf.nlist)

    # HNSW has no GPU implementation in FAISS; Flat and IVF build (train + add) much faster there.
    on_gpu = cfg.use_gpu == "auto" and gpu_available() and not isinstance(index, faiss.IndexHNSW)
    if on_gpu:
        gpu_index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
        gpu_index.train(vectors)
        gpu_index.add(vectors)
        index = faiss.index_gpu_to_cpu(gpu_index)
    else:
        if not index.is_trained:
            index.train(vectors)
        index.add(vectors)
    apply_search_params(index, params)
    return BuiltIndex(index=index, factory=factory, params=params, built_on="gpu" if on_gpu else "cpu")


def apply_search_params(index, params: dict[str, int]) -> None:
    import faiss

    if "efSearch" in params:
        faiss.downcast_index(index).hnsw.efSearch = params["efSearch"]
    if "nprobe" in params:
        faiss.extract_index_ivf(index).nprobe = params["nprobe"]


def write_vector_index(index, path: Path) -> None:
    import faiss

    faiss.write_index(index, str(path))


def load_vector_index(path: Path, params: dict[str, int]):
    import faiss

    index = faiss.read_index(str(path))
    apply_search_params(index, params)
    return index
