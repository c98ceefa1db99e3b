"""End to end: `pyflyte run workflows/index.py index_corpus` on a small corpus, as a user runs it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmops.index.artifact import verify_artifact
from llmops.index.retriever import Retriever
from scripts.chromium import dom_text, find_chromium
from tests.conftest import MINILM, REPO_ROOT, write_corpus
from tests.helpers import CORPUS

pytestmark = pytest.mark.slow


def _pyflyte_run(config: Path, env: dict) -> tuple[dict, str]:
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("pyflyte")), "run", "workflows/index.py", "index_corpus",
         "--config", str(config)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    match = re.search(r"index=(\S+), version='(\w+)', retrieval_report=(\S+)\)", out)
    assert match, out[-2000:]
    return {"index": match[1], "version": match[2], "report": match[3]}, out


@pytest.fixture(scope="module")
def run_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    corpus = write_corpus(tmp / "corpus", {**CORPUS, "blob.bin": "x\x00y", "empty.txt": "  "})
    qa = tmp / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in [
        {"question": "Which volcano in Sicily is very active?", "answers": ["Mount Etna"]},
        {"question": "When did the first Shinkansen line open?", "answers": ["1964"]},
        {"question": "What is matcha made of?", "answers": ["green tea leaves"]},
        {"question": "富士山の標高は何メートルか", "answers": ["3776メートル"]},
    ]) + "\n")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump({
        "corpus": {"sources": [{"kind": "directory", "path": str(corpus)}]},
        "chunking": {"max_tokens": 64, "overlap_tokens": 8},
        "embedding": {"model": MINILM, "shard_size": 3},
        "eval": {"qa_path": str(qa)},
        "artifacts": {"root": str(tmp / "artifacts")},
    }))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "FLYTE_SDK_LOGGING_LEVEL": "20",
           "HOME": str(tmp / "home"), "TMPDIR": str(tmp_path_factory.mktemp("flyte-tmp"))}
    return config, env, tmp


def test_index_corpus_builds_a_verified_index_and_is_cached_on_rerun(run_env):
    config, env, tmp = run_env
    first, log = _pyflyte_run(config, env)
    manifest = verify_artifact(first["index"])
    assert manifest.counts.skipped == 2  # the binary and the empty file, reported not fatal
    assert Path(first["index"]).is_relative_to(tmp / "artifacts")  # in the store, not in Flyte's scratch space
    report = json.loads(Path(first["report"]).read_text())
    assert set(report["modes"]) == {"dense", "lexical", "hybrid"}
    assert Retriever.load(first["index"]).search("Shinkansen opening year", 1)[0].source.endswith("rail.md")

    # Decks: each stage wrote one, and the run summary renders with its sections.
    decks = sorted(Path(env["TMPDIR"]).rglob("deck.html"))
    _check_decks(decks)
    # A first run with an empty embedding cache embeds every chunk itself.
    assert _embedding_row(decks) == f"{manifest.counts.chunks} / 0 / 0"

    # Second run: same version, and the cached tasks are not executed again.
    second, log2 = _pyflyte_run(config, env)
    assert second == first
    assert "chunk task creates flyte deck" not in log2 and "build_index task creates flyte deck" not in log2
    assert "ingest task creates flyte deck" in log2  # ingest always re-reads the corpus

    # Third run, another BM25 parameter: a new index version over the same chunks. The embed tasks run again,
    # find their shard files, and the decks say this run embedded nothing (the shard files are reused).
    changed = tmp / "config-k1.yaml"
    changed.write_text(yaml.safe_dump(yaml.safe_load(config.read_text()) | {"lexical": {"k1": 1.2}}))
    third, _ = _pyflyte_run(changed, env)
    assert third["version"] != first["version"]
    new_decks = sorted(set(Path(env["TMPDIR"]).rglob("deck.html")) - set(decks))
    assert _embedding_row(new_decks) == f"0 / 0 / {manifest.counts.chunks}"


def _embedding_row(paths: list[Path]) -> str:
    """The index deck's row on embedding work, from the run summary deck among `paths`."""
    label = "vectors: embedded in this run / from the embedding cache / reused shard files"
    summary = next(p.read_text() for p in paths if "Retrieval quality" in p.read_text())
    match = re.search(re.escape(label) + r"</th><td[^>]*>(.*?)</td>", summary, re.S)
    assert match, f"no {label!r} row in the run summary deck"
    return match[1].strip()


def _check_decks(paths: list[Path]):
    assert len(paths) == 4  # ingest, chunk, build_index, evaluate_retrieval
    summaries = [p for p in paths if "Retrieval quality" in p.read_text()]
    assert len(summaries) == 1
    html = summaries[0].read_text()
    for heading in ("Index artifact", "Chunks", "Skipped inputs (2)", "Timings"):
        assert heading in html
    if find_chromium() is None:
        pytest.skip("chromium not installed: decks checked as HTML only")
    text = dom_text(summaries[0])
    assert "Retrieval quality" in text and "blob.bin" in text
