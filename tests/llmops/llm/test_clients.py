"""Generation clients: the in-process transformers backend on the tiny local model, make_client, and the
OpenAI-compatible client's error handling against small local HTTP servers (the real vLLM server is in
test_vllm_server.py)."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading

import pytest
from transformers import AutoTokenizer

from llmops.config import LLMConfig, SamplingConfig
from llmops.errors import (
    BackendUnavailableError,
    ConfigError,
    ContextLengthError,
    GenerationError,
    ModelNotFoundError,
)
from llmops.llm.client import GenerationClient
from llmops.llm.openai_client import OpenAICompatibleClient
from llmops.llm.runtime import make_client
from llmops.llm.transformers_client import TransformersClient, _clean_decode, _DeltaStreamer, _StopFilter
from llmops.llm.vllm_server import free_port
from tests.llm_fixtures import EOS_PROMPT, GREEDY, QUESTIONS, chat, extra_eos_id

@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """On this shared 2-core machine a 2-thread forward of the tiny model took 250 ms, a 1-thread one 2 ms: with
    the cores busy, OpenMP threads wait on each other. Tiny models need no parallel kernels."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def client(varied_llm_dir) -> TransformersClient:
    return TransformersClient(varied_llm_dir, max_batch_size=8)


@pytest.fixture(scope="module")
def singles(client) -> list:
    """Each question generated alone (no padding): the reference the batched runs are compared with."""
    return [client.generate([chat(q)], GREEDY)[0] for q in QUESTIONS]


def test_is_a_generation_client(client):
    assert isinstance(client, GenerationClient)


def test_batches_preserve_order_and_match_single_requests(client, singles):
    texts = [g.text for g in singles]
    assert len(set(texts)) == len(texts), "the varied model should answer different questions differently"
    batched = client.generate([chat(q) for q in QUESTIONS], GREEDY)
    assert [g.text for g in batched] == texts
    assert [g.prompt_tokens for g in batched] == [g.prompt_tokens for g in singles]  # padding is not counted
    assert [g.completion_tokens for g in batched] == [g.completion_tokens for g in singles]
    reversed_ = client.generate([chat(q) for q in reversed(QUESTIONS)], GREEDY)
    assert [g.text for g in reversed_] == texts[::-1]


def test_small_batch_size_gives_the_same_answers(varied_llm_dir, singles):
    small = TransformersClient(varied_llm_dir, max_batch_size=2)
    assert [g.text for g in small.generate([chat(q) for q in QUESTIONS], GREEDY)] == [g.text for g in singles]


def test_greedy_is_deterministic_and_seeded_sampling_repeats(client, singles):
    again = client.generate([chat(q) for q in QUESTIONS], GREEDY)
    assert [g.text for g in again] == [g.text for g in singles]
    sampled = SamplingConfig(temperature=1.0, top_p=0.95, max_tokens=12, seed=7)
    first = client.generate([chat(QUESTIONS[0])], sampled)[0].text
    assert client.generate([chat(QUESTIONS[0])], sampled)[0].text == first
    others = {client.generate([chat(QUESTIONS[0])], sampled.model_copy(update={"seed": s}))[0].text for s in range(3)}
    assert len(others | {first}) > 1, "different seeds should sample different answers"


def test_max_tokens_is_respected(client):
    for n in (1, 5):
        for g in client.generate([chat(q) for q in QUESTIONS], SamplingConfig(max_tokens=n)):
            assert g.completion_tokens <= n
            assert g.finish_reason in ("length", "stop")
            if g.finish_reason == "length":
                assert g.completion_tokens == n


