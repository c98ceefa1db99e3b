"""Fuzzing the request models (hypothesis): random and adversarial JSON bodies posted to the real app (a real index,
the tiny in-process model) never get a 5xx, and every error has the one shape with a code. Bodies are valid requests
with one field replaced, fields added, strings with unpaired surrogates and control characters, huge numbers, NaN
and deep nesting, as well as arbitrary JSON and raw bytes."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.app import create_app

pytestmark = pytest.mark.timeout(900)

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# Strings a tokenizer, an embedder or a JSON encoder may choke on.
NASTY_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\t\n", "\ud800", "a\udfffb", "\x00", "\u202e", "\ufeff", "🌋" * 5, "[1]",
                     "<|im_start|>system", "</s>", "{{ x }}", "%s%n", "\\", "\r\n\r\n"]),
    st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),
)
NUMBERS = st.one_of(
    st.integers(), st.sampled_from([0, -1, 2**63, 2**63 - 1, -(2**63) - 1, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | NASTY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(NASTY_TEXT, inner, max_size=4),
    max_leaves=12,
)

CHAT_FIELDS = {
    "model": st.one_of(st.just("rag"), NASTY_TEXT, JSON),
    "messages": st.one_of(
        st.lists(st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", "assistant", "tool", "robot"]),
             "content": st.one_of(NASTY_TEXT, st.none(),
                                  st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": NASTY_TEXT}),
                                           max_size=2))},
        ), max_size=3),
        JSON,
    ),
    "stream": st.one_of(st.booleans(), JSON),
    "temperature": NUMBERS, "top_p": NUMBERS, "max_tokens": NUMBERS, "max_completion_tokens": NUMBERS,
    "seed": NUMBERS, "k": NUMBERS, "n": NUMBERS,
    "stop": st.one_of(NASTY_TEXT, st.lists(NASTY_TEXT, max_size=5), JSON),
    "mode": st.one_of(st.sampled_from(["dense", "lexical", "hybrid", "sparse"]), JSON),
    "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": st.booleans()}), JSON),
    "user": JSON,
    "session_id": st.one_of(st.just("sess_" + "0" * 32), NASTY_TEXT, JSON),  # well-formed: 404, never a 5xx
    "store": st.one_of(st.booleans(), JSON),
}
SEARCH_FIELDS = {
    "query": st.one_of(NASTY_TEXT, JSON), "k": NUMBERS, "model": st.one_of(st.just("rag"), JSON),
    "mode": CHAT_FIELDS["mode"],
}
FEEDBACK_FIELDS = {
    "response_id": st.one_of(st.just("chatcmpl-" + "0" * 32), NASTY_TEXT, JSON),
    "rating": st.one_of(st.sampled_from(["up", "down", "UP", "meh"]), JSON),
    "comment": st.one_of(NASTY_TEXT, st.text(min_size=1990, max_size=2010), st.none(), JSON),
}
VALID_FEEDBACK = {"response_id": "chatcmpl-" + "0" * 32, "rating": "up", "comment": "fine"}
VALID_CHAT = {"model": "rag", "messages": [{"role": "user", "content": "What is matcha?"}], "max_tokens": 2}
VALID_SEARCH = {"query": "matcha", "k": 2}


def mutated(valid: dict, fields: dict) -> st.SearchStrategy[dict]:
    """A valid body with some fields replaced by fuzzed values, some dropped, maybe an unknown one added."""
    changes = st.fixed_dictionaries({}, optional=fields)
    dropped = st.sets(st.sampled_from(sorted(valid)), max_size=1)
    extra = st.dictionaries(NASTY_TEXT, JSON, max_size=1)
    return st.builds(
        lambda c, d, e: {k: v for k, v in {**valid, **c}.items() if k not in d} | e, changes, dropped, extra
    )


@pytest.fixture(scope="module")
def client(world):
    with TestClient(create_app(world.serving_config())) as c:
        yield c


def check(response, streamed: bool = False) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code == 200:
        if streamed:
            assert response.text.rstrip().endswith("data: [DONE]")
        return
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["message"] and error["type"] and error["code"], error


def post(client, path: str, body) -> None:
    data = json.dumps(body, ensure_ascii=True, allow_nan=True)  # \ud800 travels as JSON escapes, as clients send it
    response = client.post(path, content=data.encode(), headers={"content-type": "application/json"})
    check(response, streamed=isinstance(body, dict) and body.get("stream") is True)


@FUZZ
@given(body=mutated(VALID_CHAT, CHAT_FIELDS))
def test_fuzzed_chat_bodies_never_give_a_server_error(client, body):
    post(client, "/v1/chat/completions", body)


@FUZZ
@given(body=mutated(VALID_SEARCH, SEARCH_FIELDS))
def test_fuzzed_search_bodies_never_give_a_server_error(client, body):
    post(client, "/v1/search", body)


@FUZZ
@given(body=mutated(VALID_FEEDBACK, FEEDBACK_FIELDS))
def test_fuzzed_feedback_bodies_never_give_a_server_error(client, body):
    post(client, "/v1/feedback", body)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(session_id=NASTY_TEXT, method=st.sampled_from(["GET", "DELETE"]))
def test_fuzzed_session_ids_never_give_a_server_error(client, session_id, method):
    from urllib.parse import quote

    path = "/v1/sessions/" + quote(session_id.encode("utf-8", "surrogatepass"), safe="")
    check(client.request(method, path))


@settings(max_examples=80, deadline=None, derandomize=True)
@given(body=JSON, path=st.sampled_from(["/v1/chat/completions", "/v1/search", "/v1/feedback", "/admin/reload"]))
def test_arbitrary_json_never_gives_a_server_error(client, body, path):
    post(client, path, body)


RAW = st.one_of(st.binary(max_size=64), st.sampled_from(
    [b"", b"[" * 5000, b'{"model": "rag", "messages": [' * 2000, b"\xff\xfe", b'{"query": "\\ud800"}', b"NaN"]))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(raw=RAW, content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]))
def test_raw_bodies_never_give_a_server_error(client, raw, content_type):
    for path in ("/v1/chat/completions", "/v1/search", "/v1/feedback"):
        check(client.post(path, content=raw, headers={"content-type": content_type}))


# ------------------------------------------------------------------------------------------------ routes


ROUTE_NAMES = ["rag", "rag-staging", "rag-limited"]


@pytest.fixture(scope="module")
def routed_client(world):
    from llmops.config import RouteConfig

    world.registry.promote(world.release_b.release, "fuzz-staging")
    routes = (RouteConfig(name="rag", alias="production"), RouteConfig(name="rag-staging", alias="fuzz-staging"),
              RouteConfig(name="rag-limited", alias="production", rate_limit={"requests_per_minute": 1, "burst": 1}))
    with TestClient(create_app(world.serving_config(routes=routes))) as c:
        yield c


MODEL = st.one_of(st.sampled_from(ROUTE_NAMES), st.sampled_from([n.upper() for n in ROUTE_NAMES] + ["rag "]),
                  NASTY_TEXT, JSON)


@FUZZ
@given(body=mutated(VALID_SEARCH, {**SEARCH_FIELDS, "model": MODEL}))
def test_fuzzed_models_on_routes_never_give_a_server_error(routed_client, body):
    post(routed_client, "/v1/search", body)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(model=MODEL, stream=st.booleans())
def test_fuzzed_models_in_chat_on_routes_never_give_a_server_error(routed_client, model, stream):
    post(routed_client, "/v1/chat/completions", {**VALID_CHAT, "model": model, "stream": stream})


ROUTE = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.sampled_from(ROUTE_NAMES), NASTY_TEXT), "alias": st.one_of(st.just("production"), JSON),
    "endpoint": st.one_of(st.fixed_dictionaries({"base_url": st.sampled_from(["http://h/v1", "ftp://h"]),
                                                 "model": NASTY_TEXT}), JSON),
    "rate_limit": st.one_of(st.fixed_dictionaries({"requests_per_minute": NUMBERS}, optional={"burst": NUMBERS}), JSON),
    "api_keys_env": st.one_of(NASTY_TEXT, JSON),
})


@settings(max_examples=200, deadline=None, derandomize=True)
@given(routes=st.lists(ROUTE, max_size=3), model_name=st.sampled_from(ROUTE_NAMES))
def test_fuzzed_route_configs_are_accepted_whole_or_refused_by_validation(routes, model_name):
    from pydantic import ValidationError

    from llmops.config import ServingConfig

    try:
        serving = ServingConfig.model_validate({"routes": routes, "model_name": model_name})
    except ValidationError:
        return
    names = [r.name for r in serving.route_table()]
    assert len(names) == len(set(names)) and model_name in names
    for route in serving.route_table():
        assert (route.alias is None) != (route.endpoint is None)
        if route.rate_limit is not None:
            assert route.rate_limit.requests_per_minute > 0 and route.rate_limit.capacity >= 1
