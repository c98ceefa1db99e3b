"""RAG-aware LoRA fine-tuning of the tiny Llama on a memorizable set, end to end through the plain functions.

One module fixture builds a real index (MiniLM) and a tiny model, and trains once (~15 s on 2 CPU cores); the other
tests read that run or call the cheap parts (data building, splitting, checks) directly.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from llmops.config import FinetuneConfig, parse_config
from llmops.index.embedding import model_digest
from llmops.errors import ArtifactIntegrityError, ArtifactNotFoundError, ConfigError, FinetuneError
from llmops.finetune.sft_data import build_sft_records, load_training_examples, split_records
from llmops.finetune.stage import _hyperparameters, adapter_version, finetune
from llmops.finetune.training import train_lora, training_precision
from llmops.finetune.manifest import (
    ADAPTER_MANIFEST,
    ADAPTER_SCHEMA_VERSION,
    AdapterManifest,
    read_adapter_manifest,
    verify_adapter,
)
from llmops.rag.prompt import PromptBuilder
from llmops.corpus.qa import read_qa
from llmops.index.retriever import Retriever
from llmops.llm.tiny_llm import build_tiny_llm
from tests.conftest import REPO_ROOT, write_corpus
from tests.helpers import CORPUS, build, make_config

QA = [
    ("Which volcano in Sicily is one of the most active?", "Mount Etna"),
    ("What is matcha?", "a finely ground powder of green tea leaves"),
    ("When did the first Shinkansen line open?", "1964"),
    ("Which plant are green tea leaves from?", "Camellia sinensis"),
    ("富士山の標高は何メートルですか？", "3776メートル"),
    ("富士山が世界文化遺産に登録されたのは何年ですか？", "2013年"),
    ("握り寿司が広まったのはいつですか？", "江戸時代"),
    ("What rises through the vents of a volcano?", "Magma"),
]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def write_qa(path: Path, pairs) -> Path:
    path.write_text(
        "".join(json.dumps({"question": q, "answers": [a]}, ensure_ascii=False) + "\n" for q, a in pairs),
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ft")
    corpus = write_corpus(tmp / "corpus", CORPUS)
    model = build_tiny_llm(tmp / "model", texts=CORPUS.values())
    cfg = make_config(
        tmp,
        corpus,
        llm={"model": str(model), "backend": "transformers", "max_model_len": 1024, "max_lora_rank": 8},
        sampling={"max_tokens": 64},
        retrieval={"k": 2},
        finetune={
            "enabled": True,
            "train_path": str(write_qa(tmp / "train.jsonl", QA)),
            "validation_fraction": 0.25,
            "max_steps": 20,
            "batch_size": 2,
            "learning_rate": 2e-2,
            "max_length": 512,
            "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ALL_LINEAR},
        },
    )
    index, _, _ = build(cfg)
    retriever = Retriever.load(index.artifact_uri)
    out = finetune(cfg, index.artifact_uri, retriever=retriever, execution_id="test:local:ft")
    return {"tmp": tmp, "cfg": cfg, "model": model, "index": index.artifact_uri, "retriever": retriever, "out": out}


def test_loss_decreases(setup):
    training = setup["out"].manifest.training
    train = [v for _, v in training.train_loss]
    validation = training.validation_loss
    assert training.steps == 20 and len(train) == 20  # logged every step for a 20-step run
    assert validation[0][0] == 0  # measured before training: the base model's loss
    assert validation[-1][0] == 20
    # Per-step training loss on batches of 2 is noisy at this learning rate (single steps spike by +0.5); the
    # held-out loss, measured on the same examples each time, carries the margin.
    assert sum(train[-5:]) / 5 < sum(train[:5]) / 5
    assert validation[-1][1] < validation[0][1] - 0.2
    assert training.device == "cpu" and training.precision == "fp32"


def test_adapter_artifact_and_manifest(setup):
    out, cfg = setup["out"], setup["cfg"]
    directory = Path(out.adapter_uri)
    assert directory == Path(cfg.artifacts.root) / "adapters" / out.version
    assert {"adapter_config.json", "adapter_model.safetensors", "pipeline_config.json", ADAPTER_MANIFEST} == {
        p.name for p in directory.iterdir()
    }
    manifest = verify_adapter(directory)
    assert manifest == read_adapter_manifest(directory) == out.manifest
    assert manifest.base_model.model_dump() == {
        "model": cfg.llm.model, "revision": None, "digest": model_digest(setup["model"])
    }
    assert manifest.lora.r == 8 and manifest.lora.max_lora_rank == 8
    assert manifest.index_version == setup["retriever"].version
    assert {"peft", "trl", "transformers", "torch"} <= set(manifest.libraries)
    assert manifest.lineage.execution_id == "test:local:ft" and manifest.lineage.code_version
    assert manifest.hyperparameters.learning_rate == 2e-2 and manifest.hyperparameters.precision == "fp32"
    adapter_config = json.loads((directory / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8 and sorted(adapter_config["target_modules"]) == sorted(ALL_LINEAR)
    assert adapter_config["base_model_name_or_path"] == cfg.llm.model


def test_training_data_is_the_rag_prompt_plus_the_gold_answer(setup):
    manifest, cfg, retriever = setup["out"].manifest, setup["cfg"], setup["retriever"]
    data_file = Path(manifest.data.uri)
    assert hashlib.sha256(data_file.read_bytes()).hexdigest() == manifest.data.digest
    records = [json.loads(line) for line in data_file.read_text(encoding="utf-8").splitlines()]
    assert len(records) == len(QA) and manifest.data.records == len(QA)
    assert sum(r["split"] == "validation" for r in records) == manifest.data.validation == 2
    answers = dict(QA)
    builder = PromptBuilder(cfg.prompt)
    for r in records:
        system, user, assistant = r["messages"]
        question = next(q for q in answers if q in user["content"])
        hits = retriever.search(question, cfg.retrieval.k, cfg.retrieval.mode)
        assert [system, user] == builder.build(question, hits).messages  # the eval/serving prompt, unchanged
        assert assistant == {"role": "assistant", "content": answers[question]}
        assert r["sources"] == [h.source for h in hits] and "<context id=\"1\"" in user["content"]
    # The toy corpus holds every answer; retrieval with k=2 finds most of them.
    assert manifest.data.answer_in_contexts >= 6


def test_adapter_reloads_and_generates(setup):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(setup["model"])
    base = AutoModelForCausalLM.from_pretrained(setup["model"])
    messages = [{"role": "user", "content": "When did the first Shinkansen line open?"}]
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        base_logits = base(**enc).logits
    tuned = PeftModel.from_pretrained(base, setup["out"].adapter_uri).eval()
    with torch.no_grad():
        tuned_logits = tuned(**enc).logits
        generated = tuned.generate(**enc, max_new_tokens=8, do_sample=False)
    assert not torch.allclose(base_logits, tuned_logits, atol=1e-3)  # the adapter changes the model
    assert generated.shape[1] > enc["input_ids"].shape[1]


def test_same_inputs_reuse_the_verified_version(setup):
    again = finetune(setup["cfg"], setup["index"], retriever=setup["retriever"])
    assert again.reused and again.version == setup["out"].version and again.adapter_uri == setup["out"].adapter_uri
    assert again.manifest.training.seconds == setup["out"].manifest.training.seconds  # not retrained


def test_version_follows_every_input(setup):
    cfg, manifest = setup["cfg"], setup["out"].manifest
    budget = manifest.hyperparameters.max_prompt_tokens
    hp = _hyperparameters(cfg, "fp32", budget)
    base, data = manifest.base_model.digest, manifest.data.digest
    assert adapter_version(base, data, hp) == manifest.version
    slower = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={"learning_rate": 1e-3})})
    faster = _hyperparameters(slower, "fp32", budget)
    versions = {
        adapter_version(base, data, hp),
        adapter_version("other-model", data, hp),
        adapter_version(base, "other-data", hp),
        adapter_version(base, data, faster),
        adapter_version(base, data, _hyperparameters(cfg, "bf16", budget)),
        adapter_version(base, data, _hyperparameters(cfg, "fp32", budget - 1)),
        adapter_version(base, data, hp, code="other-code"),
    }
    assert len(versions) == 7


def test_a_damaged_adapter_is_refused_not_reused(setup, tmp_path):
    cfg, out = setup["cfg"], setup["out"]
    other = cfg.model_copy(update={"artifacts": cfg.artifacts.model_copy(update={"root": str(tmp_path / "a")})})
    copy = tmp_path / "a" / "adapters" / out.version
    shutil.copytree(out.adapter_uri, copy)
    weights = copy / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ArtifactIntegrityError, match="adapter_model.safetensors: sha256 mismatch"):
        finetune(other, setup["index"], retriever=setup["retriever"])
    (copy / "adapter_config.json").unlink()
    with pytest.raises(ArtifactIntegrityError, match="adapter_config.json: missing"):
        verify_adapter(copy)
    (copy / ADAPTER_MANIFEST).unlink()
    with pytest.raises(ArtifactIntegrityError, match="incomplete"):
        read_adapter_manifest(copy)
    with pytest.raises(ArtifactNotFoundError):
        read_adapter_manifest(tmp_path / "nothing")


def test_the_manifest_round_trips_through_its_schema(setup):
    manifest = setup["out"].manifest
    text = (Path(setup["out"].adapter_uri) / ADAPTER_MANIFEST).read_text(encoding="utf-8")
    assert AdapterManifest.model_validate_json(text) == manifest
    assert AdapterManifest.model_validate_json(manifest.model_dump_json()) == manifest
    assert json.loads(text) == manifest.model_dump(mode="json")  # what is written is what the schema writes


@pytest.mark.parametrize(
    "edit, refusal",
    [
        (lambda m: m["training"].update(steps="many"), "does not match the adapter artifact manifest schema"),
        (lambda m: m["lora"].update(rank_boost=2), "does not match the adapter artifact manifest schema"),
        (lambda m: m["data"].pop("digest"), "does not match the adapter artifact manifest schema"),
        (lambda m: m.update(schema_version=ADAPTER_SCHEMA_VERSION + 1),
         f"has schema_version {ADAPTER_SCHEMA_VERSION + 1}; this llmops reads {ADAPTER_SCHEMA_VERSION}. "
         "Train one with the finetune task with this version of llmops"),
        (lambda m: m["files"]["adapter_model.safetensors"].update(sha256="0" * 64),
         "adapter_model.safetensors: sha256 mismatch"),
    ],
    ids=["wrong type", "unknown field", "missing field", "other schema version", "file digest edited"],
)
def test_a_tampered_manifest_is_refused(setup, tmp_path, edit, refusal):
    copy = tmp_path / "adapter"
    shutil.copytree(setup["out"].adapter_uri, copy)
    manifest = json.loads((copy / ADAPTER_MANIFEST).read_text(encoding="utf-8"))
    edit(manifest)
    (copy / ADAPTER_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ArtifactIntegrityError, match=re.escape(refusal)):
        verify_adapter(copy)


def test_rank_above_max_lora_rank_is_refused(setup):
    cfg = setup["cfg"]
    data = cfg.model_dump(mode="json")
    data["finetune"]["lora"]["r"] = 16
    with pytest.raises(ConfigError, match=r"finetune.lora.r \(16\) exceeds llm.max_lora_rank \(8\)"):
        parse_config(data)
    # A config built in code skips validation: the stage checks again before any work.
    lora = cfg.finetune.lora.model_copy(update={"r": 16})
    too_big = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={"lora": lora})})
    with pytest.raises(FinetuneError, match=r"lora.r \(16\) exceeds llm.max_lora_rank \(8\).*--max-lora-rank"):
        finetune(too_big, setup["index"], retriever=setup["retriever"])


def test_4bit_needs_a_gpu():
    with pytest.raises(FinetuneError, match="4bit .*needs a CUDA GPU"):
        training_precision(FinetuneConfig(quantization="4bit"), "cpu")
    assert training_precision(FinetuneConfig(), "cpu") == "fp32"


def test_unknown_target_module_is_named(setup, tmp_path):
    ft = setup["cfg"].finetune.model_copy(
        update={"lora": setup["cfg"].finetune.lora.model_copy(update={"target_modules": ("q_proj", "query")})}
    )
    record = {"id": "a", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(FinetuneError, match=r"\['query'\] are not modules of the base model.*q_proj"):
        train_lora(setup["model"], [record], [record | {"id": "b"}], ft, tmp_path / "out", device="cpu")


def test_split_is_deterministic_and_order_independent():
    records = [{"id": f"q{i}"} for i in range(20)]
    train, validation = split_records(records, 0.25, seed=0)
    assert len(validation) == 5 and len(train) == 15
    assert {r["id"] for r in train} | {r["id"] for r in validation} == {r["id"] for r in records}
    again = split_records(list(reversed(records)), 0.25, seed=0)
    assert {r["id"] for r in again[1]} == {r["id"] for r in validation}
    assert {r["id"] for r in split_records(records, 0.25, seed=1)[1]} != {r["id"] for r in validation}
    assert [len(s) for s in split_records(records[:2], 0.01, seed=0)] == [1, 1]  # one each side at least
    with pytest.raises(FinetuneError, match="at least 2"):
        split_records(records[:1], 0.5, seed=0)


def test_long_records_lose_contexts_then_are_skipped(setup):
    from transformers import AutoTokenizer

    cfg, retriever = setup["cfg"], setup["retriever"]
    tok = AutoTokenizer.from_pretrained(setup["model"])
    examples = read_qa(cfg.finetune.train_path)[:3]
    builder = PromptBuilder(cfg.prompt)
    full, stats = build_sft_records(examples, retriever, builder, tok, k=2, mode="hybrid", max_length=4096)
    assert stats["contexts_dropped_for_length"] == 0 and all(len(r["sources"]) == 2 for r in full)
    longest = max(r["tokens"] for r in full)
    one_context = min(r["tokens"] for r in full) - 10  # room for fewer contexts, but not for both
    cut, stats = build_sft_records(examples, retriever, builder, tok, k=2, mode="hybrid", max_length=one_context)
    assert stats["contexts_dropped_for_length"] > 0 and all(r["tokens"] <= one_context for r in cut)
    none, stats = build_sft_records(examples, retriever, builder, tok, k=2, mode="hybrid", max_length=20)
    assert none == [] and stats["skipped_too_long"] == 3 and longest > 20


def test_a_follow_up_trains_with_its_conversation(setup):
    """Follow-ups are retrieved in their concat form and keep their recent turns in the prompt, as the chat path
    builds it; the stats count them. Without a history budget they train as single questions."""
    from transformers import AutoTokenizer

    from llmops.corpus.documents import QAExample

    cfg, retriever = setup["cfg"], setup["retriever"]
    tok = AutoTokenizer.from_pretrained(setup["model"])
    follow_up = QAExample("f", "And what rises through its vents?", ("Magma",),
                          history=(("user", "Which volcano in Sicily is very active?"), ("assistant", "Mount Etna.")))
    single = QAExample("s", "What is matcha made from?", ("green tea leaves",))
    builder = PromptBuilder(cfg.prompt, count_tokens=lambda t: len(tok(t, add_special_tokens=False)["input_ids"]))
    records, stats = build_sft_records([follow_up, single], retriever, builder, tok, k=2, mode="hybrid",
                                       max_length=1024, max_prompt_tokens=900, max_history_turns=6,
                                       history_fraction=0.3)
    assert stats["multi_turn"] == 1 and stats["records"] == 2
    roles = [m["role"] for m in records[0]["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant"]  # history, question, gold answer
    assert records[0]["messages"][1]["content"] == "Which volcano in Sicily is very active?"
    assert records[0]["answer_in_contexts"]  # "Magma" retrieved: the volcano document, found through the history
    assert [m["role"] for m in records[1]["messages"]] == ["system", "user", "assistant"]
    plain, _ = build_sft_records([follow_up], retriever, builder, tok, k=2, mode="hybrid", max_length=1024)
    assert [m["role"] for m in plain[0]["messages"]] == ["system", "user", "assistant"]


def test_eval_questions_in_the_training_set_are_refused(setup, tmp_path):
    cfg = setup["cfg"]
    eval_set = write_qa(tmp_path / "eval.jsonl", [("what is  MATCHA?", "powder"), ("Unrelated?", "no")])
    leaky = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"qa_path": str(eval_set)})})
    with pytest.raises(FinetuneError, match=r"1 question\(s\) of finetune.train_path .* also in the eval set"):
        load_training_examples(leaky)
    missing = cfg.model_copy(update={"finetune": cfg.finetune.model_copy(update={"train_path": str(tmp_path / "x")})})
    with pytest.raises(FinetuneError, match="no such file"):
        load_training_examples(missing)


def test_quickstart_training_set_is_supported_by_the_corpus_and_apart_from_the_eval_set():
    quickstart = REPO_ROOT / "examples" / "quickstart"
    corpus = "\n".join(p.read_text(encoding="utf-8") for p in sorted((quickstart / "corpus").rglob("*")) if p.is_file())
    cfg = parse_config(
        {
            "corpus": {"sources": [{"kind": "directory", "path": str(quickstart / "corpus")}]},
            "embedding": {"model": "unused"},
            "eval": {"qa_path": str(quickstart / "qa.jsonl")},
            "finetune": {"train_path": str(quickstart / "train.jsonl")},
        }
    )
    examples = load_training_examples(cfg)  # raises if a question is also an eval question
    assert len(examples) >= 40 and sum(e.lang == "ja" for e in examples) >= 5
    unsupported = [a for e in examples for a in e.answers if a not in corpus]
    assert unsupported == []
