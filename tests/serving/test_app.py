"""The RAG API end to end in-process: a real index, a real (tiny) model, the FastAPI app through TestClient and the
official `openai` client. Every error case of the API contract, metrics, and the admin endpoint."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app

ADMIN = "LLMOPS_TEST_ADMIN_TOKEN"

# A hang fails the test with every thread's stack instead of stalling the run.
pytestmark = pytest.mark.timeout(300)


def chat_body(question: str = "Which volcano in Sicily is very active?", **extra) -> dict:
    return {"model": "rag", "messages": [{"role": "user", "content": question}], **extra}


@pytest.fixture(scope="module")
def client(world):
    app = create_app(world.serving_config(admin_token_env=ADMIN))
    with TestClient(app) as c:
        yield c


def sse_events(text: str) -> list:
    """The data payloads of an SSE body, `[DONE]` kept as the string."""
    events = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: "):]
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def test_chat_completion_answers_with_sources_from_the_served_release(client, world):
    r = client.post("/v1/chat/completions", json=chat_body(k=2))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == "rag"
    assert body["system_fingerprint"] == world.release_a.release
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert body["choices"][0]["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["completion_tokens"] <= 8 and usage["prompt_tokens"] > 0
    sources = body["sources"]
    assert [s["index"] for s in sources] == list(range(1, len(sources) + 1)) and 1 <= len(sources) <= 2
    assert sources[0]["source"] == "volcano.md"  # retrieval found the right document
    assert "Etna" in " ".join(s["text"] for s in sources)


def test_stream_sends_deltas_then_sources_in_the_final_chunk_then_done(client, world):
    with client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = sse_events(r.read().decode())
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["system_fingerprint"] == world.release_a.release for c in chunks)
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] in ("stop", "length")
    assert final["sources"][0]["source"].endswith("volcano.md")
    assert all("sources" not in c for c in chunks[:-1])
    # The streamed text is the non-streamed answer (greedy decoding, same prompt).
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    whole = client.post("/v1/chat/completions", json=chat_body()).json()["choices"][0]["message"]["content"]
    assert streamed.strip() == whole


def test_official_openai_client_streaming_and_not(client, world):
    oa = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=client)
    assert [m.id for m in oa.models.list()] == ["rag"]
    reply = oa.chat.completions.create(
        model="rag", messages=[{"role": "user", "content": "What is matcha?"}], extra_body={"k": 2}
    )
    assert reply.system_fingerprint == world.release_a.release
    assert reply.model_extra["sources"][0]["source"].endswith("tea.txt")
    chunks = list(
        oa.chat.completions.create(
            model="rag", messages=[{"role": "user", "content": "What is matcha?"}], stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 8
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].model_extra["sources"][0]["source"].endswith("tea.txt")


def test_search_returns_ranked_hits_without_generating(client, world):
    r = client.post("/v1/search", json={"query": "Shinkansen first line", "k": 3, "mode": "hybrid"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["release"] == world.release_a.release and body["index_version"] == world.release_a.index_version
    assert [h["rank"] for h in body["hits"]] == [1, 2, 3]
    assert body["hits"][0]["source"] == "rail.md" and body["retrieval_ms"] > 0


def test_models_lists_the_served_model_and_its_release(client, world):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    (card,) = body["data"]
    assert card["id"] == "rag" and card["release"] == world.release_a.release
    assert card["index_version"] == world.release_a.index_version
    # a local model is shown by its folder's name: the server's paths stay private
    assert world.release_a.base_model.startswith("/") and card["base_model"] == Path(world.release_a.base_model).name


def test_health_and_readiness(client, world):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["release"] == world.release_a.release


# ------------------------------------------------------------------------------------------------ error cases


def assert_error(r, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    return error


def test_malformed_json_is_400(client):
    r = client.post("/v1/chat/completions", content=b'{"model": "rag", "messages": [', headers={"content-type": "application/json"})
    error = assert_error(r, 400, code="invalid_json")
    assert "JSON" in error["message"]


def test_missing_and_unknown_fields_are_400_naming_the_field(client):
    assert_error(client.post("/v1/chat/completions", json={"model": "rag"}), 400, param="messages")
    assert_error(client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}), 400,
                 param="model")
    error = assert_error(client.post("/v1/chat/completions", json=chat_body(top_kk=3)), 400, param="top_kk")
    assert "unknown field" in error["message"]
    assert_error(client.post("/v1/chat/completions", json=chat_body(temperature=5)), 400, param="temperature")
    assert_error(client.post("/v1/search", json={"k": 3}), 400, param="query")


def test_no_user_message_is_400(client):
    r = client.post("/v1/chat/completions", json={"model": "rag", "messages": [{"role": "system", "content": "hi"}]})
    assert_error(r, 400, param="messages")


def test_unknown_model_is_404(client):
    error = assert_error(client.post("/v1/chat/completions", json=chat_body() | {"model": "gpt-4"}), 404,
                         param="model", code="model_not_found")
    assert "'rag'" in error["message"]
    assert_error(client.post("/v1/search", json={"query": "x", "model": "gpt-4"}), 404, param="model")


@pytest.mark.parametrize("k", [0, 11, 1000])
def test_k_out_of_range_is_400(client, k):
    assert_error(client.post("/v1/chat/completions", json=chat_body(k=k)), 400, param="k")
    assert_error(client.post("/v1/search", json={"query": "tea", "k": k}), 400, param="k")


def test_prompt_over_the_context_is_400(client):
    # ~ 1,500 tokens, under guardrails.max_input_chars (8,000; longer questions are refused: test_guardrails.py)
    long_question = "Tell me everything about volcanoes and tea and trains. " * 140
    error = assert_error(client.post("/v1/chat/completions", json=chat_body(long_question)), 400,
                         code="context_length_exceeded")
    assert "1024" in error["message"]
    # max_tokens that leaves no room for any prompt
    assert_error(client.post("/v1/chat/completions", json=chat_body(max_tokens=1024)), 400, param="max_tokens",
                 code="context_length_exceeded")
    with client.stream("POST", "/v1/chat/completions", json=chat_body(long_question, stream=True)) as r:
        assert r.status_code == 400  # a stream that cannot start fails with a status, not an event


def test_body_over_the_size_limit_is_413(client):
    big = chat_body("x" * 70_000)
    assert_error(client.post("/v1/chat/completions", json=big), 413, code="request_too_large")

    def chunked():  # no Content-Length: the limit counts the bytes as they arrive
        data = json.dumps(big).encode()
        for i in range(0, len(data), 8192):
            yield data[i : i + 8192]

    r = client.post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
    assert_error(r, 413)


def test_unknown_route_and_method_use_the_error_shape(client):
    assert_error(client.get("/v1/nothing"), 404)
    assert_error(client.get("/v1/chat/completions"), 405)


def test_admin_reload_needs_the_token(client, monkeypatch):
    monkeypatch.delenv(ADMIN, raising=False)
    error = assert_error(client.post("/admin/reload"), 401)
    assert ADMIN in error["message"]  # says how to enable it
    monkeypatch.setenv(ADMIN, "s3cret")
    assert_error(client.post("/admin/reload"), 401)
    assert_error(client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}), 401)
    r = client.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.json()["changed"] is False


def test_metrics_count_requests_and_time_the_stages(client, world):
    client.post("/v1/chat/completions", json=chat_body())
    with client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as r:
        r.read()
    client.post("/v1/chat/completions", json=chat_body() | {"model": "nope"})
    text = client.get("/metrics").text
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    ok = 'llmops_requests_total{method="POST",route="/v1/chat/completions",status="200"}'
    assert samples[ok] >= 2
    assert samples['llmops_requests_total{method="POST",route="/v1/chat/completions",status="404"}'] >= 1
    assert samples['llmops_request_duration_seconds_count{route="/v1/chat/completions"}'] >= 3
    assert samples["llmops_time_to_first_token_seconds_count"] >= 1
    assert samples['llmops_retrieval_duration_seconds_count{mode="hybrid"}'] >= 2
    assert samples["llmops_completion_tokens_total"] > 0 and samples["llmops_prompt_tokens_total"] > 0
    release = world.release_a
    info = (f'llmops_active_release{{adapter_version="",base_model="{release.base_model}",'
            f'index_version="{release.index_version}",release="{release.release}"}}')
    assert samples[info] == 1.0


# ------------------------------------------------------------------------------------------------ hardening


SURROGATE_CHAT = b'{"model": "rag", "messages": [{"role": "user", "content": "What is \\ud800 matcha?"}]}'


@pytest.mark.parametrize("path, body, param", [
    ("/v1/chat/completions", SURROGATE_CHAT, "messages.0.content"),
    ("/v1/chat/completions", b'{"model": "rag", "messages": [{"role": "user", "content": [{"type": "text", '
                             b'"text": "\\udfff"}]}]}', "messages.0.content.list[TextPart].0.text"),
    ("/v1/chat/completions", b'{"model": "rag", "messages": [{"role": "user", "content": "hi"}], "stop": ["\\ud800"]}',
     "stop"),
    ("/v1/search", b'{"query": "matcha \\ud800"}', "query"),
])
def test_unpaired_surrogates_are_400_naming_the_field(client, path, body, param):
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    error = assert_error(r, 400, code="invalid_value")
    assert error["param"].startswith(param.split(".list")[0])
    assert "surrogate" in error["message"] or "unicode" in error["message"]  # pydantic's own check, where it has one


def test_a_surrogate_keeps_the_keep_alive_connection(world):
    import httpx

    from tests.serving.conftest import running_api

    with running_api(world.serving_config()) as (url, _), httpx.Client(base_url=url, timeout=120) as http:
        r = http.post("/v1/chat/completions", content=SURROGATE_CHAT, headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.headers.get("connection") != "close"
        assert http.post("/v1/chat/completions", json=chat_body(max_tokens=2)).status_code == 200


@pytest.mark.parametrize("query", [" ", "\t\n ", "\u3000"])
def test_a_whitespace_query_is_400(client, query):
    assert_error(client.post("/v1/search", json={"query": query}), 400, param="query", code="invalid_value")


@pytest.mark.parametrize("extra, param", [({"seed": 2**63}, "seed"), ({"seed": -(2**63) - 1}, "seed"),
                                          ({"stop": [""]}, "stop"), ({"stop": ""}, "stop")])
def test_parameters_the_backend_would_reject_are_400_here(client, extra, param):
    assert_error(client.post("/v1/chat/completions", json=chat_body(**extra)), 400, param=param, code="invalid_value")
    ok = client.post("/v1/chat/completions", json=chat_body(seed=2**63 - 1, stop=["."], max_tokens=2))
    assert ok.status_code == 200, ok.text


def test_every_error_has_a_code(client):
    no_question = {"model": "rag", "messages": [{"role": "user", "content": "   "}]}
    assert_error(client.post("/v1/chat/completions", json=no_question), 400, param="messages", code="invalid_value")
    assert_error(client.get("/v1/nothing"), 404, code="not_found")
    assert_error(client.get("/v1/chat/completions"), 405, code="method_not_allowed")
    nan = json.dumps(chat_body(temperature=float("nan"))).encode()  # Python's JSON reads NaN
    assert_error(client.post("/v1/chat/completions", content=nan, headers={"content-type": "application/json"}), 400,
                 param="temperature", code="invalid_value")


def test_the_schema_and_the_admin_routes_are_not_published(client):
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert_error(client.get(path), 404, code="not_found")


def test_unavailable_and_not_ready_bodies_keep_internals_in_the_log(world, caplog):
    from llmops.errors import GenerationError

    from serving.errors import error_info

    cfg = world.serving_config(alias="nothing-here")
    with TestClient(create_app(cfg)) as c:
        r = c.post("/v1/chat/completions", json=chat_body())
        assert_error(r, 503, code="not_ready")
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["reload_failed"] is True
        for body in (r.text, ready.text):
            assert cfg.artifacts.registry_root not in body and "nothing-here" not in body
    assert cfg.artifacts.registry_root in caplog.text  # the operator finds the reason in the log

    backend = GenerationError("http://10.1.2.3:8001/v1/chat/completions: request rejected (400): adapter "
                              "adapter-0123 at /mnt/adapters/x cannot ...", status_code=400)
    status, info = error_info(backend)
    assert (status, info.code) == (400, "backend_rejected")
    assert "10.1.2.3" not in info.message and "adapter-0123" not in info.message and "/mnt" not in info.message


def test_healthz_fails_when_the_supervised_backend_gave_up(world):
    reason = "vLLM could not be restarted (5 attempts failed); last error: http://10.0.0.1:8001 ..."
    failure = {"now": None}
    with TestClient(create_app(world.serving_config(), backend_failure=lambda: failure["now"])) as c:
        assert c.get("/healthz").status_code == 200
        failure["now"] = reason
        error = assert_error(c.get("/healthz"), 503, code="backend_unavailable")
        assert "10.0.0.1" not in error["message"]


def test_admin_reload_tells_the_operator_why_a_release_failed(world, monkeypatch):
    monkeypatch.setenv(ADMIN, "s3cret")
    cfg = world.serving_config(admin_token_env=ADMIN, alias="nothing-either")
    with TestClient(create_app(cfg)) as c:
        r = c.post("/admin/reload", headers={"Authorization": "Bearer s3cret"})
        error = assert_error(r, 503, code="not_ready")
        assert "nothing-either" in error["message"]  # authenticated: the details are the operator's