def test_token_counts_use_the_models_tokenizer(client, varied_llm_dir, singles):
    tok = AutoTokenizer.from_pretrained(varied_llm_dir)
    for q, g in zip(QUESTIONS, singles):
        prompt_ids = tok.apply_chat_template(chat(q), add_generation_prompt=True, tokenize=True, return_dict=True)
        assert g.prompt_tokens == len(prompt_ids["input_ids"])
        assert g.completion_tokens == GREEDY.max_tokens and g.finish_reason == "length"
        assert g.latency_s > 0 and 0 < g.first_token_s <= g.latency_s
        assert g.model == str(varied_llm_dir)
    for text in ("hello world", "富士山は静岡県と山梨県にまたがる活火山である。", ""):
        assert client.count_tokens(text) == len(tok(text, add_special_tokens=False)["input_ids"])


def test_context_window_limits_the_answer_and_rejects_longer_prompts(varied_llm_dir, client, singles):
    """vLLM's rule: the answer gets what is left of max_model_len; a prompt longer than the context is rejected."""
    from llmops.errors import ContextLengthError

    short, long_ = singles[3].prompt_tokens, singles[4].prompt_tokens
    assert long_ > short + 3
    bounded = TransformersClient(varied_llm_dir, max_model_len=long_ + 3)
    gens = bounded.generate([chat(QUESTIONS[3]), chat(QUESTIONS[4])], GREEDY)
    assert gens[0].text == singles[3].text and gens[0].completion_tokens == GREEDY.max_tokens
    assert (gens[1].completion_tokens, gens[1].finish_reason) == (3, "length")
    assert singles[4].text.startswith(gens[1].text)
    assert "".join(bounded.stream(chat(QUESTIONS[4]), GREEDY)) == gens[1].text
    with pytest.raises(ContextLengthError, match=f"the prompt has {long_} tokens"):
        TransformersClient(varied_llm_dir, max_model_len=long_ - 1).generate([chat(QUESTIONS[4])], GREEDY)


def test_end_of_sequence_token_ends_the_answer_and_is_counted_not_shown(client, varied_llm_dir):
    """The varied model has an extra EOS id: the 4th greedy token for EOS_PROMPT."""
    eos = extra_eos_id(varied_llm_dir)
    assert eos != AutoTokenizer.from_pretrained(varied_llm_dir).eos_token_id
    g = client.generate([EOS_PROMPT, chat(QUESTIONS[1])], SamplingConfig(max_tokens=10))[0]
    assert (g.finish_reason, g.completion_tokens) == ("stop", 4)
    assert g.text == client.generate([EOS_PROMPT], SamplingConfig(max_tokens=3))[0].text
    assert "".join(client.stream(EOS_PROMPT, SamplingConfig(max_tokens=10))) == g.text


def test_each_row_of_a_batch_gets_its_own_latency(client):
    """Per request, not the batch's wall time: a row that ends early is done when its own last token is chosen.
    (Orders of the same clock's readings, not durations: this holds however loaded the machine is.)"""
    early, full = client.generate([EOS_PROMPT, chat(QUESTIONS[1])], SamplingConfig(max_tokens=10))
    assert (early.completion_tokens, full.completion_tokens) == (4, 10)
    assert early.first_token_s == full.first_token_s  # one prefill for the batch
    assert 0 < early.first_token_s < early.latency_s < full.latency_s


def test_stop_strings_end_the_answer_and_are_not_part_of_it(client, singles):
    checked = 0
    for q, full in zip(QUESTIONS, singles):
        text = full.text
        # a stop string from the middle of the greedy answer (made of printable characters)
        start = next((i for i in range(2, len(text) - 3) if text[i : i + 2].isprintable() and text[i : i + 2].strip()), None)
        if start is None:
            continue
        stop = text[start : start + 2]
        g = client.generate([chat(q)], SamplingConfig(max_tokens=GREEDY.max_tokens, stop=(stop, "no-such-stop")))[0]
        assert g.text == text[: text.find(stop)]
        assert g.finish_reason == "stop"
        assert g.completion_tokens <= full.completion_tokens
        streamed = "".join(client.stream(chat(q), SamplingConfig(max_tokens=GREEDY.max_tokens, stop=(stop,))))
        assert streamed == g.text
        checked += 1
    assert checked >= 3


