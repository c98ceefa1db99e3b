"""A served world for the RAG API tests, built for real on this machine: a tiny chat model (random weights), two
small index artifacts with different corpora, and a release registry with one release per index.

The model's answers are noise; what the tests check is the wiring: sources, releases, errors, metrics, swaps.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
from fastapi import FastAPI

from llmops.config import PipelineConfig
from llmops.release.registry import Release, ReleaseRegistry
from llmops.release.artifacts import pin_artifacts
from llmops.llm.vllm_server import free_port
from tests.conftest import write_corpus
from tests.helpers import CORPUS, build, make_config

# A second corpus, about other things: which index answered is visible in the sources.
CORPUS_B = {
    "ops.md": "# Operations\n\nCertificates are rotated every 90 days by the rotation job at 02:00 UTC.\n\n"
    "Backups are taken every night at 03:00 and kept for one year.",
    "oncall.md": "# On-call\n\nThe on-call engineer must acknowledge a page within fifteen minutes. "
    "SEV1 means a full outage for all customers.",
}


@dataclass
class World:
    root: Path
    tiny_llm: Path
    config: PipelineConfig  # transformers backend, index A's corpus
    registry: ReleaseRegistry
    release_a: Release
    release_b: Release

    def serving_config(self, **serving) -> PipelineConfig:
        """The config with some `serving` fields changed (each test uses its own alias)."""
        return self.config.model_copy(update={"serving": self.config.serving.model_copy(update=serving)})

    def with_llm(self, **llm) -> PipelineConfig:
        return self.config.model_copy(update={"llm": self.config.llm.model_copy(update=llm)})


def release_for(registry: ReleaseRegistry, cfg: PipelineConfig, index_uri: str, index_version: str, **extra) -> Release:
    """A release of these artifacts, pinning their manifests as promotion does (unless `extra` sets the pins)."""
    fields = {
        "index_version": index_version,
        "index_uri": index_uri,
        "base_model": cfg.llm.model,
        "adapter_version": None,
        "adapter_uri": None,
        "eval_report_uri": f"{cfg.artifacts.root}/reports/{index_version}/report.json",
        "gate_decision_uri": None,
        "gates_passed": True,
        "metrics": {},
        "config": cfg.model_dump(mode="json"),
        "git_sha": "test",
        "flyte_execution_id": None,
    }
    fields.update(extra)
    if "index_manifest_sha256" not in extra:
        fields.update(pin_artifacts(fields["index_uri"], fields["adapter_uri"]))
    return registry.register(**fields)


def seal_adapter(directory: Path, version: str, base_model: str) -> Path:
    """Give a test adapter (`make_lora_adapter`) the manifest the finetune task writes: version and file digests."""
    from llmops.index.artifact import file_entries
    from llmops.config import FinetuneConfig
    from llmops.finetune.manifest import ADAPTER_MANIFEST, ADAPTER_SCHEMA_VERSION, AdapterManifest

    lora = json.loads((directory / "adapter_config.json").read_text())
    counts = dict.fromkeys(
        ("questions", "records", "skipped_no_answer", "skipped_too_long", "contexts_kept",
         "contexts_dropped_for_length", "answer_in_contexts", "max_tokens", "train", "validation"),
        0,
    )
    manifest = AdapterManifest(
        schema_version=ADAPTER_SCHEMA_VERSION, version=version, created_at="2026-01-01T00:00:00+00:00",
        base_model={"model": base_model, "digest": "test"},
        data={"train_path": None, "digest": "test", "uri": "test", "mean_tokens": 0.0, "index_version": "test",
              **counts},
        index_version="test",
        hyperparameters={**FinetuneConfig().model_dump(exclude={"enabled", "train_path"}), "precision": "fp32",
                         "retrieval": {"k": 1, "mode": "dense"}, "max_prompt_tokens": 0},
        lora={"r": lora["r"], "alpha": lora["lora_alpha"], "target_modules": lora["target_modules"],
              "max_lora_rank": lora["r"]},
        training={"train_loss": [], "validation_loss": [], "final_train_loss": None, "initial_validation_loss": None,
                  "final_validation_loss": None, "steps": 0, "epochs": 0.0, "seconds": 0.0, "device": "cpu",
                  "precision": "fp32", "loss_on": "none: a test adapter"},
        files=file_entries(directory), libraries={}, lineage={},
    )
    (directory / ADAPTER_MANIFEST).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    return directory


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory) -> Path:
    from llmops.llm.tiny_llm import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("serving-llm") / "tiny", seed=0)


@pytest.fixture(scope="session")
def world(tmp_path_factory, tiny_llm) -> World:
    root = tmp_path_factory.mktemp("serving")
    sections = {
        "llm": {"model": str(tiny_llm), "backend": "transformers", "max_model_len": 1024},
        "sampling": {"max_tokens": 8},
        "retrieval": {"k": 3},
        "serving": {"watch_interval_s": 0, "max_request_bytes": 65536, "max_k": 10},
    }
    cfg_a = make_config(root, write_corpus(root / "corpus-a", CORPUS), **sections)
    cfg_b = make_config(root, write_corpus(root / "corpus-b", CORPUS_B), **sections)
    out_a, _, _ = build(cfg_a)
    out_b, _, _ = build(cfg_b)
    registry = ReleaseRegistry(cfg_a.artifacts.registry_root)
    a = release_for(registry, cfg_a, out_a.artifact_uri, out_a.version)
    b = release_for(registry, cfg_b, out_b.artifact_uri, out_b.version)
    registry.promote(a.release, "production")
    return World(root, tiny_llm, cfg_a, registry, a, b)


@contextlib.contextmanager
def running_api(cfg: PipelineConfig, backend_url: str | None = None) -> Iterator[tuple[str, FastAPI]]:
    """The RAG API on a real uvicorn server in a background thread: (base URL, app)."""
    import uvicorn

    from serving.app import create_app

    app = create_app(cfg, backend_url=backend_url)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, name="rag-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 180
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the RAG API did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(60)


@dataclass
class Outcome:
    sent_at: float
    ok: bool
    release: str | None = None
    sources: tuple[str, ...] = ()
    error: str | None = None


def stream_once(base_url: str, question: str, timeout: float = 120) -> Outcome:
    """One streamed chat completion over raw HTTP; ok only with a 200, a final chunk with sources and [DONE]."""
    import httpx

    sent = time.monotonic()
    body = {"model": "rag", "messages": [{"role": "user", "content": question}], "stream": True}
    try:
        with httpx.stream("POST", base_url + "/v1/chat/completions", json=body, timeout=timeout) as r:
            if r.status_code != 200:
                return Outcome(sent, False, error=f"{r.status_code}: {r.read()[:300]!r}")
            events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    except httpx.HTTPError as e:
        return Outcome(sent, False, error=f"{type(e).__name__}: {e}")
    if not events or events[-1] != "[DONE]":
        return Outcome(sent, False, error=f"stream did not end with [DONE]: {events[-2:]}")
    chunks = [json.loads(e) for e in events[:-1]]
    if any("error" in c for c in chunks):
        return Outcome(sent, False, error=str(chunks[-1]))
    releases = {c["system_fingerprint"] for c in chunks}
    final = [c for c in chunks if c.get("sources") is not None]
    if len(releases) != 1 or len(final) != 1:
        return Outcome(sent, False, error=f"releases {releases}, {len(final)} chunks with sources")
    return Outcome(sent, True, releases.pop(), tuple(s["source"].rsplit("/", 1)[-1] for s in final[0]["sources"]))


def stream_load(base_url: str, clients: int, stop: threading.Event, questions: list[str]) -> list[Outcome]:
    """`clients` threads streaming back to back until `stop` is set."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        n = 0
        while not stop.is_set():
            outcome = stream_once(base_url, questions[(i + n) % len(questions)])
            n += 1
            with lock:
                outcomes.append(outcome)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    stop.wait()
    for t in threads:
        t.join(300)
    return sorted(outcomes, key=lambda o: o.sent_at)


