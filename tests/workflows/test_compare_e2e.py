"""End to end: `pyflyte run workflows/compare.py compare_models` on the quickstart corpus with two variants (two
prompt templates on the tiny model, transformers backend), as a user runs it; then `llmops compare` on the stored
comparison and `llmops compare export-config` turning a variant into a pipeline config."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from eval.comparison.store import load_comparison
from llmops.config import load_config
from tests.conftest import MINILM, REPO_ROOT

QUICKSTART = REPO_ROOT / "examples" / "quickstart"
TERSE = {"fallback_language": "en", "templates": {"en": {"system": "Reply in three words.",
                                                          "user": "{contexts}\n\nQ: {question}\nA:"}}}


def _config(tmp: Path) -> dict:
    return {
        "corpus": {"sources": [{"kind": "directory", "path": str(QUICKSTART / "corpus")}]},
        "chunking": {"max_tokens": 128, "overlap_tokens": 16},
        "embedding": {"model": MINILM, "shard_size": 64},
        "retrieval": {"k": 3, "fusion": {"dense_weight": 0.5}},
        "answerability": {"threshold": 0.3},  # fixed: no calibration split, and some questions are refused
        "eval": {"qa_path": str(QUICKSTART / "qa.jsonl"), "max_samples": 8,
                 "metrics": {"bleu": False, "rouge": True, "ragas": {"enabled": False}}},
        "artifacts": {"root": str(tmp / "artifacts")},
        "llm": {"model": str(REPO_ROOT / "examples/tiny-llm"), "backend": "transformers", "max_model_len": 1024,
                "max_lora_rank": 8, "device": "cpu", "dtype": "float32"},
        "sampling": {"max_tokens": 8},
        "finetune": {"enabled": False},
        "compare": {
            "variants": {
                "prompts": {"cite": {}, "terse": TERSE},
                "models": {"tiny": {"kind": "release",
                                    "price": {"prompt_per_1k": 0.5, "completion_per_1k": 1.5}}},
            },
            "max_concurrency": 2,
        },
    }


def _run(args: list[str], env: dict) -> str:
    proc = subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    return out


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(_config(tmp), allow_unicode=True))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FLYTE_SDK_LOGGING_LEVEL": "20", "PYTHONPATH": str(REPO_ROOT),
           "HOME": str(tmp / "home"), "TMPDIR": str(tmp_path_factory.mktemp("flyte-tmp"))}
    bin_dir = Path(sys.executable).parent
    out = _run([str(bin_dir / "pyflyte"), "run", "workflows/compare.py", "compare_models", "--config", str(config)],
               env)
    match = re.search(r"comparison='([^']+comparison\.json)'", out)
    assert match, out[-3000:]
    return config, Path(match[1]), env, bin_dir, out


def test_compare_workflow_evaluates_each_variant_with_the_eval_stage(compared):
    config, uri, env, _, log = compared
    assert uri.parent.parent.name == "comparisons"
    report = load_comparison(str(uri))
    assert [v.name for v in report.variants] == ["cite/tiny/config", "terse/tiny/config"]
    assert report.questions == 8
    for v in report.variants:
        stored = json.loads(Path(v.report_uri).read_text())
        # the eval stage's own report, with the variant's prompt in the config it read
        assert stored["kind"] == "rag_eval" and stored["index_version"] == report.index_version
        assert stored["config"]["prompt"]["templates"]["en"]["system"].startswith(
            "Reply in three" if v.prompt == "terse" else "You answer questions")
        assert Path(v.samples_uri).is_file()
        # priced: cost is the tokens at the configured price per 1k
        assert v.cost == pytest.approx(v.prompt_tokens / 1000 * 0.5 + v.completion_tokens / 1000 * 1.5)
        assert v.prompt_tokens > 0 and v.latency_p95_s >= v.latency_p50_s > 0
    # The terse prompt is shorter: fewer prompt tokens, and so the cheaper (best) cost column.
    cite, terse = report.variants
    assert terse.prompt_tokens < cite.prompt_tokens
    cost = next(c for c in report.columns if c.name == "cost")
    assert cost.best == ("terse/tiny/config",) and not cost.higher_is_better
    rouge = next(c for c in report.columns if c.name == "rouge_l")
    assert rouge.higher_is_better
    assert set(rouge.best) <= {v.name for v in report.variants}
    for q in report.per_question:
        assert set(q.answers) == {v.name for v in report.variants}
        # same questions, same index: the same retrieved sources for both prompts (unless one refused)
        a, b = q.answers.values()
        if a.refusal_kind is None and b.refusal_kind is None:
            assert a.sources == b.sources
    # The comparison Deck was published by compare_report.
    decks = [p for p in Path(env["TMPDIR"]).rglob("deck.html") if "Per question" in p.read_text()]
    assert decks, "no comparison deck"
    assert "cite/tiny/config" in decks[0].read_text()


def test_llmops_compare_prints_the_table_and_exports_a_variant(compared, tmp_path):
    config, uri, env, bin_dir, _ = compared
    report = load_comparison(str(uri))
    out = _run([str(bin_dir / "llmops"), "compare", "--comparison", report.id, "--config", str(config)],
               {**env, "COLUMNS": "200"})
    assert "cite/tiny/config" in out and "terse/tiny/config" in out and "\u2605" in out
    assert "disagree" in out
    # The same table from the two stored reports directly.
    out2 = _run([str(bin_dir / "llmops"), "compare", *(str(Path(v.report_uri).parent) for v in report.variants)],
                {**env, "COLUMNS": "200"})
    assert "rouge_l" in out2 and "\u2605" in out2

    exported = tmp_path / "candidate.yaml"
    _run([str(bin_dir / "llmops"), "compare-export", "terse/tiny/config", "--config", str(config),
          "--out", str(exported)], env)
    cfg = load_config(exported)
    assert cfg.compare is None
    assert cfg.prompt.templates["en"].system == "Reply in three words."
    assert cfg.llm.model == str(REPO_ROOT / "examples/tiny-llm")


@pytest.mark.slow
def test_a_real_vllm_server_and_the_transformers_backend_side_by_side(vllm_server, varied_llm_dir, tmp_path):
    """One variant behind a real vLLM CPU server (an OpenAI-compatible endpoint), one in-process with transformers:
    the same model, greedy, fp32 on both, through the same eval stage on the same questions."""
    config = _config(tmp_path)
    config["compare"]["variants"] = {"models": {
        "vllm": {"kind": "openai", "base_url": vllm_server.base_url, "model": "tiny",
                 "tokenizer": str(varied_llm_dir), "max_model_len": 512,
                 "price": {"prompt_per_1k": 0.01, "completion_per_1k": 0.02}},
        "hf": {"kind": "release", "llm": {"model": str(varied_llm_dir), "backend": "transformers",
                                          "max_model_len": 512, "device": "cpu", "dtype": "float32"}},
    }}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))  # the grid keeps its order
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT), "HOME": str(tmp_path / "home"),
           "TMPDIR": str(tmp_path)}
    pyflyte = str(Path(sys.executable).parent / "pyflyte")
    out = _run([pyflyte, "run", "workflows/compare.py", "compare_models", "--config", str(path)], env)
    report = load_comparison(re.search(r"comparison='([^']+comparison\.json)'", out)[1])
    vllm, hf = report.variants
    assert (vllm.name, vllm.model_name, vllm.backend, vllm.endpoint) == (
        "config/vllm/config", "tiny", "vllm", vllm_server.base_url.rsplit("/v1", 1)[0])
    assert hf.backend == "transformers" and hf.endpoint == "self-hosted" and hf.cost is None
    assert vllm.cost is not None and vllm.completion_tokens > 0 and hf.completion_tokens > 0
    # same prompts (same tokenizer), so the same prompt token counts; greedy fp32 answers mostly agree
    assert vllm.prompt_tokens == hf.prompt_tokens
    same = sum(q.answers[vllm.name].answer == q.answers[hf.name].answer for q in report.per_question)
    assert same >= report.questions // 2, [(q.answers[vllm.name].answer, q.answers[hf.name].answer)
                                           for q in report.per_question]