def test_streaming_yields_the_non_streaming_text(client, singles):
    for q, g in zip(QUESTIONS, singles):
        deltas = list(client.stream(chat(q), GREEDY))
        assert "".join(deltas) == g.text
    sampled = SamplingConfig(temperature=0.9, max_tokens=12, seed=3)
    assert "".join(client.stream(chat(QUESTIONS[0]), sampled)) == client.generate([chat(QUESTIONS[0])], sampled)[0].text


def test_closing_a_stream_early_frees_the_model(client, singles):
    stream = client.stream(chat(QUESTIONS[0]), SamplingConfig(max_tokens=200))
    next(stream)
    stream.close()  # must not hang, and the generating thread must release the model
    assert client.generate([chat(QUESTIONS[1])], GREEDY)[0].text == singles[1].text


def test_async_variants(client, singles):
    async def run():
        gens = await client.agenerate([chat(q) for q in QUESTIONS[:2]], GREEDY)
        deltas = [d async for d in client.astream_deltas(chat(QUESTIONS[0]), GREEDY)]
        return gens, deltas

    gens, deltas = asyncio.run(run())
    assert [g.text for g in gens] == [g.text for g in singles[:2]]
    assert "".join(d.text for d in deltas) == singles[0].text
    assert all(d.finish_reason is None for d in deltas[:-1])


def test_a_stream_ends_with_the_usage_generate_reports(client, varied_llm_dir):
    """The last delta carries the finish reason and the token counts of `generate`: the templated prompt's tokens
    and the generated ones (an end-of-sequence token counted, a stop string's tokens counted up to it)."""
    full = client.generate([chat(QUESTIONS[1])], GREEDY)[0]
    stop = next(full.text[i : i + 2] for i in range(2, len(full.text) - 3) if full.text[i : i + 2].strip())
    cases = [
        (chat(QUESTIONS[1]), GREEDY),  # max_tokens reached: "length"
        (EOS_PROMPT, SamplingConfig(max_tokens=10)),  # the extra EOS id after 4 tokens: "stop"
        (chat(QUESTIONS[1]), SamplingConfig(max_tokens=GREEDY.max_tokens, stop=(stop,))),  # a stop string: "stop"
    ]
    finish_reasons = []
    for messages, sampling in cases:
        g = client.generate([messages], sampling)[0]
        *text, last = list(client.stream_deltas(messages, sampling))
        assert "".join(d.text for d in text) + last.text == g.text
        assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == (
            g.finish_reason, g.prompt_tokens, g.completion_tokens)
        finish_reasons.append(last.finish_reason)
    assert finish_reasons == ["length", "stop", "stop"]


def test_lora_adapter_changes_the_output(varied_llm_dir, tiny_lora_dir, singles):
    adapted = TransformersClient(varied_llm_dir, adapter_path=tiny_lora_dir)
    gens = adapted.generate([chat(q) for q in QUESTIONS], GREEDY)
    assert adapted.model_name == tiny_lora_dir.name
    assert sum(a.text != b.text for a, b in zip(gens, singles)) >= len(QUESTIONS) - 1
    assert [g.text for g in adapted.generate([chat(q) for q in QUESTIONS], GREEDY)] == [g.text for g in gens]


def test_bad_adapter_directory_is_a_config_error(varied_llm_dir, tmp_path):
    with pytest.raises(ConfigError, match="not a PEFT adapter directory"):
        TransformersClient(varied_llm_dir, adapter_path=tmp_path)


def test_stop_filter_holds_back_possible_stop_prefixes():
    def run(deltas, stop):
        return list(_StopFilter(stop).feed_all(iter(deltas)))

    assert "".join(run(["Hello wo", "rld. END", " more"], ["END"])) == "Hello world. "
    assert "".join(run(["ab", "E", "N", "D", "cd"], ["END"])) == "ab"
    assert "".join(run(["ab", "E", "N", "x"], ["END"])) == "abENx"  # a false start is released
    assert run(["ab", "E"], ["END"]) == ["ab", "E"]


