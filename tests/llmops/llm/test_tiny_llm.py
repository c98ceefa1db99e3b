"""The tiny random Llama: deterministic files, loads and generates in transformers, chat template with masks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.index.embedding import model_digest
from llmops.llm.tiny_llm import MARKER, build_tiny_llm, main, random_weights_info

REPO_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = REPO_ROOT / "examples" / "tiny-llm"

MESSAGES = [
    {"role": "system", "content": "Answer from the contexts."},
    {"role": "user", "content": "バックアップはいつ取得されますか？ And when?"},
    {"role": "assistant", "content": "毎日午前3時 [1]"},
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_llm(tmp_path_factory.mktemp("tiny") / "model", seed=0)


def test_same_seed_same_files_other_seed_other_weights(tiny, tmp_path):
    again = build_tiny_llm(tmp_path / "again", seed=0)
    other = build_tiny_llm(tmp_path / "other", seed=1)
    assert model_digest(again) == model_digest(tiny)
    assert (other / "model.safetensors").read_bytes() != (tiny / "model.safetensors").read_bytes()
    assert (other / "tokenizer.json").read_bytes() == (tiny / "tokenizer.json").read_bytes()


def test_extra_texts_change_the_tokenizer_not_the_order(tmp_path):
    texts = ["Patroni manages the PostgreSQL cluster. " * 3, "証明書は九十日ごとに更新されます。" * 3]
    a = build_tiny_llm(tmp_path / "a", texts=texts)
    b = build_tiny_llm(tmp_path / "b", texts=list(reversed(texts)))
    assert model_digest(a) == model_digest(b)
    plain = build_tiny_llm(tmp_path / "plain")
    assert (a / "tokenizer.json").read_bytes() != (plain / "tokenizer.json").read_bytes()


def test_shape_fits_vllm_cpu(tiny):
    config = json.loads((tiny / "config.json").read_text())
    assert config["hidden_size"] // config["num_attention_heads"] >= 32  # vLLM CPU attention: 16 fails
    assert config["max_position_embeddings"] == 4096
    assert (tiny / "model.safetensors").is_file()
    generation = json.loads((tiny / "generation_config.json").read_text())
    assert generation["eos_token_id"] == config["eos_token_id"]
    assert generation["pad_token_id"] == config["pad_token_id"]


def test_head_size_below_32_is_refused(tmp_path):
    with pytest.raises(ValueError, match="head size >= 32"):
        build_tiny_llm(tmp_path / "m", hidden_size=64, num_heads=4)


def test_chat_template_and_assistant_mask(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    assert tok.pad_token_id is not None and tok.eos_token == "<|im_end|>" and tok.bos_token is not None
    text = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert text.startswith(tok.bos_token + "<|im_start|>system\n")
    assert "<|im_start|>assistant\n毎日午前3時 [1]<|im_end|>\n" in text
    prompt = tok.apply_chat_template(MESSAGES[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")
    out = tok.apply_chat_template(MESSAGES, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    learned = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(learned) == "毎日午前3時 [1]<|im_end|>"
    # Byte-level BPE: Japanese round-trips without unknown tokens.
    ids = tok("証明書のローテーション").input_ids
    assert tok.decode(ids) == "証明書のローテーション"


def test_loads_and_generates(tiny):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny)
    enc = tok.apply_chat_template(MESSAGES[:2], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


@pytest.mark.parametrize("model", ["built", "example"])
def test_answers_are_visible_text_through_the_transformers_backend(tiny, model):
    """Greedy answers of the random model are text a reader can see, not the prompt's final newline repeated (what
    tied random embeddings gave: every quickstart answer was '' once stripped)."""
    from llmops.config import SamplingConfig
    from llmops.llm.transformers_client import TransformersClient

    path = tiny if model == "built" else EXAMPLE
    client = TransformersClient(path, device="cpu", dtype="float32")
    questions = ["Which tool manages the cluster?", "バックアップはいつ取得されますか？", "How long are logs kept?"]
    batch = [[MESSAGES[0], {"role": "user", "content": q}] for q in questions]
    generations = client.generate(batch, SamplingConfig(temperature=0.0, max_tokens=16, seed=0))
    for g in generations:
        assert g.completion_tokens > 0 and g.text.strip(), g
    assert len({g.text for g in generations}) > 1  # the answer depends on the question
    config = json.loads((path / "config.json").read_text())
    assert config["tie_word_embeddings"] is False


def test_marker_says_the_weights_are_random(tiny, tmp_path):
    assert random_weights_info(tiny)["random_weights"] is True
    assert random_weights_info(EXAMPLE)["seed"] == 0
    # Any other model: a folder without the marker, a Hub id, a marker that does not say so.
    assert random_weights_info(tmp_path) is None
    assert random_weights_info("Qwen/Qwen2.5-0.5B-Instruct") is None
    (tmp_path / MARKER).write_text('{"random_weights": false}', encoding="utf-8")
    assert random_weights_info(tmp_path) is None


def test_cli_builds_the_model(tmp_path, capsys):
    text_dir = tmp_path / "texts"
    text_dir.mkdir()
    (text_dir / "a.md").write_text("Runbook: rotate certificates every 90 days.\n" * 5, encoding="utf-8")
    assert main([str(tmp_path / "m"), "--seed", "3", "--text-dir", str(text_dir)]) == 0
    assert (tmp_path / "m" / "tokenizer.json").is_file()
    assert str(tmp_path / "m") in capsys.readouterr().out


def test_committed_example_is_the_documented_build(tmp_path):
    """examples/tiny-llm must be what its README's command produces (rebuild it after changing the builder)."""
    if not EXAMPLE.is_dir():
        pytest.skip("examples/tiny-llm is not in this checkout")
    rebuilt = tmp_path / "tiny-llm"
    main([str(rebuilt), "--text-dir", str(REPO_ROOT / "examples" / "quickstart" / "corpus")])
    # Weights, tokenizer and marker: config files carry the transformers version, README.md is ours.
    for name in ("model.safetensors", "tokenizer.json", "chat_template.jinja", MARKER):
        if (rebuilt / name).read_bytes() != (EXAMPLE / name).read_bytes():
            pytest.fail(
                f"examples/tiny-llm/{name} differs from a fresh build: run "
                "`python -m llmops.llm.tiny_llm examples/tiny-llm --text-dir examples/quickstart/corpus`"
            )


