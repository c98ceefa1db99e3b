import numpy as np

from llmops.index.embed_cache import EmbeddingCache


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


def test_keys_ending_in_nul_bytes_are_found_again(tmp_path):
    # numpy's S16 strips trailing NULs on element access; about 1 key in 256 ends in b"\x00".
    cache = EmbeddingCache(str(tmp_path), "m", "")
    texts = [f"chunk {i}" for i in range(2000)]
    nul_texts = [t for t, k in zip(texts, cache.keys(texts)) if k.endswith(b"\x00")][:3]
    assert nul_texts, "no text with a key ending in NUL among 2000 (expected ~8)"
    texts = ["plain", *nul_texts]
    vectors = np.arange(len(texts) * 2, dtype=np.float32).reshape(-1, 2)
    cache.add(cache.keys(texts), vectors)
    handmade = [b"\x07" * 14 + b"\x00\x00", b"\x00" * 16]  # several trailing NULs, and nothing but NULs
    cache.add(handmade, np.ones((2, 2), np.float32))

    reopened = EmbeddingCache(str(tmp_path), "m", "")  # reads the keys back from the segment files
    found, got = reopened.lookup(reopened.keys(texts) + handmade, 2)
    assert found.all()
    assert np.array_equal(got[: len(texts)], vectors)
