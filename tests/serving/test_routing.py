"""Routes (`serving.routes`): several named models in one API, each its own release or an external endpoint, with
per-route rate limits and keys. Everything over HTTP through the real app: real indexes, the tiny in-process model,
and as the external endpoint a second real RAG API (on uvicorn, API keys on) that only answers a valid bearer key."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from llmops.config import RouteConfig, ServingConfig
from llmops.errors import ConfigError
from serving.app import create_app
from tests.helpers import CORPUS
from tests.serving.conftest import CORPUS_B, running_api

pytestmark = pytest.mark.timeout(300)

ADMIN = "LLMOPS_TEST_ROUTES_ADMIN"
QUESTION = "Which volcano in Sicily is very active?"


def chat(client, model: str, question: str = QUESTION, key: str | None = None, **extra):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": model, "messages": [{"role": "user", "content": question}], **extra}
    return client.post("/v1/chat/completions", json=body, headers=headers)


def search(client, model: str, key: str | None = None):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.post("/v1/search", json={"query": "volcano", "model": model}, headers=headers)


def routed(world, routes: list[dict], **serving):
    return world.serving_config(routes=tuple(RouteConfig.model_validate(r) for r in routes), **serving)


def sse_chunks(text: str) -> list[dict]:
    blocks = [b[len("data: "):] for b in text.split("\n\n") if b.startswith("data: ")]
    assert blocks[-1] == "[DONE]", blocks[-2:]
    return [json.loads(b) for b in blocks[:-1]]


@pytest.fixture(scope="module")
def aliases(world):
    world.registry.promote(world.release_a.release, "routes-prod")
    world.registry.promote(world.release_b.release, "routes-staging")
    return "routes-prod", "routes-staging"


@pytest.fixture(scope="module")
def two_releases(world, aliases):
    """`rag` -> production (release a), `rag-staging` -> staging (release b), a rate limit on staging."""
    prod, staging = aliases
    cfg = routed(world, [
        {"name": "rag", "alias": prod},
        {"name": "rag-staging", "alias": staging, "rate_limit": {"requests_per_minute": 0.5, "burst": 3}},
    ], alias=prod, admin_token_env=ADMIN)
    with TestClient(create_app(cfg)) as client:
        yield client


def test_two_alias_routes_serve_two_releases_side_by_side(two_releases, world):
    a, b = world.release_a, world.release_b
    prod = chat(two_releases, "rag")
    assert prod.status_code == 200, prod.text
    assert prod.json()["system_fingerprint"] == a.release and prod.json()["model"] == "rag"
    assert {s["source"] for s in prod.json()["sources"]} <= set(CORPUS)

    with two_releases.stream("POST", "/v1/chat/completions", json={
            "model": "rag-staging", "stream": True, "messages": [{"role": "user", "content": "What is SEV1?"}]}) as r:
        assert r.status_code == 200
        chunks = sse_chunks(r.read().decode())
    assert {c["system_fingerprint"] for c in chunks} == {b.release} and {c["model"] for c in chunks} == {"rag-staging"}
    assert {s["source"] for s in chunks[-1]["sources"]} <= set(CORPUS_B) and chunks[-1]["sources"]

    hits = search(two_releases, "rag-staging").json()
    assert hits["release"] == b.release and hits["index_version"] == b.index_version

    listed = two_releases.get("/v1/models").json()["data"]
    assert listed[0]["id"] == "rag"  # the default route first: the web chat takes the first model
    cards = {c["id"]: c for c in listed}
    assert set(cards) == {"rag", "rag-staging"}
    assert cards["rag"]["release"] == a.release and cards["rag-staging"]["release"] == b.release
    assert {c["kind"] for c in cards.values()} == {"release"}

    ready = two_releases.get("/readyz").json()
    assert ready["status"] == "ready" and ready["release"] == a.release
    assert ready["routes"]["rag-staging"] == {"kind": "release", "release": b.release, "reload_failed": False}

    unknown = chat(two_releases, "rag-prod")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "model_not_found"
    assert "'rag-staging'" in unknown.json()["error"]["message"]


def test_over_the_rate_limit_is_429_with_retry_after_and_other_routes_go_on(two_releases):
    statuses = [search(two_releases, "rag-staging").status_code for _ in range(4)]  # burst 3, some taken above
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    limited = chat(two_releases, "rag-staging", stream=True)  # a stream is refused before it starts
    assert limited.status_code == 429 and limited.headers["content-type"].startswith("application/json")
    error = limited.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error" and error["param"] == "model"
    assert "rag-staging" in error["message"]
    # 0.5 per minute: the next token is up to two minutes away, and Retry-After says so in whole seconds.
    assert 1 <= int(limited.headers["retry-after"]) <= 120
    for _ in range(4):  # the limit is the staging route's only
        assert search(two_releases, "rag").status_code == 200
    metrics = two_releases.get("/metrics").text
    assert 'llmops_route_rate_limited_total{route="rag-staging"}' in metrics
    assert 'llmops_route_rate_limited_total{route="rag"}' not in metrics
    assert 'llmops_route_requests_total{route="rag"}' in metrics


def test_admin_reload_of_one_route_leaves_the_other(world, monkeypatch):
    world.registry.promote(world.release_a.release, "reload-prod")
    world.registry.promote(world.release_b.release, "reload-staging")
    cfg = routed(world, [{"name": "rag", "alias": "reload-prod"}, {"name": "rag-staging", "alias": "reload-staging"}],
                 alias="reload-prod", admin_token_env=ADMIN)
    monkeypatch.setenv(ADMIN, "admin-secret")
    with TestClient(create_app(cfg)) as client:
        before = chat(client, "rag").json()["system_fingerprint"]
        world.registry.promote(world.release_a.release, "reload-staging")
        r = client.post("/admin/reload", headers={"Authorization": "Bearer admin-secret"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["changed"] is False and body["release"] == world.release_a.release  # the default route's
        assert body["routes"]["rag-staging"] == {
            "changed": True, "release": world.release_a.release, "previous": world.release_b.release}
        assert chat(client, "rag-staging").json()["system_fingerprint"] == world.release_a.release
        assert chat(client, "rag").json()["system_fingerprint"] == before == world.release_a.release


UPSTREAM_KEYS = "LLMOPS_TEST_UPSTREAM_KEYS"
ROUTE_KEY = "LLMOPS_TEST_ROUTE_PROVIDER_KEY"
PROVIDER_KEY = "sk-provider-0123456789abcdef"


@pytest.fixture(scope="module")
def upstream(world):
    """A second, real OpenAI-compatible server: another RAG API (release b) that answers only `PROVIDER_KEY`."""
    world.registry.promote(world.release_b.release, "upstream")
    mp = pytest.MonkeyPatch()
    mp.setenv(UPSTREAM_KEYS, PROVIDER_KEY)
    cfg = world.serving_config(alias="upstream", api_keys_env=UPSTREAM_KEYS)
    try:
        with running_api(cfg) as (url, _):
            yield url
    finally:
        mp.undo()


def upstream_chats(url: str) -> float:
    """Chat completions the provider answered with 200 (its own metrics)."""
    from prometheus_client.parser import text_string_to_metric_families

    families = text_string_to_metric_families(httpx.get(url + "/metrics").text)
    return sum(s.value for f in families if f.name == "llmops_requests" for s in f.samples
               if s.name == "llmops_requests_total" and s.labels.get("route") == "/v1/chat/completions"
               and s.labels.get("status") == "200")


def test_an_endpoint_route_generates_at_the_provider_with_the_key_from_its_variable(
        world, aliases, upstream, monkeypatch, caplog):
    prod, _ = aliases
    monkeypatch.setenv(ROUTE_KEY, PROVIDER_KEY)
    cfg = routed(world, [
        {"name": "rag", "alias": prod},
        {"name": "external", "endpoint": {"base_url": upstream + "/v1", "model": "rag", "api_key_env": ROUTE_KEY}},
    ], alias=prod)
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(cfg)) as client:
        sent = upstream_chats(upstream)
        r = chat(client, "external")
        assert r.status_code == 200, r.text
        body = r.json()
        # Retrieval and prompt are the default release's (its index, corpus A); the answer came from the provider,
        # which only answers with the key: it got it as a bearer token.
        assert body["model"] == "external" and body["system_fingerprint"] == world.release_a.release
        assert body["sources"] and {s["source"] for s in body["sources"]} <= set(CORPUS)
        assert upstream_chats(upstream) == sent + 1

        with client.stream("POST", "/v1/chat/completions", json={
                "model": "external", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}) as s:
            assert s.status_code == 200
            chunks = sse_chunks(s.read().decode())
        assert {c["model"] for c in chunks} == {"external"} and chunks[-1]["sources"]
        assert upstream_chats(upstream) == sent + 2

        cards = {c["id"]: c for c in client.get("/v1/models").json()["data"]}
        assert cards["external"]["kind"] == "endpoint" and cards["external"]["release"] == world.release_a.release
        assert cards["external"]["base_model"] is None and cards["external"]["adapter_version"] is None
        ready = client.get("/readyz").json()
        assert ready["routes"]["external"] == {"kind": "endpoint", "release": world.release_a.release,
                                               "reload_failed": False}
        public = json.dumps([body, chunks, cards, ready, client.get("/metrics").text])
    for text in (public, caplog.text):
        assert PROVIDER_KEY not in text
    assert upstream.split("//", 1)[1] not in public  # the provider's address stays in the server


def test_an_endpoint_route_follows_the_default_release_and_fails_alone(world, upstream, monkeypatch):
    world.registry.promote(world.release_a.release, "follow-prod")
    monkeypatch.setenv(ADMIN, "admin-secret")
    monkeypatch.setenv(ROUTE_KEY, "sk-wrong-key")
    cfg = routed(world, [
        {"name": "rag", "alias": "follow-prod"},
        {"name": "external", "endpoint": {"base_url": upstream + "/v1", "model": "rag", "api_key_env": ROUTE_KEY}},
        {"name": "no-key", "endpoint": {"base_url": upstream + "/v1", "model": "rag",
                                        "api_key_env": "LLMOPS_TEST_UNSET_KEY"}},
    ], alias="follow-prod", admin_token_env=ADMIN)
    monkeypatch.delenv("LLMOPS_TEST_UNSET_KEY", raising=False)
    with TestClient(create_app(cfg)) as client:
        wrong = chat(client, "external")  # the provider refuses the server's key: not the client's to fix
        assert wrong.status_code == 502 and wrong.json()["error"]["code"] == "backend_error"
        assert "sk-wrong-key" not in wrong.text
        missing = chat(client, "no-key")  # its key variable is unset: that route is not ready, the others are
        assert missing.status_code == 503 and missing.json()["error"]["code"] == "not_ready"
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["routes"]["no-key"]["reload_failed"] is True
        assert chat(client, "rag").status_code == 200

        world.registry.promote(world.release_b.release, "follow-prod")  # the endpoint route follows the alias
        r = client.post("/admin/reload", headers={"Authorization": "Bearer admin-secret"})
        assert r.status_code == 500 and "LLMOPS_TEST_UNSET_KEY" in r.json()["error"]["message"]  # the operator's
        assert search(client, "external").json()["release"] == world.release_b.release
        assert chat(client, "rag").json()["system_fingerprint"] == world.release_b.release


KEYS = "LLMOPS_TEST_ROUTE_API_KEYS"
STAGING_KEYS = "LLMOPS_TEST_ROUTE_STAGING_KEYS"


def test_rate_limits_are_per_key_and_a_route_may_admit_only_some_keys(world, aliases, monkeypatch):
    prod, staging = aliases
    monkeypatch.setenv(KEYS, "key-alice,key-bob")
    monkeypatch.setenv(STAGING_KEYS, "key-bob")
    cfg = routed(world, [
        {"name": "rag", "alias": prod, "rate_limit": {"requests_per_minute": 0.5, "burst": 1}},
        {"name": "rag-staging", "alias": staging, "api_keys_env": STAGING_KEYS},
    ], alias=prod, api_keys_env=KEYS)
    with TestClient(create_app(cfg)) as client:
        assert search(client, "rag", key="key-alice").status_code == 200
        assert search(client, "rag", key="key-alice").status_code == 429
        assert search(client, "rag", key="key-bob").status_code == 200  # bob's bucket is his own

        # alice may not use staging: it does not exist for her, in the list or by name
        alice = {c["id"] for c in client.get("/v1/models", headers={"Authorization": "Bearer key-alice"}).json()["data"]}
        bob = {c["id"] for c in client.get("/v1/models", headers={"Authorization": "Bearer key-bob"}).json()["data"]}
        assert alice == {"rag"} and bob == {"rag", "rag-staging"}
        denied = search(client, "rag-staging", key="key-alice")
        assert denied.status_code == 404 and denied.json()["error"]["code"] == "model_not_found"
        assert "rag-staging" not in denied.json()["error"]["message"].split("serves", 1)[1]
        assert search(client, "rag-staging", key="key-bob").json()["release"] == world.release_b.release


def test_route_keys_need_api_keys_on_and_must_be_among_them(world, aliases, monkeypatch):
    prod, staging = aliases
    monkeypatch.setenv(KEYS, "key-alice")
    monkeypatch.setenv(STAGING_KEYS, "key-mallory")
    routes = [{"name": "rag", "alias": prod}, {"name": "rag-staging", "alias": staging, "api_keys_env": STAGING_KEYS}]
    with pytest.raises(ConfigError, match="not among the server's API keys"):
        with TestClient(create_app(routed(world, routes, alias=prod, api_keys_env=KEYS))):
            pass
    monkeypatch.delenv(KEYS)
    with pytest.raises(ConfigError, match="needs API keys on"):
        with TestClient(create_app(routed(world, routes, alias=prod, api_keys_env=KEYS))):
            pass


@pytest.mark.parametrize("serving, problem", [
    ({"routes": [{"name": "a", "alias": "x"}, {"name": "a", "alias": "y"}], "model_name": "a"}, "must be unique"),
    ({"routes": [{"name": "a"}], "model_name": "a"}, "exactly one of alias"),
    ({"routes": [{"name": "a", "alias": "x", "endpoint": {"base_url": "http://h/v1", "model": "m"}}],
      "model_name": "a"}, "exactly one of alias"),
    ({"routes": [{"name": "a", "alias": "x"}]}, r"model_name 'rag' \(the default route\) must be one of"),
    ({"routes": [{"name": "rag", "endpoint": {"base_url": "file:///etc", "model": "m"}}]}, "http"),
    ({"routes": [{"name": "has space", "alias": "x"}], "model_name": "has space"}, "pattern"),
    ({"routes": [{"name": "rag", "alias": "x", "rate_limit": {"requests_per_minute": 0}}]}, "greater than 0"),
    ({"routes": [{"name": "rag", "alias": "x", "rate_limit": {"requests_per_minute": 5, "burst": 0}}]}, "greater"),
])
def test_route_config_is_validated(serving, problem):
    with pytest.raises(ValidationError, match=problem):
        ServingConfig.model_validate(serving)


def test_without_routes_the_default_route_is_model_name_on_alias():
    (route,) = ServingConfig(model_name="docs", alias="prod").route_table()
    assert (route.name, route.alias, route.endpoint, route.rate_limit) == ("docs", "prod", None, None)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_endpoint_route_to_a_real_vllm_server_with_an_api_key(world, aliases, vllm_python, varied_llm_dir,
                                                                  tmp_path_factory, monkeypatch):
    """The provider is a real vLLM CPU server started with `--api-key` (VLLM_API_KEY): it answers only the key."""
    from llmops.llm.vllm_server import VLLMServer
    from tests.llm_fixtures import CPU_VLLM_ARGS

    prod, _ = aliases
    key = "sk-vllm-route-test-key"
    server = VLLMServer(varied_llm_dir, served_model_name="tiny", max_model_len=1024, dtype="float32",
                        extra_args=CPU_VLLM_ARGS, workdir=tmp_path_factory.mktemp("vr"), python=vllm_python, api_key=key)  # short: socket paths
    with server:
        monkeypatch.setenv(ROUTE_KEY, key)
        cfg = routed(world, [
            {"name": "rag", "alias": prod},
            {"name": "vllm", "endpoint": {"base_url": server.base_url, "model": "tiny", "api_key_env": ROUTE_KEY}},
        ], alias=prod)
        with TestClient(create_app(cfg)) as client:
            r = chat(client, "vllm", max_tokens=4)
            assert r.status_code == 200, r.text
            assert r.json()["model"] == "vllm" and r.json()["usage"]["completion_tokens"] <= 4
            assert r.json()["system_fingerprint"] == world.release_a.release and r.json()["sources"]
            with client.stream("POST", "/v1/chat/completions", json={
                    "model": "vllm", "stream": True, "max_tokens": 4,
                    "messages": [{"role": "user", "content": QUESTION}]}) as s:
                chunks = sse_chunks(s.read().decode())
            assert chunks[-1]["sources"] and {c["model"] for c in chunks} == {"vllm"}
        monkeypatch.setenv(ROUTE_KEY, "sk-not-the-key")
        with TestClient(create_app(cfg)) as client:
            refused = chat(client, "vllm", max_tokens=4)  # vLLM checks the bearer token: wrong key, 401 there
            assert refused.status_code == 502 and key not in refused.text


def test_the_request_log_names_the_route_each_answer_came_from(world, aliases, tmp_path):
    from llmops.requestlog.reader import read_window

    prod, staging = aliases
    cfg = routed(world, [{"name": "rag", "alias": prod}, {"name": "rag-staging", "alias": staging}], alias=prod)
    cfg = cfg.model_copy(update={"monitoring": cfg.monitoring.model_copy(update={
        "request_log": cfg.monitoring.request_log.model_copy(update={"path": str(tmp_path / "log")})})})
    with TestClient(create_app(cfg)) as client:
        whole = chat(client, "rag-staging").json()["id"]
        with client.stream("POST", "/v1/chat/completions", json={
                "model": "rag-staging", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}) as s:
            streamed = sse_chunks(s.read().decode())[0]["id"]
        default = chat(client, "rag").json()["id"]
    records = {r.response_id: r for r in read_window(str(tmp_path / "log"), 0, time.time() + 60).requests}  # drained at exit
    assert (records[whole].model, records[whole].release) == ("rag-staging", world.release_b.release)
    assert records[streamed].model == "rag-staging" and records[default].model == "rag"
