from pathlib import Path

import pytest
import yaml

from llmops.config import load_config, parse_config
from llmops.errors import ConfigError
from tests.conftest import REPO_ROOT

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_validates(path: Path):
    cfg = load_config(path)
    assert cfg.corpus.sources
    header = path.read_text().splitlines()[:12]
    assert any("pyflyte run" in line for line in header), f"{path.name} must say in its header how to run it"


def _minimal(**overrides) -> dict:
    data = {"corpus": {"sources": [{"kind": "directory", "path": "docs"}]}, "embedding": {"model": "m"}}
    data.update(overrides)
    return data


def test_all_problems_reported_at_once_with_field_names_and_allowed_values():
    data = _minimal(
        retrieval={"mode": "semantic", "k": 0},
        chunking={"max_tokens": 100, "overlap_tokens": 10, "overlpa": 3},
    )
    with pytest.raises(ConfigError) as e:
        parse_config(data, "x.yaml")
    msg = str(e.value)
    assert "x.yaml" in msg
    assert "retrieval.mode" in msg and "'dense', 'lexical' or 'hybrid'" in msg
    assert "retrieval.k" in msg
    assert "chunking.overlpa: unknown field" in msg
    assert len(e.value.problems) == 3


def test_unknown_source_kind_lists_allowed_kinds():
    with pytest.raises(ConfigError) as e:
        parse_config(_minimal(corpus={"sources": [{"kind": "ftp", "path": "x"}]}))
    assert "unknown source kind 'ftp'" in str(e.value)
    assert "directory, hf_dataset, jsonl, squad" in str(e.value)


def test_cross_field_rules():
    with pytest.raises(ConfigError, match="overlap_tokens"):
        parse_config(_minimal(chunking={"max_tokens": 64, "overlap_tokens": 64}))
    with pytest.raises(ConfigError, match="needs lexical.enabled"):
        parse_config(_minimal(lexical={"enabled": False}))
    with pytest.raises(ConfigError, match="profile: custom"):
        parse_config(_minimal(embedding={"model": "m", "profile": "custom"}))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("corpus: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_resolved_makes_local_paths_absolute_and_keeps_uris(tmp_path):
    data = _minimal(
        corpus={"sources": [{"kind": "directory", "path": "docs"}, {"kind": "jsonl", "path": "s3://b/x.jsonl"}]},
        artifacts={"root": "out"},
        monitoring={"request_log": {"path": "logs/requests"}},
        serving={"audit_log": "logs/audit.jsonl"},
    )
    cfg = parse_config(data).resolved(tmp_path)
    assert cfg.corpus.sources[0].path == str(tmp_path / "docs")
    assert cfg.corpus.sources[1].path == "s3://b/x.jsonl"
    assert cfg.artifacts.root == str(tmp_path / "out")
    # written by serving, read by the monitor task and the CLI: one folder whatever the process's cwd
    assert cfg.monitoring.request_log.path == str(tmp_path / "logs/requests")
    assert cfg.serving.audit_log == str(tmp_path / "logs/audit.jsonl")
    remote = parse_config(_minimal(monitoring={"request_log": {"path": "s3://b/requests"}})).resolved(tmp_path)
    assert remote.monitoring.request_log.path == "s3://b/requests"
    with pytest.raises(ConfigError, match=r"monitoring.request_log.path: Value error, is empty: give a folder"):
        parse_config(_minimal(monitoring={"request_log": {"path": " "}}))
    assert cfg.embedding.model == "m"  # a Hub id stays a Hub id


def test_config_round_trips_through_json():
    cfg = load_config(REPO_ROOT / "configs/quickstart.yaml")
    assert type(cfg).model_validate_json(cfg.model_dump_json()) == cfg
    yaml.safe_dump(cfg.model_dump(mode="json"))
