"""The mutation matrix: change one thing a stage reads, run the pipeline again, and check which cached tasks ran.

The whole `llmops_pipeline` runs in-process on real flytekit local execution with Flyte's local cache (in a
temporary folder). Every cached task that actually executes is recorded; each mutation must re-run exactly the
tasks that read what changed (zero stale outputs), re-use all the others (no needless work), and the release that
the run registers must show the change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from llmops.release.registry import ReleaseRegistry
from tests.conftest import MINILM, REPO_ROOT, write_corpus
from tests.helpers import CORPUS
from tests.workflows.test_pipeline_e2e import EVAL, TRAIN, _jsonl

pytestmark = pytest.mark.slow

INDEX = {"chunk", "plan_shards", "embed_shard", "build_index", "evaluate_retrieval"}
TUNED = {"finetune", "evaluate_model:finetuned"}
EVALS = {"evaluate_model:base", "evaluate_model:finetuned"}
EVERYTHING = INDEX | TUNED | EVALS
AFTER_INDEX = {"build_index", "evaluate_retrieval"} | TUNED | EVALS


class Ran:
    """Records the cached tasks that executed (a cache hit never reaches `execute`)."""

    CACHED = {"chunk", "plan_shards", "embed_shard", "build_index", "evaluate_retrieval", "finetune", "evaluate_model"}

    def __init__(self, monkeypatch):
        from flytekit.core.python_function_task import PythonFunctionTask

        self.names: set[str] = set()
        original = PythonFunctionTask.execute
        ran = self

        def execute(task, **kwargs):
            name = task.name.rsplit(".", 1)[-1]
            if name in self.CACHED:
                ran.names.add(f"{name}:{kwargs['label']}" if name == "evaluate_model" else name)
            return original(task, **kwargs)

        monkeypatch.setattr(PythonFunctionTask, "execute", execute)

    def take(self) -> set[str]:
        out, self.names = self.names, set()
        return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Inputs the test may change: corpus, QA and training files, a copy of the LLM, of the embedding model and
    of the repository's code (stage code digests are read from it)."""
    from llmops.provenance.model_paths import resolve_model_path

    tmp = tmp_path_factory.mktemp("matrix")
    shutil.copytree(REPO_ROOT / "examples" / "tiny-llm", tmp / "llm")
    shutil.copytree(resolve_model_path(MINILM), tmp / "minilm")
    code = tmp / "code"
    for package in ("llmops", "eval", "tasks", "workflows", "serving"):
        shutil.copytree(REPO_ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    config = {
        "corpus": {"sources": [{"kind": "directory", "path": str(write_corpus(tmp / "corpus", CORPUS))}]},
        "chunking": {"max_tokens": 64, "overlap_tokens": 8},
        "embedding": {"model": str(tmp / "minilm"), "shard_size": 4},
        "retrieval": {"k": 3},
        "eval": {"qa_path": str(_jsonl(tmp / "qa.jsonl", EVAL)), "metrics": {"ragas": {"enabled": False}}},
        "artifacts": {"root": str(tmp / "artifacts")},
        "llm": {"model": str(tmp / "llm"), "backend": "transformers", "max_model_len": 1024, "max_lora_rank": 8,
                "device": "cpu", "dtype": "float32", "max_concurrency": 4},
        "sampling": {"max_tokens": 4},
        "finetune": {"enabled": True, "train_path": str(_jsonl(tmp / "train.jsonl", TRAIN)), "max_steps": 1,
                     "batch_size": 2, "max_length": 512, "validation_fraction": 0.34,
                     "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
        "gates": {"rules": [{"metric": "retrieval.recall@5", "floor": 0.0}]},
    }
    return tmp, config


@pytest.fixture()
def pipeline(workspace, monkeypatch, tmp_path_factory):
    """Runs llmops_pipeline in-process with its own Flyte local cache; returns (tasks that ran, release)."""
    from flytekit.core import local_cache
    from flytekit.types.file import FlyteFile

    import llmops.provenance.code_version as code_version
    from workflows.pipeline import llmops_pipeline

    tmp, _ = workspace
    monkeypatch.setattr(local_cache, "CACHE_LOCATION", str(tmp / "flyte-cache"))
    monkeypatch.setattr(local_cache.LocalTaskCache, "_initialized", False)
    monkeypatch.setattr(code_version, "ROOT", tmp / "code")
    monkeypatch.setenv("LLMOPS_CACHE_DIR", str(tmp / "digests"))
    ran = Ran(monkeypatch)

    def run(config: dict):
        code_version.code_closure.cache_clear()
        path = tmp / "config.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True))
        out = llmops_pipeline(config=FlyteFile(str(path)))
        release = ReleaseRegistry(str(tmp / "artifacts" / "registry")).get(out.release)
        return ran.take(), release

    return run


def _manifest(uri: str) -> dict:
    return json.loads((Path(uri) / "adapter_manifest.json").read_text())


def _index_manifest(uri: str) -> dict:
    return json.loads((Path(uri) / "manifest.json").read_text())


def _edit_weight(folder: Path, name: str = "model.safetensors") -> None:
    """Change one weight of a model in place: a real change of model content that still loads."""
    from safetensors.numpy import load_file, save_file

    tensors = load_file(folder / name)
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] + 1e-3
    save_file(tensors, folder / name, metadata={"format": "pt"})


def _edit_code(tmp: Path, rel: str, line: str) -> None:
    with open(tmp / "code" / rel, "a", encoding="utf-8") as f:
        f.write(f"\n{line}\n")


def test_each_change_reruns_exactly_the_tasks_that_read_it(workspace, pipeline, monkeypatch):
    tmp, base = workspace
    ran, first = pipeline(base)
    assert ran == EVERYTHING
    ran, again = pipeline(base)
    assert ran == set() and again.release == first.release, "an unchanged re-run must be served from the cache"

    observed: dict[str, tuple[set, set]] = {}

    def check(name: str, config: dict, expected: set[str]):
        ran, release = pipeline(config)
        observed[name] = (expected, ran)
        assert ran == expected, f"{name}: expected {sorted(expected)}, ran {sorted(ran)}"
        return release

    # Training data: 6 -> 4 pairs. The adapter is re-trained on the new file, and the release carries it.
    _jsonl(tmp / "train.jsonl", TRAIN[:4])
    rel = check("train data", base, TUNED)
    assert _manifest(rel.adapter_uri)["data"]["questions"] == 4 and rel.adapter_version != first.adapter_version

    # The eval QA file: one question fewer. The index tunes its fusion weight on it, so the index is new.
    _jsonl(tmp / "qa.jsonl", EVAL[:3])
    rel = check("eval QA file", base, AFTER_INDEX)
    assert json.loads(Path(rel.eval_report_uri).read_text())["questions"] <= 3

    # One corpus file.
    (tmp / "corpus" / "tea.txt").write_text(CORPUS["tea.txt"] + "\n\nSencha is steamed green tea.", encoding="utf-8")
    before = rel
    rel = check("one corpus file", base, EVERYTHING)
    assert rel.index_version != before.index_version

    # A weight of the local LLM.
    _edit_weight(tmp / "llm")
    before = rel
    rel = check("a local LLM model file", base, TUNED | EVALS)
    assert _manifest(rel.adapter_uri)["base_model"]["digest"] != _manifest(before.adapter_uri)["base_model"]["digest"]

    # A weight of the local embedding model.
    _edit_weight(tmp / "minilm")
    before = rel
    rel = check("a local embedding model file", base, EVERYTHING)
    assert _index_manifest(rel.index_uri)["embedding"]["model_digest"] != (
        _index_manifest(before.index_uri)["embedding"]["model_digest"]
    )

    # A config field of each stage.
    cfg = {**base, "chunking": {**base["chunking"], "overlap_tokens": 4}}
    rel = check("chunking.overlap_tokens", cfg, EVERYTHING)
    assert _index_manifest(rel.index_uri)["chunking"]["overlap_tokens"] == 4

    cfg = {**cfg, "retrieval": {**base["retrieval"], "k": 2}}
    rel = check("retrieval.k", cfg, AFTER_INDEX)
    assert _index_manifest(rel.index_uri)["retrieval"]["k"] == 2

    # The share of the eval set the fusion weight is tuned on: the index is re-tuned and its version (which covers
    # the share) changes, so everything after it re-runs; the evaluations read the share from the index's manifest.
    cfg = {**cfg, "eval": {**base["eval"], "calibration_fraction": 0.2}}
    rel = check("eval.calibration_fraction", cfg, AFTER_INDEX)
    assert _index_manifest(rel.index_uri)["retrieval"]["fusion"]["calibration_fraction"] == 0.2

    cfg = {**cfg, "finetune": {**base["finetune"], "learning_rate": 5e-4}}
    rel = check("finetune.learning_rate", cfg, TUNED)
    assert _manifest(rel.adapter_uri)["hyperparameters"]["learning_rate"] == 5e-4

    cfg = {**cfg, "eval": {**cfg["eval"], "max_samples": 2}}
    rel = check("eval.max_samples", cfg, EVALS)
    assert json.loads(Path(rel.eval_report_uri).read_text())["questions"] == 2

    cfg = {**cfg, "sampling": {**base["sampling"], "max_tokens": 3}}
    rel = check("sampling.max_tokens", cfg, TUNED | EVALS)
    assert json.loads(Path(rel.eval_report_uri).read_text())["config"]["sampling"]["max_tokens"] == 3

    off = {**cfg, "finetune": {**cfg["finetune"], "enabled": False}}
    rel = check("finetune.enabled: false", off, set())
    assert rel.adapter_version is None

    # Code: the fine-tune stage's module; a Deck in tasks/; a library version.
    _edit_code(tmp, "llmops/finetune/stage.py", "# a change to the fine-tune stage")
    rel = check("the code of the fine-tune stage", cfg, TUNED)

    _edit_code(tmp, "tasks/decks/indexing.py", "DECK_NOTE = 'a new Deck string'")
    _edit_code(tmp, "tasks/decks/evaluation.py", "DECK_NOTE = 'a new Deck string'")
    check("a Deck string", cfg, set())

    import llmops.provenance.code_version as code_version

    real = code_version._version
    monkeypatch.setattr(code_version, "_version", lambda d: "0.0.0-test" if d == "peft" else real(d))
    check("a library version (peft)", cfg, TUNED | EVALS)

    print("\n| change | expected to re-run | re-ran |\n|---|---|---|")  # the table for notes (pytest -s)
    for name, (expected, ran) in observed.items():
        print(f"| {name} | {', '.join(sorted(expected)) or '-'} | {', '.join(sorted(ran)) or '-'} |")