@pytest.mark.slow
def test_example_answers_visible_text_through_a_vllm_cpu_server(vllm_python, tmp_path):
    """The quickstart model served by vLLM's CPU build (its detokenizer releases no unfinished characters): the same
    non-empty greedy answers as the transformers backend."""
    from llmops.config import SamplingConfig
    from llmops.llm.openai_client import OpenAICompatibleClient
    from llmops.llm.transformers_client import TransformersClient
    from llmops.llm.vllm_server import VLLMServer
    from tests.llm_fixtures import CPU_VLLM_ARGS

    questions = ["Which tool manages the cluster?", "バックアップはいつ取得されますか？", "How long are logs kept?"]
    batch = [[MESSAGES[0], {"role": "user", "content": q}] for q in questions]
    greedy = SamplingConfig(temperature=0.0, max_tokens=16)
    server = VLLMServer(EXAMPLE, served_model_name="tiny", max_model_len=512, dtype="float32",
                        extra_args=CPU_VLLM_ARGS, workdir=tmp_path, python=vllm_python)
    with server:
        served = OpenAICompatibleClient(server.base_url, "tiny").generate(batch, greedy)
    in_process = TransformersClient(EXAMPLE, dtype="float32", device="cpu").generate(batch, greedy)
    assert all(g.text.strip() for g in served), served
    assert [g.text for g in served] == [g.text for g in in_process]
    assert [g.completion_tokens for g in served] == [g.completion_tokens for g in in_process]
