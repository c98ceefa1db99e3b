"""Where the pipeline's stages keep their work: content-addressed files under `artifacts.root`, local scratch.

The stages of `llmops.corpus.stages` and `llmops.index.build` (and the Flyte tasks that wrap them) share these, so
they live below both packages.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llmops.config import PipelineConfig
from llmops.storage import atomic_write_json, digest_of, join_uri, put_file

__all__ = ["scratch_dir", "work_uri", "store_report"]


def work_uri(cfg: PipelineConfig, *parts: str) -> str:
    """The URI of an intermediate stage output (documents, chunks, shards, vectors) under `artifacts.root/work`."""
    return join_uri(cfg.artifacts.root, "work", *parts)


@contextmanager
def scratch_dir() -> Iterator[Path]:
    """A fresh local folder for one stage call's downloads and files to upload, removed when the call ends."""
    path = Path(tempfile.mkdtemp(prefix="llmops-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def store_report(artifacts_root: str, kind: str, version: str, report: dict) -> str:
    """Store a JSON report under reports/<kind>/, named by `version` and its content (atomically); returns its URI."""
    with scratch_dir() as scratch:
        name = f"{version}-{digest_of(report, 8)}.json"
        atomic_write_json(scratch / name, report)
        return put_file(scratch / name, join_uri(artifacts_root, "reports", kind, name))
