"""Stage keys: what each cached stage reads, by content (the whole pipeline's matrix is tests/workflows/
test_cache_keys.py; these are the pieces, fast)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tasks.cluster import cluster_config_problems
from llmops.provenance.code_version import code_closure
from llmops.config import PipelineConfig, parse_config
from llmops.provenance.content_digest import file_digest, ref_digest, tree_digest_cached
from llmops.errors import ConfigError
from llmops.provenance.stage_inputs import STAGES, UndeclaredConfigRead, config_record, stage_config, stage_key, stage_keys
from llmops.storage import tree_digest
from tests.conftest import MINILM, REPO_ROOT


@pytest.fixture()
def digest_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMOPS_CACHE_DIR", str(tmp_path / "digests"))


def _config(tmp_path, **over) -> PipelineConfig:
    train = tmp_path / "train.jsonl"
    if not train.exists():
        train.write_text('{"question": "q?", "answers": ["a"]}\n')
    data = {
        "corpus": {"sources": [{"kind": "directory", "path": str(tmp_path)}]},
        "embedding": {"model": MINILM},
        "llm": {"model": str(REPO_ROOT / "examples" / "tiny-llm"), "max_lora_rank": 8},
        "finetune": {"enabled": True, "train_path": str(train), "lora": {"r": 4}},
        **over,
    }
    return parse_config(data)


def test_a_stage_cannot_read_a_field_its_key_does_not_cover(tmp_path, digest_cache):
    view = stage_config(_config(tmp_path), "finetune")
    assert view.finetune.lora.r == 4 and view.llm.max_lora_rank == 8  # declared
    for read in (lambda: view.serving.port, lambda: view.chunking, lambda: bool(view.gates), lambda: view.eval.ks):
        with pytest.raises(UndeclaredConfigRead, match="llmops/provenance/stage_inputs.py"):
            x = read()
            x.anything  # a section read as a whole fails on first use
    assert view.eval.qa_path is None  # a declared sub-field of a section that is otherwise undeclared


def test_the_record_of_a_stage_config_holds_only_what_it_read(tmp_path, digest_cache):
    record = config_record(stage_config(_config(tmp_path), "evaluate"))
    assert set(record) == {
        "artifacts", "retrieval", "llm", "sampling", "prompt", "chat", "guardrails", "answerability", "eval"
    }
    assert set(record["eval"]) == {"max_samples", "metrics"}  # the calibration share is the index manifest's


def test_keys_follow_what_the_stage_reads_and_nothing_else(tmp_path, digest_cache):
    cfg = _config(tmp_path)
    keys = stage_keys(cfg)
    assert set(keys) == set(STAGES)
    lr = _config(tmp_path, finetune={**cfg.finetune.model_dump(), "learning_rate": 1e-5})
    changed = {s for s, k in stage_keys(lr).items() if k != keys[s]}
    assert changed == {"finetune"}
    serving = _config(tmp_path, serving={"port": 9000})
    assert stage_keys(serving) == keys  # no cached stage reads serving


def test_the_training_file_is_keyed_by_content_not_by_path(tmp_path, digest_cache):
    cfg = _config(tmp_path)
    before = stage_key(cfg, "finetune")
    (tmp_path / "train.jsonl").write_text('{"question": "other?", "answers": ["b"]}\n')
    assert stage_key(cfg, "finetune") != before
    assert stage_key(cfg, "evaluate") == stage_key(cfg, "evaluate")


def test_file_digests_are_remembered_by_stat_and_rehashed_on_change(tmp_path, digest_cache):
    f = tmp_path / "w.bin"
    f.write_bytes(b"a" * 1000)
    first = file_digest(f)
    assert file_digest(f) == first
    f.write_bytes(b"b" * 1000)  # same size; mtime (and content) change
    assert file_digest(f) != first
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / ".hidden").write_text("x")
    assert tree_digest_cached(model) == tree_digest(model)  # same digest as the index manifest's model_digest


def test_refs_name_their_field_when_they_cannot_be_digested(tmp_path, digest_cache, monkeypatch):
    with pytest.raises(ConfigError, match="finetune.train_path: no such file"):
        ref_digest(str(tmp_path / "missing.jsonl"), field="finetune.train_path")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ConfigError, match="llm.model: .*revision"):
        ref_digest("some-org/not-downloaded", field="llm.model")
    pinned = "0123456789abcdef0123456789abcdef01234567"
    assert ref_digest("some-org/model", field="llm.model", revision=pinned) == f"hub:some-org/model@{pinned}"
    assert ref_digest(MINILM, field="embedding.model").startswith("pkg:")


def test_every_field_that_names_a_file_or_model_is_keyed_by_content():
    marked, unmarked = set(), set()

    def walk(model, where):
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            path = where + name
            inner = [a for a in getattr(field.annotation, "__args__", ()) if hasattr(a, "model_fields")]
            if hasattr(field.annotation, "model_fields"):
                walk(field.annotation, path + ".")
            for sub in inner:
                walk(sub, path + ".")
            if extra.get("content"):
                marked.add(path)
            elif name in ("model", "train_path", "qa_path", "embedding_model", "baseline_report"):
                unmarked.add(path)

    walk(PipelineConfig, "")
    assert {"llm.model", "embedding.model", "finetune.train_path", "eval.qa_path"} <= marked
    names = {  # a model an endpoint serves, by its name there: not a file, and read by no cached stage
        "eval.metrics.ragas.judge.model", "guardrails.moderation.model", "serving.model_name",
        "serving.routes.endpoint.model",
    }
    assert unmarked <= names, unmarked


def test_code_closure_follows_imports_and_leaves_decks_out():
    finetune = code_closure(("llmops.finetune.stage",))
    assert "llmops/finetune/stage.py" in finetune.files and "llmops/rag/prompt.py" in finetune.files
    assert not any(f.startswith("tasks/") for f in finetune.files)  # Decks and task wrappers
    assert {"peft", "trl", "transformers"} <= set(finetune.libraries)
    assert "peft" not in code_closure(("llmops.index.build",)).libraries


def test_cluster_runs_need_an_object_store_and_the_secret_env_names(tmp_path):
    secret_env = {"llm.api_key_env": "LLMOPS_LLM_API_KEY"}
    cfg = _config(tmp_path)
    (problem,) = cluster_config_problems(cfg, secret_env)
    assert problem.startswith("artifacts.root:") and "s3://" in problem
    remote = _config(tmp_path, artifacts={"root": "s3://bucket/llmops"})
    assert cluster_config_problems(remote, secret_env) == []
    renamed = _config(tmp_path, artifacts={"root": "gs://b/x"}, llm={**cfg.llm.model_dump(), "api_key_env": "MY_KEY"})
    (problem,) = cluster_config_problems(renamed, secret_env)
    assert "llm.api_key_env" in problem and "LLMOPS_LLM_API_KEY" in problem


def test_git_sha_says_when_the_tree_was_dirty(tmp_path, monkeypatch):
    import llmops.index.artifact as artifact

    monkeypatch.delenv("LLMOPS_GIT_SHA", raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(cmd, cwd=repo, check=True, env=env)
    (repo / "f.py").write_text("x = 1\n")
    subprocess.run(["git", "add", "f.py"], cwd=repo, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "c"], cwd=repo, check=True, env=env)
    monkeypatch.setattr(artifact, "__file__", str(repo / "f.py"))
    clean = artifact.git_sha()
    assert len(clean) == 40
    (repo / "f.py").write_text("x = 2\n")
    assert artifact.git_sha() == f"{clean}-dirty"
    monkeypatch.setenv("LLMOPS_GIT_SHA", "abc")
    assert artifact.git_sha() == "abc"


def test_every_stage_keys_on_files_that_exist():
    from llmops.provenance.code_version import ROOT, code_closure
    from llmops.provenance.stage_inputs import STAGES, stage_code

    for name, stage in STAGES.items():
        files = stage_code(name).files
        for module in stage.modules:
            assert any(f.startswith(module.replace(".", "/")) for f in files), (name, module)
        assert all((ROOT / f).is_file() for f in files)
    with pytest.raises(ModuleNotFoundError, match="stage_inputs.py"):
        code_closure(("llmops.indexing",))  # an entry module that moved away
