"""The monitor run against a real reference release: a built index, an eval run's per-question relevance, the
registry alias; production logs whose relevance comes from the same retriever; eval's RAGAS judge on a local
OpenAI-compatible endpoint (tests/eval/scripted_judge.py)."""

from __future__ import annotations

import pytest

from eval.monitor import run_monitor
from eval.runner import SampleRecord, write_samples
from llmops.errors import ConfigError
from llmops.index.retriever import Retriever
from llmops.release.registry import ReleaseRegistry
from tests.conftest import write_corpus
from tests.eval.scripted_judge import ScriptedJudge
from tests.helpers import CORPUS, build, make_config
from tests.llmops.monitor.synthetic import DAY0, OFF_TOPIC, request, write_log

EVAL_QUESTIONS = [
    "Which volcano in Sicily is very active?", "What is a volcano?", "How does magma reach the surface?",
    "When did the first Shinkansen line open?", "Which cities did the first Shinkansen connect?",
    "What is matcha made of?", "Which plant is green tea made from?", "How tall is Mount Fuji?",
    "When was Mount Fuji registered as a World Heritage site?", "What is sushi made of?",
]
JUDGED = "What is matcha made of?"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A promoted release: a real index, and an eval run's samples with each question's relevance."""
    tmp = tmp_path_factory.mktemp("monitor-ref")
    cfg = make_config(tmp, write_corpus(tmp / "corpus", CORPUS))
    built, _, _ = build(cfg)
    retriever = Retriever.load(built.artifact_uri)
    scores = retriever.best_dense_similarity(EVAL_QUESTIONS)
    evals = tmp / "evals"
    evals.mkdir()
    (evals / "report.json").write_text("{}")
    write_samples([_sample(q, float(s)) for q, s in zip(EVAL_QUESTIONS, scores)], evals / "samples.parquet")
    registry = ReleaseRegistry(cfg.artifacts.registry_root)
    release = registry.register(
        index_version=built.version, index_uri=built.artifact_uri, base_model="m", adapter_version=None,
        adapter_uri=None, eval_report_uri=str(evals / "report.json"), gate_decision_uri=None, gates_passed=True,
        metrics={}, config={}, git_sha="g", flyte_execution_id=None,
    )
    registry.promote(release.release, "production")
    return tmp, retriever, release


def _sample(question: str, relevance: float) -> SampleRecord:
    return SampleRecord(qid=question, question=question, lang="en", answer="a", references=[], contexts=[],
                        sources=[], reference_contexts=[], retrieval_hit=True, retrieval_s=0.0, latency_s=0.0,
                        first_token_s=None, prompt_tokens=0, completion_tokens=0, finish_reason="stop",
                        relevance=relevance)


def _config(tmp, log_root: str, **monitor):
    return make_config(tmp, tmp / "corpus", monitoring={
        "request_log": {"path": log_root},
        "monitor": {"drift": {"min_samples": 5, "threshold": 0.3}, **monitor},
    })


def _scored(retriever: Retriever, questions: list[str], start: int = 0, index_version: str | None = None):
    scores = retriever.best_dense_similarity(questions)
    return [request(start + i, DAY0 - 3600 + i, question=q, relevance=float(s),
                    index_version=index_version or retriever.version) for i, (q, s) in enumerate(zip(questions, scores))]


def test_production_like_the_eval_set_does_not_drift(reference):
    tmp, retriever, release = reference
    log = "memory://monitor-same"
    write_log(log, _scored(retriever, EVAL_QUESTIONS))
    report = run_monitor(_config(tmp, log), window_end=DAY0)
    assert report.release == release.release and report.index_version == retriever.version
    d = report.drift
    assert (d.production, d.reference) == (10, 10) and d.value == pytest.approx(0.0) and d.exceeded is False
    assert d.reference_source == release.eval_report_uri
    assert report.gaps.questions == 0 and report.gaps.threshold_from.startswith("index ")
    assert not report.judge.configured and "eval.metrics.ragas.judge" in report.judge.reason


def test_off_topic_traffic_drifts_and_shows_as_gap_clusters(reference):
    tmp, retriever, _ = reference
    log = str(tmp / "log-shifted")
    questions = [q for qs in OFF_TOPIC.values() for q in qs]
    write_log(log, _scored(retriever, questions) + _scored(retriever, EVAL_QUESTIONS[:3], start=100))
    threshold = retriever.manifest.answerability.threshold
    report = run_monitor(_config(tmp, log, low_relevance_threshold=0.3), window_end=DAY0)
    assert report.drift.exceeded is True and report.drift.value > 0.5
    assert report.gaps.threshold_from == "config" and threshold != 0.3
    assert [c.size for c in report.gaps.clusters] == [4, 3]
    assert set(report.gaps.clusters[0].examples) <= set(OFF_TOPIC["billing"])


def test_the_judge_scores_a_sample_against_the_index_chunks(reference):
    tmp, retriever, _ = reference
    hits = retriever.search(JUDGED, 2)
    from llmops.requestlog.record import LoggedSource

    sources = [LoggedSource(chunk_id=h.chunk_id, doc_id=h.doc_id, source=h.source, score=h.score) for h in hits]
    faithful = hits[0].text.split("\n")[-1].strip()  # a sentence of the top chunk: supported by the contexts
    reqs = [
        request(1, DAY0 - 60, question=JUDGED, answer=faithful, sources=sources, index_version=retriever.version),
        request(2, DAY0 - 50, question=JUDGED, answer="The moon is made of cheese.", sources=sources,
                index_version=retriever.version),
        request(3, DAY0 - 40, question=JUDGED, answer="other index", sources=sources, index_version="old"),
        request(4, DAY0 - 30, question="refused", refusal="not_in_documents", relevance=0.0),
    ]
    log = str(tmp / "log-judge")
    write_log(log, reqs)
    with ScriptedJudge(relevance_question=JUDGED) as judge:
        cfg = _config(tmp, log, judge_sample_size=5)
        cfg = cfg.model_copy(update={"eval": cfg.eval.model_validate(
            {"metrics": {"ragas": {"judge": {"base_url": judge.base_url, "model": "scripted"}}}})})
        result = run_monitor(cfg, window_end=DAY0).judge
    assert result.configured and (result.sampled, result.eligible) == (2, 2)  # the old index's answer is left out
    by_id = {a.response_id: a.scores for a in result.answers}
    assert by_id["chatcmpl-00001"]["ragas.faithfulness"] == 1.0
    assert by_id["chatcmpl-00002"]["ragas.faithfulness"] == 0.0
    assert result.metrics["ragas.faithfulness"] == pytest.approx(0.5)
    assert result.metrics["ragas.answer_relevancy"] == pytest.approx(1.0, abs=1e-5)


def test_without_a_release_trends_still_run_and_drift_says_why(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", CORPUS)
    log = str(tmp_path / "log")
    write_log(log, [request(i, DAY0 - 100 + i, relevance=0.5) for i in range(6)])
    cfg = make_config(tmp_path, corpus, monitoring={"request_log": {"path": log}})
    report = run_monitor(cfg, window_end=DAY0 + 1800, whole_days=True)
    assert report.window.end == DAY0 and report.trends.requests == 6
    assert report.release is None and report.drift.value is None
    assert report.drift.reason == "no release behind alias 'production' to compare with"
    assert report.gaps.threshold_from == "answerability.fallback_threshold"


def test_no_request_log_configured_is_a_config_error_with_the_fix(tmp_path):
    cfg = make_config(tmp_path, write_corpus(tmp_path / "corpus", CORPUS))
    with pytest.raises(ConfigError, match="set monitoring.request_log.path"):
        run_monitor(cfg)
