"""'Answer only from the documents' over real HTTP: a real uvicorn server, a real index and the tiny model. An
off-corpus question gets the configured message with refusal.kind == "not_in_documents", whole and streamed, and
the model is never called."""

from __future__ import annotations

import json

import httpx
import pytest

from llmops.index.retriever import Retriever
from tests.serving.conftest import release_for, running_api

pytestmark = pytest.mark.timeout(300)

OFF_CORPUS = "How do I reset my corporate VPN password?"
ON_CORPUS = "Which volcano in Sicily is very active?"
MESSAGES = {"en": "Nothing in the documents covers that.", "ja": "文書には記載がありません。"}


@pytest.fixture(scope="module")
def api(world):
    # a release of index A whose config sets the messages; its index recorded the fallback threshold (no eval set)
    cfg = world.serving_config(alias="answerability").model_copy(update={
        "answerability": world.config.answerability.model_copy(update={"messages": MESSAGES})})
    release = release_for(world.registry, cfg, world.release_a.index_uri, world.release_a.index_version)
    world.registry.promote(release.release, "answerability")
    with running_api(cfg) as (base_url, _):
        yield base_url, Retriever.load(world.release_a.index_uri)


def chat(question: str, **extra) -> dict:
    return {"model": "rag", "messages": [{"role": "user", "content": question}], **extra}


def generation_counters(base_url: str) -> tuple[float, float]:
    text = httpx.get(f"{base_url}/metrics").text
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    return samples["llmops_generation_duration_seconds_count"], samples["llmops_prompt_tokens_total"]


def sse_events(text: str) -> list:
    return [json.loads(b[6:]) if b[6:] != "[DONE]" else "[DONE]" for b in text.split("\n\n") if b.startswith("data: ")]


def test_the_scores_straddle_the_indexs_threshold(api):
    _, retriever = api
    threshold = retriever.manifest.answerability.threshold
    off, on = retriever.best_dense_similarity([OFF_CORPUS, ON_CORPUS])
    assert off < threshold <= on


def test_an_off_corpus_question_gets_the_message_whole_without_generating(api):
    base_url, _ = api
    before = generation_counters(base_url)
    r = httpx.post(f"{base_url}/v1/chat/completions", json=chat(OFF_CORPUS), timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    choice = body["choices"][0]
    assert choice["message"]["content"] == MESSAGES["en"] and choice["finish_reason"] == "stop"
    assert body["refusal"] == {"kind": "not_in_documents", "policy": "answerability", "stage": "retrieval",
                               "message": MESSAGES["en"]}
    assert body["sources"] == [] and body["usage"]["completion_tokens"] == 0 and body["id"]
    assert generation_counters(base_url) == before  # the model was never asked


def test_an_off_corpus_question_gets_the_message_streamed_without_generating(api):
    base_url, _ = api
    before = generation_counters(base_url)
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=chat(OFF_CORPUS, stream=True),
                      timeout=120) as r:
        assert r.status_code == 200
        events = sse_events(r.read().decode())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == MESSAGES["en"]
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] == "stop" and final["sources"] == []
    assert final["refusal"]["kind"] == "not_in_documents" and final["refusal"]["message"] == MESSAGES["en"]
    assert generation_counters(base_url) == before


def test_an_on_corpus_question_is_answered_from_its_sources(api):
    base_url, _ = api
    body = httpx.post(f"{base_url}/v1/chat/completions", json=chat(ON_CORPUS), timeout=120).json()
    assert body.get("refusal") is None and body["sources"][0]["source"].endswith("volcano.md")
    assert body["usage"]["completion_tokens"] > 0
