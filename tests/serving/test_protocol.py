"""Request models: OpenAI's fields and the RAG extras, strict about unknown fields; the stream's frames."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from llmops.index.retriever import SearchHit
from serving.protocol import (
    ChatCompletionChunk, ChatCompletionRequest, ChunkChoice, DeltaMessage, SearchRequest, Source, public_source,
)
from serving.service import ChunkFrames, sse_frame


def request(**extra) -> dict:
    return {"model": "rag", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_question_is_the_last_user_message_with_text_parts_joined():
    req = ChatCompletionRequest.model_validate({
        "model": "rag",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "an answer"},
            {"role": "user", "content": [{"type": "text", "text": "second "}, {"type": "text", "text": "question"}]},
        ],
    })
    conversation = req.conversation()
    assert conversation.question == "second question"
    # the client's system message is dropped (the release's template writes it); the turns before are the history
    assert [(t.role, t.content) for t in conversation.history] == [("user", "first question"), ("assistant", "an answer")]
    assert ChatCompletionRequest.model_validate(request() | {"messages": [{"role": "system", "content": "x"}]}
                                                ).conversation().question == ""


def test_openai_fields_and_rag_extras():
    req = ChatCompletionRequest.model_validate(request(
        stream=True, stream_options={"include_usage": True}, temperature=0.5, top_p=0.9, max_tokens=12, stop="\n",
        seed=3, user="u1", k=4, mode="dense",
    ))
    assert req.stop == ["\n"] and req.k == 4 and req.mode == "dense" and req.stream_options.include_usage


@pytest.mark.parametrize("bad", [
    {"top_kk": 1},                      # unknown field
    {"n": 2},                           # one answer per request
    {"temperature": 2.5},
    {"top_p": 0},
    {"max_tokens": 0},
    {"k": 0},
    {"mode": "semantic"},
    {"stop": ["a", "b", "c", "d", "e"]},
    {"messages": []},
    {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
])
def test_invalid_requests_are_rejected(bad):
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate(request() | bad)


def test_search_request_needs_a_query():
    with pytest.raises(ValidationError):
        SearchRequest.model_validate({"query": ""})
    assert SearchRequest.model_validate({"query": "q", "k": 3}).k == 3


def test_source_numbers_the_hit_as_cited():
    hit = SearchHit(rank=2, score=0.5, chunk_id="c", doc_id="d", text="t", source="s.md", title="T", start=0, end=1)
    assert Source.from_hit(1, hit).model_dump() == {"index": 1, **hit.to_dict()}


@pytest.mark.parametrize(("source", "public"), [
    ("/srv/data/corpus/runbooks/failover.md", "runbooks/failover.md"),  # relative to its corpus folder
    ("s3://bucket/docs/guide.md", "guide.md"),  # the longest root wins
    ("/srv/data/squad/dev.json#article=3,paragraph=1", "dev.json#article=3,paragraph=1"),
    ("/elsewhere/secret/notes.txt", "notes.txt"),  # under no root: the last segment only
    ("/srv/data/corpus-old/x.md", "x.md"),  # a sibling folder is not under the root
    ("https://example.com/faq", "https://example.com/faq"),  # public web pages as they are
])
def test_public_sources_hide_the_servers_paths(source, public):
    roots = ["/srv/data/corpus/", "s3://bucket", "s3://bucket/docs", "/srv/data/squad/dev.json", ""]
    assert public_source(source, roots) == public


@pytest.mark.parametrize("text", ["Hel", "", ' "quoted" \\ back', "line\nbreak\ttab", "富士山 🗻", "\x00\x1f", "}}]}"])
def test_token_frames_are_what_the_chunk_model_renders(text):
    """The fast token frame is byte for byte the pydantic chunk's rendering (the wire format is OpenAI's)."""
    frames = ChunkFrames("chatcmpl-1", 1700000000, "rag", "rel-1")
    model = ChatCompletionChunk(id="chatcmpl-1", created=1700000000, model="rag", system_fingerprint="rel-1",
                                choices=[ChunkChoice(delta=DeltaMessage(content=text))])
    assert frames.content(text) == sse_frame(model.model_dump(mode="json", exclude_none=True))
    assert json.loads(frames.content(text)[len(b"data: "):])["choices"][0]["delta"] == {"content": text}
