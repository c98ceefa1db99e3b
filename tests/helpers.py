"""Build real index artifacts in tests through the same plain functions the Flyte tasks call."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from llmops.config import PipelineConfig, parse_config
from llmops.index.build import build_locally
from tests.conftest import MINILM, REPO_ROOT


def make_config(tmp_path: Path, corpus_dir: Path, **sections) -> PipelineConfig:
    data = {
        "corpus": {"sources": [{"kind": "directory", "path": str(corpus_dir)}]},
        "embedding": {"model": MINILM, "shard_size": 4},
        "chunking": {"max_tokens": 64, "overlap_tokens": 8},
        "artifacts": {"root": str(tmp_path / "artifacts")},
    }
    for name, value in sections.items():
        data[name] = {**data.get(name, {}), **value}
    return parse_config(data).resolved()


def build(cfg: PipelineConfig, run_id: str | None = None):
    """ingest -> chunk -> shards -> embed -> index, in-process, as one run (a fresh `run_id` unless given).
    Returns (BuildOutput, IngestOutput, ChunkOutput)."""
    return build_locally(cfg, run_id=run_id)


CORPUS = {
    "volcano.md": "# Volcanoes\n\nA volcano is a rupture in the crust of a planet. Magma rises through vents.\n\n"
    "Mount Etna in Sicily is one of the most active volcanoes in the world.",
    "tea.txt": "Green tea is made from Camellia sinensis leaves that have not undergone withering and oxidation.\n\n"
    "Matcha is a finely ground powder of green tea leaves from Japan.",
    "rail.md": "# Railways\n\nThe Shinkansen is a network of high-speed railway lines in Japan. "
    "The first line opened in 1964 between Tokyo and Osaka.",
    "fuji_ja.md": "# 富士山\n\n富士山は静岡県と山梨県にまたがる活火山である。標高は3776メートルで、日本最高峰の山である。"
    "\n\n2013年に世界文化遺産に登録された。",
    "sushi_ja.txt": "寿司は酢飯と魚介類を組み合わせた日本料理である。江戸時代に握り寿司が広まった。",
}


def pyflyte_pipeline(config: Path, env: dict) -> tuple[dict, str]:
    """`pyflyte run workflows/pipeline.py llmops_pipeline --config CONFIG`, as a user runs it: its outputs (report,
    decision, passed, release) and its log."""
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("pyflyte")), "run", "workflows/pipeline.py", "llmops_pipeline",
         "--config", str(config)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    match = re.search(
        r"candidate_report='([^']+)', decision='([^']+)', passed=(True|False), release='(r-\w+)'\)", out
    )
    assert match, out[-3000:]
    return {"report": match[1], "decision": match[2], "passed": match[3] == "True", "release": match[4]}, out
