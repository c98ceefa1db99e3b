"""Prometheus metrics of the RAG API.

Each app gets its own registry (tests build several apps in one process). With several uvicorn workers, set
`PROMETHEUS_MULTIPROC_DIR` (`llmops serve` does): every worker writes its samples there and `/metrics` merges them,
whichever worker answers the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "ServingMetrics"]

# Seconds: from a few milliseconds (retrieval, first token on a GPU) to a long CPU answer.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

# Seconds: the built-in checks take well under a millisecond, a moderation model tens of milliseconds or more.
_GUARD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "llmops_requests", "HTTP requests by route, method and status code", ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "llmops_request_duration_seconds", "request start to last byte (streams: to [DONE])", ["route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge(
            "llmops_requests_in_flight", "requests being served", registry=r, multiprocess_mode="livesum"
        )
        self.ttft = Histogram(
            "llmops_time_to_first_token_seconds", "request start to the first answer token (streams)",
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.retrieval = Histogram(
            "llmops_retrieval_duration_seconds", "retrieval time per request", ["mode"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.generation = Histogram(
            "llmops_generation_duration_seconds", "generation time per answer", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.prompt_tokens = Counter("llmops_prompt_tokens", "prompt tokens sent to the LLM", registry=r)
        self.completion_tokens = Counter("llmops_completion_tokens", "answer tokens generated", registry=r)
        self.backend_errors = Counter(
            "llmops_backend_errors", "generation backend failures by kind", ["kind"], registry=r
        )
        self.release_info = Gauge(
            "llmops_active_release",
            "1 for the release being served",
            ["release", "index_version", "adapter_version", "base_model"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.reloads = Counter("llmops_release_reloads", "release swaps and failed loads", ["result"], registry=r)
        self.session_store_errors = Counter(
            "llmops_session_store_errors", "session store failures by store and operation", ["store", "operation"],
            registry=r,
        )
        self.guardrail_decisions = Counter(
            "llmops_guardrail_decisions", "guardrail decisions by stage, policy and action (allow/redact/refuse)",
            ["stage", "policy", "action"], registry=r,
        )
        self.request_log_dropped = Counter(
            "llmops_request_log_dropped", "request log records dropped (the writer's queue was full)", registry=r
        )
        self.request_log_write_errors = Counter(
            "llmops_request_log_write_errors", "request log writes that failed (the store; the batch is retried)",
            registry=r,
        )
        self.guardrail_duration = Histogram(
            "llmops_guardrail_duration_seconds", "time in the guardrails per request and stage (input, output)",
            ["stage"], buckets=_GUARD_BUCKETS, registry=r,
        )

    def observe_guardrails(self, stage: str, seconds: float) -> None:
        self.guardrail_duration.labels(stage).observe(seconds)

    def set_release(self, release, previous=None) -> None:
        if previous is not None and _release_labels(previous) != _release_labels(release):
            try:
                self.release_info.remove(*_release_labels(previous))
            except KeyError:
                pass
        self.release_info.labels(*_release_labels(release)).set(1)

    def exposition(self) -> bytes:
        if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged)
            return generate_latest(merged)
        return generate_latest(self.registry)


def _release_labels(release) -> tuple[str, str, str, str]:
    return (release.release, release.index_version, release.adapter_version or "", release.base_model)
