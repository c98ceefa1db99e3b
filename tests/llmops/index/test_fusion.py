import numpy as np
import pytest

from llmops.index.fusion import fuse


def _arr(*xs, dtype=np.int64):
    return np.array(xs, dtype=dtype)


def test_convex_weight_extremes_reproduce_each_retriever():
    d_ids, d_scores = _arr(3, 1, 2), _arr(0.9, 0.5, 0.1, dtype=np.float32)
    l_ids, l_scores = _arr(2, 4, 3), _arr(12.0, 7.0, 1.0, dtype=np.float32)
    assert fuse(d_ids, d_scores, l_ids, l_scores, 3, "convex", 1.0)[0].tolist()[:3] == [3, 1, 2]
    assert fuse(d_ids, d_scores, l_ids, l_scores, 3, "convex", 0.0)[0].tolist()[:2] == [2, 4]


def test_convex_combines_normalized_scores():
    # dense: 3 -> 1.0, 1 -> 0.5, 2 -> 0.0 ; lexical: 2 -> 1.0, 4 -> ~0.545, 3 -> 0.0
    d_ids, d_scores = _arr(3, 1, 2), _arr(0.9, 0.5, 0.1, dtype=np.float32)
    l_ids, l_scores = _arr(2, 4, 3), _arr(12.0, 7.0, 1.0, dtype=np.float32)
    ids, scores = fuse(d_ids, d_scores, l_ids, l_scores, 4, "convex", 0.5)
    assert ids.tolist() == [2, 3, 4, 1]  # 2: 0.5, 3: 0.5 (tie -> lower id first), 4: 0.27, 1: 0.25
    assert scores[0] == pytest.approx(0.5) and scores[2] == pytest.approx(0.5 * 6 / 11, rel=1e-5)


def test_padding_is_ignored_and_output_is_padded_to_k():
    ids, scores = fuse(_arr(5, -1), _arr(0.3, 0.0, dtype=np.float32), _arr(-1, -1), _arr(0, 0, dtype=np.float32),
                       3, "convex", 0.5)
    assert ids.tolist() == [5, -1, -1]


def test_rrf_and_unknown_method():
    d_ids, l_ids = _arr(1, 2), _arr(2, 3)
    z = np.zeros(2, dtype=np.float32)
    assert fuse(d_ids, z, l_ids, z, 3, "rrf", 0.5)[0].tolist()[0] == 2  # in both lists
    with pytest.raises(ValueError, match="allowed: convex, rrf"):
        fuse(d_ids, z, l_ids, z, 3, "max", 0.5)
