"""The monitor's analyses on synthetic request logs: trends, drift and gap clusters (a real MiniLM embedder)."""

from __future__ import annotations

import numpy as np
import pytest

from llmops.config import DriftConfig, MonitorConfig
from llmops.monitor.drift import retrieval_drift
from llmops.monitor.gaps import find_gaps
from llmops.monitor.judge import judge_sample
from llmops.monitor.trends import DAY_S, HOUR_S, compute_trends
from llmops.requestlog.reader import read_window
from tests.llmops.monitor.synthetic import DAY0, OFF_TOPIC, ON_TOPIC, feedback, request, write_log


def test_trends_count_rates_latency_and_hourly_traffic(tmp_path):
    reqs = [request(i, DAY0 - DAY_S + 3600 * (i % 4) + i, total_ms=100.0 * (i + 1),
                    ttft_ms=10.0 if i % 2 else None) for i in range(10)]
    reqs += [request(10, DAY0 - 600, refusal="not_in_documents", relevance=0.05),
             request(11, DAY0 - 500, refusal="content_filter", relevance=None)]
    ratings = [feedback(reqs[0], "down"), feedback(reqs[1], "up"), feedback(reqs[2], "up"),
               feedback(reqs[2], "down", after_s=120), feedback(reqs[10], "down")]  # the later rating counts
    write_log(str(tmp_path), [*reqs, *ratings], extra_lines=["not json", '{"kind": "nope"}'])
    window = read_window(str(tmp_path), DAY0 - DAY_S, DAY0)
    t = compute_trends(window)
    assert (t.requests, t.answered, t.not_in_documents, t.content_filter) == (12, 10, 1, 1)
    assert (t.rated, t.down, t.up, t.rated_answered) == (4, 3, 1, 3)
    assert t.no_answer_rate == t.refusal_rate == pytest.approx(1 / 12)
    assert t.negative_feedback_rate == pytest.approx(3 / 4)
    assert t.feedback_coverage == pytest.approx(3 / 10)
    totals = [r.latency.total_ms for r in reqs]
    assert t.latency.total.p50_ms == pytest.approx(np.percentile(totals, 50))
    assert t.latency.total.p99_ms == pytest.approx(np.percentile(totals, 99))
    assert t.latency.ttft.count == 5 and t.latency.ttft.p95_ms == 10.0
    # one bucket per hour of the day, quiet hours included; every request in one of them
    assert t.bucket_s == HOUR_S and len(t.buckets) == 24
    assert [b.requests for b in t.buckets[:4]] == [3, 3, 2, 2] and sum(b.requests for b in t.buckets) == 12
    assert t.buckets[-1].not_in_documents == 1 and t.buckets[-1].content_filter == 1
    assert window.skipped_lines == 2


def test_rates_are_not_measured_without_a_denominator(tmp_path):
    t = compute_trends(read_window(str(tmp_path), DAY0 - 8 * DAY_S, DAY0))
    assert t.requests == 0 and t.no_answer_rate is None and t.negative_feedback_rate is None
    assert t.latency.total.p50_ms is None and t.bucket_s == DAY_S and len(t.buckets) == 8


def test_drift_fires_on_a_shifted_distribution_and_not_on_the_same_one():
    rng = np.random.default_rng(0)
    reference = rng.normal(0.55, 0.1, 200).tolist()
    cfg = DriftConfig(threshold=0.2, min_samples=20)
    same = retrieval_drift(rng.normal(0.55, 0.1, 500).tolist(), reference, cfg)
    assert same.measured and same.value < 0.2 and same.exceeded is False
    shifted = retrieval_drift(rng.normal(0.35, 0.1, 500).tolist(), reference, cfg)
    assert shifted.value > 0.5 and shifted.exceeded is True and shifted.p_value < 1e-6
    assert shifted.statistic_name == "two-sample Kolmogorov-Smirnov D"
    assert sum(shifted.production_share) == pytest.approx(1) and len(shifted.bin_edges) == 11


def test_drift_is_not_measured_on_too_few_scores_or_without_a_reference():
    cfg = DriftConfig(min_samples=20)
    few = retrieval_drift([0.5] * 5, [0.5] * 30, cfg)
    assert few.value is None and few.exceeded is None and "5 scored production requests" in few.reason
    none = retrieval_drift([0.5] * 50, None, cfg, missing_reference="no release behind alias 'production'")
    assert none.value is None and none.reason == "no release behind alias 'production'"


def test_gaps_cluster_the_off_topic_questions(minilm_embedder):
    reqs, i = [], 0
    for q in ON_TOPIC:
        reqs.append(request(i, DAY0, question=q, relevance=0.7)); i += 1
    for topic, questions in OFF_TOPIC.items():
        for q in questions:
            reqs.append(request(i, DAY0, question=q, relevance=0.05, refusal="not_in_documents")); i += 1
    reqs.append(request(i, DAY0, question=OFF_TOPIC["billing"][0].upper(), relevance=0.1))  # a repeat, shouted
    gaps = find_gaps(reqs, minilm_embedder.embed_queries, MonitorConfig(), 0.3, "config")
    assert (gaps.questions, gaps.not_in_documents) == (8, 7)
    assert [c.size for c in gaps.clusters] == [5, 3]
    billing, football = gaps.clusters
    assert set(billing.examples) <= set(OFF_TOPIC["billing"]) and billing.distinct == 4
    assert set(football.examples) <= set(OFF_TOPIC["football"]) and len(football.examples) == 3
    assert billing.mean_relevance == pytest.approx((4 * 0.05 + 0.1) / 5)


def test_gaps_keep_the_largest_clusters_and_count_the_rest(minilm_embedder):
    reqs = [request(i, DAY0, question=q, relevance=0.0) for i, q in
            enumerate([*OFF_TOPIC["billing"], *OFF_TOPIC["football"]])]
    gaps = find_gaps(reqs, minilm_embedder.embed_queries, MonitorConfig(max_clusters=1), 0.3, "config")
    assert len(gaps.clusters) == 1 and gaps.clusters[0].size == 4 and gaps.unclustered == 3


def test_the_judge_sample_is_seeded_and_independent_of_log_order():
    reqs = [request(i, DAY0) for i in range(30)]
    first = judge_sample(reqs, 5, seed=1)
    assert [r.response_id for r in judge_sample(list(reversed(reqs)), 5, seed=1)] == [r.response_id for r in first]
    assert len(judge_sample(reqs[:3], 5, seed=1)) == 3
