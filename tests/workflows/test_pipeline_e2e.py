"""End to end: `pyflyte run workflows/pipeline.py llmops_pipeline` with the tiny LLM, as a user runs it.

index -> LoRA fine-tune -> evaluate base and fine-tuned -> gates -> promote; then a re-run served from cache, and
a run with fine-tuning off that skips the branch and evaluates the base model.
"""

import json
import os
from pathlib import Path

import pytest
import yaml

from llmops.release.registry import ReleaseRegistry
from scripts.chromium import dom_text, find_chromium
from tests.conftest import MINILM, REPO_ROOT, write_corpus
from tests.helpers import CORPUS, pyflyte_pipeline

pytestmark = pytest.mark.slow

EVAL = [
    {"question": "Which volcano in Sicily is very active?", "answers": ["Mount Etna"]},
    {"question": "When did the first Shinkansen line open?", "answers": ["1964"]},
    {"question": "What is matcha made of?", "answers": ["green tea leaves"]},
    {"question": "富士山の標高は何メートルか", "answers": ["3776メートル"]},
]
TRAIN = [
    {"question": "Where is Mount Etna?", "answers": ["Sicily"]},
    {"question": "Between which cities did the first Shinkansen line run?", "answers": ["Tokyo and Osaka"]},
    {"question": "What plant is green tea made from?", "answers": ["Camellia sinensis"]},
    {"question": "富士山はいつ世界文化遺産に登録されたか", "answers": ["2013年"]},
    {"question": "寿司は何と魚介類を組み合わせた料理か", "answers": ["酢飯"]},
    {"question": "What rises through volcanic vents?", "answers": ["Magma"]},
]


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    corpus = write_corpus(tmp / "corpus", CORPUS)
    config = {
        "corpus": {"sources": [{"kind": "directory", "path": str(corpus)}]},
        "chunking": {"max_tokens": 64, "overlap_tokens": 8},
        "embedding": {"model": MINILM, "shard_size": 4},
        "retrieval": {"k": 3, "fusion": {"dense_weight": 0.5}},
        "answerability": {"threshold": 0.0},  # fixed threshold: no calibration split
        "eval": {"qa_path": str(_jsonl(tmp / "qa.jsonl", EVAL)),
                 "metrics": {"bertscore": {"model": MINILM, "num_layers": 6}}},
        "artifacts": {"root": str(tmp / "artifacts")},
        "llm": {"model": str(REPO_ROOT / "examples/tiny-llm"), "backend": "transformers", "max_model_len": 1024,
                "max_lora_rank": 8, "device": "cpu", "dtype": "float32"},
        "sampling": {"max_tokens": 8},
        "finetune": {"enabled": True, "train_path": str(_jsonl(tmp / "train.jsonl", TRAIN)), "max_steps": 3,
                     "batch_size": 2, "max_length": 512, "validation_fraction": 0.34,
                     "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
        "gates": {"rules": [{"metric": "retrieval.recall@5", "floor": 0.5}, {"metric": "rouge_l", "max_drop": 0.5}]},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FLYTE_SDK_LOGGING_LEVEL": "20",
           "HOME": str(tmp / "home"), "TMPDIR": str(tmp_path_factory.mktemp("flyte-tmp"))}
    return path, config, env, tmp


def test_pipeline_finetunes_evaluates_gates_promotes_and_reruns_from_cache(run_env):
    path, config, env, tmp = run_env
    first, log = pyflyte_pipeline(path, env)
    assert first["passed"]
    decision = json.loads(Path(first["decision"]).read_text())
    assert decision["candidate"] == "finetuned" and set(decision["compared"]) == {"base", "finetuned"}
    assert "no baseline" in decision["verdict"]["gates"][1]["reason"]  # first release: floors only
    report = json.loads(Path(first["report"]).read_text())
    assert report["model"]["adapter_version"] and Path(report["model"]["adapter_uri"]).is_dir()
    assert Path(first["report"]).with_name("samples.parquet").is_file()

    registry = ReleaseRegistry(str(tmp / "artifacts" / "registry"))
    production = registry.resolve("production")
    assert production.release == first["release"] and production.adapter_version == report["model"]["adapter_version"]

    decks = sorted(Path(env["TMPDIR"]).rglob("deck.html"))
    _check_decks(decks)

    # Re-run: the cached fine-tune and evaluations are not executed again; the release is the same one, and the
    # gates now compare against it as the production baseline.
    second, log2 = pyflyte_pipeline(path, env)
    assert second["release"] == first["release"] and second["passed"]
    assert "finetune task creates flyte deck" not in log2 and "evaluate_model task creates flyte deck" not in log2
    decision2 = json.loads(Path(second["decision"]).read_text())
    assert decision2["verdict"]["baseline_source"] == production.eval_report_uri
    assert len(registry.history("production")) == 1  # nothing moved

    # Fine-tuning off: the branch is skipped and the base model is the candidate (its evaluation is cached).
    off = tmp / "config-off.yaml"
    off.write_text(yaml.safe_dump({**config, "finetune": {**config["finetune"], "enabled": False}},
                                  allow_unicode=True))
    third, log3 = pyflyte_pipeline(off, env)
    assert "finetune task creates flyte deck" not in log3
    assert json.loads(Path(third["decision"]).read_text())["candidate"] == "base"


def _check_decks(paths: list[Path]) -> None:
    texts = {p: p.read_text() for p in paths}
    wanted = {
        "Fine-tune": "Loss",
        "Evaluation: base": "Samples, worst",
        "Evaluation: finetuned": "Samples, worst",
        "Promotion gates": "Champion vs challenger",
        "Release": "promoted to production",
    }
    found = {}
    for heading, detail in wanted.items():
        matches = [p for p, t in texts.items() if f"<h2>{heading}" in t and detail in t]
        assert matches, f"no deck with {heading!r} and {detail!r}"
        found[heading] = matches[0]
    if find_chromium() is None:
        pytest.skip("chromium not installed: decks checked as HTML only")
    for heading, path in found.items():
        text = dom_text(path)
        assert heading in text and "Traceback" not in text