def test_unfinished_characters_are_not_text_until_complete(client):
    """Byte-level tokens can split a character; like vLLM, its bytes become text only once it is complete, and an
    answer that ends inside a character ends before it."""
    import torch
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tok = client.tokenizer
    byte_token = {b: tok.convert_tokens_to_ids(ch) for b, ch in bytes_to_unicode().items()}
    a, (d1, d2, d3) = byte_token[ord("a")], ["だ".encode()[i] for i in range(3)]
    ids = [a, byte_token[d1], byte_token[d2], byte_token[d3]]
    assert tok.decode(ids[:3]).endswith("\ufffd")  # what a plain decode shows
    assert [_clean_decode(tok, ids[:n]) for n in range(5)] == ["", "a", "a", "a", "aだ"]

    streamer = _DeltaStreamer(tok, eos_ids={tok.eos_token_id})
    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt
    for token in ids + [tok.eos_token_id]:
        streamer.put(torch.tensor([token]))
    streamer.end()
    assert list(streamer) == ["a", "だ"]


# -- make_client ------------------------------------------------------------------------------------------------


def test_make_client_picks_the_backend(varied_llm_dir, tiny_lora_dir, monkeypatch):
    llm = LLMConfig(model=str(varied_llm_dir), backend="transformers", dtype="float32", device="cpu")
    local = make_client(llm, adapter_path=str(tiny_lora_dir))
    assert isinstance(local, TransformersClient) and local.model_name == tiny_lora_dir.name

    monkeypatch.setenv("TEST_LLM_KEY", "secret")
    remote = make_client(
        llm.model_copy(update={"api_key_env": "TEST_LLM_KEY"}), base_url="http://127.0.0.1:9/v1",
        served_model_name="adapter-x",
    )
    assert isinstance(remote, OpenAICompatibleClient)
    assert (remote.model_name, remote.base_url, remote._api_key) == ("adapter-x", "http://127.0.0.1:9/v1", "secret")
    assert remote.count_tokens("hello world") == local.count_tokens("hello world")  # the model's tokenizer, locally

    vllm = llm.model_copy(update={"backend": "vllm"})
    assert make_client(vllm.model_copy(update={"base_url": "http://h:1/v1"})).model_name == str(varied_llm_dir)
    with pytest.raises(ConfigError, match="llm.base_url"):
        make_client(vllm)
    with pytest.raises(ConfigError, match="served_model_name"):
        make_client(vllm, base_url="http://h:1/v1", adapter_path=str(tiny_lora_dir))


# -- OpenAI-compatible client: failures, against real local HTTP servers ----------------------------------------


class _ErrorServer:
    """A tiny HTTP server that answers every chat request with one status and body, counting requests. With
    `events`, a 200 with those SSE `data:` payloads instead (a stream)."""

    def __init__(self, status: int, body: dict | None = None, events: list[str] | None = None):
        outer = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # /v1/models
                self._reply(200, {"object": "list", "data": [{"id": "tiny", "object": "model"}]})

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests += 1
                if events is None:
                    return self._reply(status, body)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for event in events:  # one write per event: the client sees them in separate reads
                    self.wfile.write(f"data: {event}\n\n".encode())
                    self.wfile.flush()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_no_server_is_backend_unavailable():
    client = OpenAICompatibleClient(f"http://127.0.0.1:{free_port()}/v1", "tiny", max_retries=1, timeout_s=5)
    with pytest.raises(BackendUnavailableError, match="cannot connect after 1 retries"):
        client.generate([chat("hi"), chat("ho")], GREEDY)
    with pytest.raises(BackendUnavailableError):
        list(client.stream(chat("hi"), GREEDY))


def test_server_errors_are_retried_then_reported():
    server = _ErrorServer(500, {"error": {"message": "engine dead", "type": "InternalServerError", "code": 500}})
    try:
        client = OpenAICompatibleClient(server.base_url, "tiny", max_retries=2, timeout_s=5)
        with pytest.raises(BackendUnavailableError, match="server error 500 after retries: engine dead"):
            client.generate([chat("hi")], GREEDY)
        assert server.requests == 3  # the first try and two retries with backoff
    finally:
        server.close()


