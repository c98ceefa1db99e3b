"""Sessions, feedback and API keys over HTTP, against the real app (real index, tiny model, a real SQLite store
under the artifact root; Redis where said): the key check, the routes' errors, ownership, an unavailable store."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from llmops.config import SessionsConfig
from serving.app import create_app
from serving.auth import owner_id
from serving.sessions.store import StoredTurn, new_session_id

pytestmark = pytest.mark.timeout(300)

KEYS_ENV = "LLMOPS_TEST_API_KEYS"
KEY_A, KEY_B = "sk-test-alice-0123456789", "sk-test-bob-9876543210"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def client(world):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEYS_ENV, f" {KEY_A} , {KEY_B},")
        app = create_app(world.serving_config(api_keys_env=KEYS_ENV))
    with TestClient(app) as c:
        yield c


def assert_error(r, status: int, code: str, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["code"] == code and error["param"] == param, error
    return error


def test_every_v1_route_needs_a_key_and_the_probes_do_not(client):
    for headers in ({}, bearer("sk-wrong"), {"Authorization": f"Basic {KEY_A}"}, {"Authorization": KEY_A},
                    bearer(KEY_A + "x"), bearer(KEY_A[:-1])):
        r = client.get("/v1/models", headers=headers)
        assert assert_error(r, 401, "invalid_token")["message"].startswith("missing or wrong API key")
        assert r.json()["error"]["type"] == "authentication_error" and r.headers["www-authenticate"] == "Bearer"
        assert KEY_A not in r.text
    # Before anything else about the request is looked at: no body validation, no lookup, no route match.
    for method, path in (("POST", "/v1/chat/completions"), ("POST", "/v1/feedback"), ("POST", "/v1/search"),
                         ("GET", f"/v1/sessions/{new_session_id()}"), ("DELETE", "/v1/sessions/x"),
                         ("GET", "/v1/nothing-here")):
        assert client.request(method, path, content=b"{").status_code == 401, path
    for key in (KEY_A, KEY_B):
        assert client.get("/v1/models", headers=bearer(key)).status_code == 200
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200, path


def test_a_session_belongs_to_the_key_that_made_it(client):
    store = client.app.state.sessions
    session = client.portal.call(store.create, owner_id(KEY_A.encode()))
    client.portal.call(store.append, session.id, owner_id(KEY_A.encode()),
                       [StoredTurn("user", "q"), StoredTurn("assistant", "a", "chatcmpl-" + "0" * 32)])
    r = client.get(f"/v1/sessions/{session.id}", headers=bearer(KEY_A))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "session" and body["id"] == session.id and body["dropped_turns"] == 0
    assert [(t["role"], t["content"], t["response_id"]) for t in body["turns"]] == [
        ("user", "q", None), ("assistant", "a", "chatcmpl-" + "0" * 32)]
    assert owner_id(KEY_A.encode()) not in r.text  # the owner is not even shown to its owner
    # Key B: the same 404 as a session that never existed.
    foreign = client.get(f"/v1/sessions/{session.id}", headers=bearer(KEY_B))
    missing = client.get(f"/v1/sessions/{new_session_id()}", headers=bearer(KEY_B))
    assert assert_error(foreign, 404, "session_not_found", "session_id") == missing.json()["error"]
    assert_error(client.delete(f"/v1/sessions/{session.id}", headers=bearer(KEY_B)), 404, "session_not_found",
                 "session_id")
    deleted = client.delete(f"/v1/sessions/{session.id}", headers=bearer(KEY_A))
    assert deleted.json() == {"id": session.id, "object": "session.deleted", "deleted": True}
    assert_error(client.get(f"/v1/sessions/{session.id}", headers=bearer(KEY_A)), 404, "session_not_found",
                 "session_id")


@pytest.mark.parametrize("bad", ["abc", "sess_" + "0" * 31, "SESS_" + "0" * 32, "sess_" + "0" * 32 + "0",
                                 "sess_%2e%2e", "%F0%9F%8C%8B"])
def test_a_malformed_session_id_is_400_naming_it(client, bad):
    for method in ("GET", "DELETE"):
        assert_error(client.request(method, f"/v1/sessions/{bad}", headers=bearer(KEY_A)), 400, "invalid_value",
                     "session_id")


@pytest.mark.parametrize(("body", "param"), [
    ({"response_id": "chatcmpl-x", "rating": "up"}, "response_id"),
    ({"response_id": "chatcmpl-" + "0" * 32, "rating": "meh"}, "rating"),
    ({"response_id": "chatcmpl-" + "0" * 32, "rating": "up", "comment": "x" * 2001}, "comment"),
    ({"response_id": "chatcmpl-" + "0" * 32, "rating": "up", "comment": "\ud800"}, "comment"),
    ({"response_id": "chatcmpl-" + "0" * 32, "rating": "up", "score": 5}, "score"),
    ({"rating": "up"}, "response_id"),
])
def test_a_malformed_feedback_is_400_naming_the_field(client, body, param):
    data = json.dumps(body).encode()  # ASCII escapes: "\ud800" travels as clients send it
    r = client.post("/v1/feedback", content=data, headers={**bearer(KEY_A), "content-type": "application/json"})
    assert_error(r, 400, "invalid_value", param)


def test_feedback_on_an_unknown_answer_is_404(client):
    body = {"response_id": "chatcmpl-" + "1" * 32, "rating": "down", "comment": "wrong"}
    assert_error(client.post("/v1/feedback", json=body, headers=bearer(KEY_A)), 404, "response_not_found",
                 "response_id")


def test_a_store_that_is_off_is_503_with_a_fixed_message(world):
    app = create_app(world.serving_config(sessions=SessionsConfig(store="off")))
    with TestClient(app) as c:
        for r in (c.get(f"/v1/sessions/{new_session_id()}"),
                  c.post("/v1/feedback", json={"response_id": "chatcmpl-" + "0" * 32, "rating": "up"})):
            error = assert_error(r, 503, "sessions_unavailable")
            assert error["type"] == "service_unavailable_error" and "serving.sessions" not in error["message"]


def test_a_redis_that_is_down_is_503_and_counted(world, monkeypatch, caplog):
    pytest.importorskip("redis", reason="the redis Python package is not installed")
    from llmops.llm.vllm_server import free_port

    url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"  # nothing listens there
    monkeypatch.setenv("LLMOPS_TEST_REDIS_URL", url)
    sessions = SessionsConfig(store="redis", redis_url_env="LLMOPS_TEST_REDIS_URL", redis_timeout_s=0.5)
    with TestClient(create_app(world.serving_config(sessions=sessions))) as c:
        r = c.get(f"/v1/sessions/{new_session_id()}")
        error = assert_error(r, 503, "sessions_unavailable")
        assert "hunter2" not in r.text and "127.0.0.1" not in error["message"]
        metrics = c.get("/metrics").text
    assert 'llmops_session_store_errors_total{operation="load",store="redis"} 1.0' in metrics
    assert any("sessions_unavailable" in rec.getMessage() for rec in caplog.records)  # the details: in the log


# ------------------------------------------------------------------------------------ chat completions with sessions


def chat(base: str, key: str, question: str, **extra) -> dict:
    import httpx

    body = {"model": "rag", "messages": [{"role": "user", "content": question}], **extra}
    r = httpx.post(base + "/v1/chat/completions", json=body, headers=bearer(key), timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def stream_chat(base: str, key: str, question: str, **extra) -> list[dict]:
    import httpx

    body = {"model": "rag", "messages": [{"role": "user", "content": question}], "stream": True, **extra}
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, headers=bearer(key), timeout=120) as r:
        assert r.status_code == 200, r.read()
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


@pytest.fixture(scope="module")
def api(world):
    """The app on a real uvicorn server, two API keys: its base URL."""
    from tests.serving.conftest import running_api

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEYS_ENV, f"{KEY_A},{KEY_B}")
        with running_api(world.serving_config(api_keys_env=KEYS_ENV)) as (base, _):
            yield base


def test_a_conversation_continues_in_its_session_across_requests_whole_and_streamed(api):
    import httpx

    first = chat(api, KEY_A, "Which volcano in Sicily is very active?", store=True)
    session_id = first["session_id"]
    assert session_id.startswith("sess_") and first["id"].startswith("chatcmpl-")
    follow_up = "How high is it?"
    alone = chat(api, KEY_A, follow_up)
    assert alone.get("session_id") is None and alone["retrieval_query"] == follow_up
    second = chat(api, KEY_A, follow_up, session_id=session_id)
    # The stored history reached the engine: the follow-up was searched with the conversation, not on its own.
    assert second["session_id"] == session_id and second["retrieval_query"] != follow_up
    chunks = stream_chat(api, KEY_A, "And is it dangerous?", session_id=session_id)
    final = [c for c in chunks if c["choices"] and c["choices"][0].get("finish_reason")]
    assert len(final) == 1 and final[0]["session_id"] == session_id
    assert all("session_id" not in c for c in chunks if c is not final[0])
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]).strip()

    body = httpx.get(f"{api}/v1/sessions/{session_id}", headers=bearer(KEY_A)).json()
    assert [(t["role"], t["content"], t["response_id"]) for t in body["turns"]] == [
        ("user", "Which volcano in Sicily is very active?", None),
        ("assistant", first["choices"][0]["message"]["content"], first["id"]),
        ("user", follow_up, None),
        ("assistant", second["choices"][0]["message"]["content"], second["id"]),
        ("user", "And is it dangerous?", None),
        ("assistant", streamed, chunks[0]["id"]),
    ]


def test_sessions_and_answers_belong_to_the_key_that_made_them(api):
    import httpx

    first = chat(api, KEY_A, "What is matcha?", store=True)
    session_id = first["session_id"]
    r = httpx.post(api + "/v1/chat/completions", headers=bearer(KEY_B), timeout=120, json={
        "model": "rag", "messages": [{"role": "user", "content": "and then?"}], "session_id": session_id})
    assert_error(r, 404, "session_not_found", "session_id")
    assert_error(httpx.get(f"{api}/v1/sessions/{session_id}", headers=bearer(KEY_B)), 404, "session_not_found",
                 "session_id")
    # Feedback: on the caller's own answers only, in a session or not; a second rating replaces the first.
    unsessioned = chat(api, KEY_A, "What is matcha?")
    for answer in (first, unsessioned):
        for rating in ("down", "up"):
            r = httpx.post(api + "/v1/feedback", headers=bearer(KEY_A),
                           json={"response_id": answer["id"], "rating": rating, "comment": "手順が古い"})
            assert r.json() == {"object": "feedback", "response_id": answer["id"], "rating": rating}, r.text
        r = httpx.post(api + "/v1/feedback", headers=bearer(KEY_B), json={"response_id": answer["id"], "rating": "up"})
        assert_error(r, 404, "response_not_found", "response_id")
    # Deleted: gone for reading and for continuing.
    assert httpx.delete(f"{api}/v1/sessions/{session_id}", headers=bearer(KEY_A)).json()["deleted"] is True
    r = httpx.post(api + "/v1/chat/completions", headers=bearer(KEY_A), timeout=120, json={
        "model": "rag", "messages": [{"role": "user", "content": "and then?"}], "session_id": session_id})
    assert_error(r, 404, "session_not_found", "session_id")


def test_a_malformed_session_id_in_a_chat_request_is_400(client):
    body = {"model": "rag", "messages": [{"role": "user", "content": "q"}], "session_id": "sess_../../etc"}
    assert_error(client.post("/v1/chat/completions", json=body, headers=bearer(KEY_A)), 400, "invalid_value",
                 "session_id")


def test_an_expired_session_cannot_be_read_or_continued(world):
    import time

    sessions = SessionsConfig(ttl_s=1.0, sqlite_path=str(world.root / "ttl-sessions.db"))
    with TestClient(create_app(world.serving_config(sessions=sessions))) as c:
        body = {"model": "rag", "messages": [{"role": "user", "content": "What is matcha?"}], "store": True}
        session_id = c.post("/v1/chat/completions", json=body).json()["session_id"]
        time.sleep(1.5)
        assert_error(c.get(f"/v1/sessions/{session_id}"), 404, "session_not_found", "session_id")
        follow = {"model": "rag", "messages": [{"role": "user", "content": "and?"}], "session_id": session_id}
        assert_error(c.post("/v1/chat/completions", json=follow), 404, "session_not_found", "session_id")


def test_without_a_store_answers_still_flow_and_sessions_are_503(world):
    with TestClient(create_app(world.serving_config(sessions=SessionsConfig(store="off")))) as c:
        body = {"model": "rag", "messages": [{"role": "user", "content": "What is matcha?"}]}
        answer = c.post("/v1/chat/completions", json=body)
        assert answer.status_code == 200 and answer.json().get("session_id") is None
        assert_error(c.post("/v1/chat/completions", json={**body, "store": True}), 503, "sessions_unavailable")
        assert_error(c.post("/v1/feedback", json={"response_id": answer.json()["id"], "rating": "up"}), 503,
                     "sessions_unavailable")