def check_swap(outcomes: list[Outcome], old: str, new: str, promoted_at: float, old_docs: set, new_docs: set):
    """Zero failures; each answer's sources come from its own release's index; after the first answer from the new
    release, every request sent a second later is on the new release. Returns seconds from promotion to the
    first request answered by the new release."""
    failures = [o for o in outcomes if not o.ok]
    assert not failures, f"{len(failures)} of {len(outcomes)} requests failed, e.g. {failures[0].error}"
    by_release = {old: old_docs, new: new_docs}
    for o in outcomes:
        assert o.release in by_release, o
        assert set(o.sources) <= by_release[o.release], f"{o.release} answered with sources {o.sources}"
    first_new = next(o.sent_at for o in outcomes if o.release == new)
    late_old = [o for o in outcomes if o.release == old and o.sent_at > first_new + 1.0]
    assert not late_old, f"{len(late_old)} requests went to the old release after the swap"
    assert any(o.release == old for o in outcomes) and outcomes[-1].release == new
    return first_new - promoted_at


REDIS_PASSWORD = "test-only-redis-password"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A real `redis-server` (Debian's) on a free port, with a password and no persistence: its URL."""
    import shutil
    import subprocess

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server): Redis store tests skipped")
    redis = pytest.importorskip("redis", reason="the redis Python package is not installed")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir), "--save", "",
         "--appendonly", "no", "--requirepass", REDIS_PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    client = redis.Redis(host="127.0.0.1", port=port, password=REDIS_PASSWORD, socket_connect_timeout=1)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"redis-server did not start: {server.stderr.read().decode()[-500:]}")
            time.sleep(0.05)
    client.close()
    try:
        yield f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(30)
        server.stderr.close()