def test_unknown_model_lists_what_the_server_serves():
    server = _ErrorServer(404, {"error": {"message": "The model `nope` does not exist.", "code": 404}})
    try:
        client = OpenAICompatibleClient(server.base_url, "nope", max_retries=2)
        with pytest.raises(ModelNotFoundError, match="It serves: tiny"):
            client.generate([chat("hi")], GREEDY)
        assert server.requests == 1  # a 4xx is not retried
    finally:
        server.close()


def test_other_rejections_keep_the_status():
    server = _ErrorServer(400, {"error": {"message": "top_p must be in (0, 1]", "code": 400}})
    try:
        with pytest.raises(GenerationError, match=r"rejected \(400\): top_p must be") as info:
            OpenAICompatibleClient(server.base_url, "tiny").generate([chat("hi")], GREEDY)
        assert info.value.status_code == 400
    finally:
        server.close()


# -- the streaming path (httpx, not openai): the same errors and retries --------------------------------------


def _astream(client: OpenAICompatibleClient, messages=None) -> list:
    async def run():
        try:
            return [d async for d in client.astream_deltas(messages or chat("hi"), GREEDY)]
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_stream_no_server_is_backend_unavailable():
    client = OpenAICompatibleClient(f"http://127.0.0.1:{free_port()}/v1", "tiny", max_retries=1, timeout_s=5)
    with pytest.raises(BackendUnavailableError, match="cannot connect after 1 retries"):
        _astream(client)


@pytest.mark.parametrize(
    ("status", "message", "error", "match", "tries"),
    [
        (500, "engine dead", BackendUnavailableError, "server error 500 after retries: engine dead", 3),
        (429, "slow down", GenerationError, r"rejected \(429\): slow down", 3),
        (404, "The model `nope` does not exist.", ModelNotFoundError, "It serves: tiny", 1),
        (400, "This model's maximum context length is 512 tokens", ContextLengthError, "maximum context length", 1),
        (400, "top_p must be in (0, 1]", GenerationError, r"rejected \(400\): top_p must be", 1),
    ],
)
def test_stream_errors_map_and_retry_as_generate_does(status, message, error, match, tries):
    """The streamed path reads HTTP itself; its statuses, messages and retries are those of the openai path."""
    server = _ErrorServer(status, {"error": {"message": message, "code": status}})
    try:
        for call in (lambda c: c.generate([chat("hi")], GREEDY), _astream):
            server.requests = 0
            client = OpenAICompatibleClient(server.base_url, "nope", max_retries=2, timeout_s=5)
            with pytest.raises(error, match=match) as info:
                call(client)
            assert server.requests == tries
            if type(info.value) is GenerationError:
                assert info.value.status_code == status
    finally:
        server.close()


def test_stream_reads_deltas_usage_and_error_events():
    events = [
        json.dumps({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
        json.dumps({"choices": [{"index": 0, "delta": {"content": "Hel"}}]}),
        json.dumps({"choices": [{"index": 0, "delta": {"content": "lo 富士"}, "finish_reason": "length"}]}),
        json.dumps({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}),
        "[DONE]",
    ]
    server = _ErrorServer(200, events=events)
    try:
        deltas = _astream(OpenAICompatibleClient(server.base_url, "tiny"))
    finally:
        server.close()
    assert [d.text for d in deltas] == ["Hel", "lo 富士", ""]
    assert (deltas[-1].finish_reason, deltas[-1].prompt_tokens, deltas[-1].completion_tokens) == ("length", 7, 2)

    failing = [events[1], json.dumps({"error": {"message": "engine died", "type": "InternalServerError", "code": 500}})]
    server = _ErrorServer(200, events=failing)
    try:
        with pytest.raises(GenerationError, match="failed during the answer: engine died") as info:
            _astream(OpenAICompatibleClient(server.base_url, "tiny"))
        assert info.value.status_code == 500
    finally:
        server.close()
