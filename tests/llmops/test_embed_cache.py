import numpy as np

from llmops.embed_cache import EmbeddingCache


def test_round_trip_across_instances_and_namespaces(tmp_path):
    cache = EmbeddingCache(str(tmp_path), "model-a", "passage: ")
    keys = cache.keys(["alpha", "beta"])
    vectors = np.arange(8, dtype=np.float32).reshape(2, 4)
    cache.add(keys, vectors)

    reopened = EmbeddingCache(str(tmp_path), "model-a", "passage: ")
    found, got = reopened.lookup(reopened.keys(["beta", "gamma", "alpha"]), 4)
    assert found.tolist() == [True, False, True]
    assert np.array_equal(got[0], vectors[1]) and np.array_equal(got[2], vectors[0])
    assert not got[1].any()

    # Another model or prefix never sees these vectors.
    for other in (EmbeddingCache(str(tmp_path), "model-b", "passage: "), EmbeddingCache(str(tmp_path), "model-a", "")):
        assert not other.lookup(other.keys(["alpha"]), 4)[0].any()


def test_segments_are_written_atomically(tmp_path):
    cache = EmbeddingCache(str(tmp_path), "m", "")
    cache.add(cache.keys(["x"]), np.ones((1, 3), np.float32))
    files = list((tmp_path / "embedding-cache").rglob("*"))
    assert [f.suffix for f in files if f.is_file()] == [".npz"]  # no temp files left behind
