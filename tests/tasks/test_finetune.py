"""The fine-tune deck: adapter card with hyperparameters, training data and the loss curves; renders in Chromium."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from llmops.index.artifact import FileEntry
from llmops.finetune.manifest import ADAPTER_SCHEMA_VERSION, AdapterManifest
from llmops.htmlkit import page
from tasks.decks import finetune_deck
from scripts.chromium import dom_text, find_chromium, nonwhite_fraction, render_to_png

TRAIN = [[s, 6.6 - 0.03 * s] for s in range(1, 21)]
VALIDATION = [[0, 6.62], [10, 6.3], [20, 6.1]]


def manifest() -> AdapterManifest:
    return AdapterManifest(
        schema_version=ADAPTER_SCHEMA_VERSION,
        version="0123456789abcdef",
        created_at="2026-11-22T00:00:00+00:00",
        base_model={"model": "Qwen/Qwen2.5-0.5B-Instruct", "revision": None, "digest": "b" * 64},
        data={
            "train_path": "examples/quickstart/train.jsonl", "digest": "d" * 64, "uri": "/a/work/sft/dddd.jsonl",
            "questions": 43, "records": 42, "skipped_no_answer": 0, "skipped_too_long": 1, "contexts_kept": 200,
            "contexts_dropped_for_length": 10, "answer_in_contexts": 39, "max_tokens": 900, "mean_tokens": 612.5,
            "train": 38, "validation": 4, "index_version": "i" * 16,
        },
        index_version="i" * 16,
        hyperparameters={
            "validation_fraction": 0.1, "learning_rate": 2e-4, "epochs": 1.0, "max_steps": 20, "batch_size": 4,
            "gradient_accumulation_steps": 1, "max_length": 1024, "packing": False, "quantization": "none", "seed": 0,
            "precision": "bf16", "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
            "retrieval": {"k": 5, "mode": "hybrid"}, "max_prompt_tokens": 3840,
        },
        lora={"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"], "max_lora_rank": 16},
        training={
            "train_loss": TRAIN, "validation_loss": VALIDATION, "final_train_loss": TRAIN[-1][1],
            "initial_validation_loss": 6.62, "final_validation_loss": 6.1, "steps": 20, "epochs": 2.1,
            "seconds": 12.5, "device": "cuda (NVIDIA L4)", "precision": "bf16",
            "loss_on": "assistant (completion) tokens only",
        },
        files={"adapter_model.safetensors": FileEntry(sha256="e" * 64, bytes=123456)},
        libraries={"peft": "0.21.2"},
        lineage={"git_sha": "abc", "code_version": "c0de", "execution_id": None},
    )


def rows(deck: str) -> dict[str, str]:
    cells = re.findall(r'<th scope="row">(.*?)</th><td[^>]*>(.*?)</td>', deck, re.S)
    return {html.unescape(k): html.unescape(re.sub(r"<[^>]+>", "", v)).strip() for k, v in cells}


def test_deck_shows_what_was_trained_how_and_the_loss():
    deck = finetune_deck(manifest())
    r = rows(deck)
    assert r["base model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert r["records (train / validation)"] == "38 / 4"
    assert r["answer found in retrieved contexts"] == "39 of 42"
    assert r["LoRA rank / alpha / dropout"] == "8 / 16 / 0.05"
    assert r["retrieval k / mode"] == "5 / hybrid"
    assert r["initial validation loss"] == "6.62" and r["final validation loss"] == "6.1"
    polylines = re.findall(r'<polyline points="([^"]+)"', deck)
    assert [len(p.split()) for p in polylines] == [len(TRAIN), len(VALIDATION)]
    assert "reused" not in r["adapter version"]
    assert "reused" in rows(finetune_deck(manifest(), reused=True))["adapter version"]


@pytest.mark.chromium
@pytest.mark.skipif(find_chromium() is None, reason="Chromium not found: apt-get install -y chromium fonts-noto-cjk")
def test_deck_renders_in_chromium(tmp_path: Path):
    report = tmp_path / "finetune.html"
    report.write_text(page("Fine-tune", finetune_deck(manifest())), encoding="utf-8")
    render_to_png(report, tmp_path / "finetune.png")
    assert 0.02 < nonwhite_fraction(tmp_path / "finetune.png") < 0.9
    dom = dom_text(report)
    for heading in ("Fine-tune", "Loss", "Training data", "Hyperparameters", "Adapter files"):
        assert f"<h2>{heading}</h2>" in dom
    assert dom.count("<polyline") == 2
