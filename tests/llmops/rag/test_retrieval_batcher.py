"""RetrievalBatcher: concurrent questions go to the retriever together, and each gets the hits it would get alone."""

import asyncio
import threading

import pytest

from llmops.rag.retrieval_batcher import RetrievalBatcher


class RecordingSearch:
    """A search that records its batches and holds the first one until released (so others queue behind it)."""

    def __init__(self):
        self.batches: list[tuple[list[str], int, str]] = []
        self.first_may_finish = threading.Event()

    def __call__(self, questions, k, mode):
        self.batches.append((list(questions), k, mode))
        if len(self.batches) == 1:
            self.first_may_finish.wait(5)
        if any(q == "boom" for q in questions):
            raise RuntimeError("search failed")
        return [[f"{q}/{k}/{mode}/{i}" for i in range(k)] for q in questions]


def test_questions_that_arrive_during_a_search_go_together_in_the_next():
    search = RecordingSearch()
    batcher = RetrievalBatcher(search, max_batch=3)

    async def run():
        first = asyncio.create_task(batcher.search("a", 2, "dense"))
        await asyncio.sleep(0.05)  # "a" is being searched alone
        rest = [asyncio.create_task(batcher.search(q, 2, "dense")) for q in "bcde"]
        other_k = asyncio.create_task(batcher.search("f", 1, "dense"))
        await asyncio.sleep(0.05)
        search.first_may_finish.set()
        return await first, await asyncio.gather(*rest), await other_k

    (a_hits, a_s), rest, (f_hits, _) = asyncio.run(run())
    assert a_hits == ["a/2/dense/0", "a/2/dense/1"] and a_s > 0
    assert [h for h, _ in rest] == [[f"{q}/2/dense/0", f"{q}/2/dense/1"] for q in "bcde"]
    assert f_hits == ["f/1/dense/0"]
    # one search for "a"; then b, c, d together (max_batch 3), e, and f (another k) on its own
    assert sorted(tuple(b[0]) for b in search.batches) == sorted([("a",), ("b", "c", "d"), ("e",), ("f",)])


def test_a_failed_search_fails_each_request_in_it_and_the_next_searches_run():
    search = RecordingSearch()
    search.first_may_finish.set()
    batcher = RetrievalBatcher(search, max_batch=8)

    async def run():
        with pytest.raises(RuntimeError, match="search failed"):
            await batcher.search("boom", 1, "dense")
        return await batcher.search("fine", 1, "dense")

    assert asyncio.run(run())[0] == ["fine/1/dense/0"]


def test_a_batcher_serves_a_second_event_loop():
    search = RecordingSearch()
    search.first_may_finish.set()
    batcher = RetrievalBatcher(search, max_batch=8)
    for _ in range(2):
        assert asyncio.run(batcher.search("q", 1, "lexical"))[0] == ["q/1/lexical/0"]
