"""Abstention measured end to end: a real index, the tiny LLM through the chat engine, unanswerable questions."""

import json
from pathlib import Path

import pytest

from eval.gates import evaluate_gates
from eval.metrics.answerability import REFUSAL_RATE_ANSWERABLE, REFUSAL_RATE_UNANSWERABLE, RefusalCounts, refusal_metrics
from eval.runner import read_samples
from eval.stage import evaluate_model, store_eval_run
from llmops.config import GatesConfig, parse_config
from llmops.corpus.documents import read_documents
from llmops.corpus.qa import read_qa
from llmops.index.retriever import Retriever
from llmops.storage import fetch_file
from tests.conftest import MINILM, REPO_ROOT, write_corpus
from tests.helpers import CORPUS, build

QA = [
    {"question": "When did the first Shinkansen line open?", "answers": ["1964"]},
    {"question": "Which volcano in Sicily is very active?", "answers": ["Mount Etna"]},
    {"question": "What is matcha made from?", "answers": ["green tea leaves"]},
    {"question": "How do I reset my corporate VPN password?", "answerable": False},
    {"question": "What is the deductible of the company's dental insurance?", "answerable": False},
]
MESSAGE = "Not in the documents."


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("answerability-eval")
    qa = tmp / "qa.jsonl"
    qa.write_text("".join(json.dumps(q) + "\n" for q in QA), encoding="utf-8")
    cfg = parse_config(
        {
            "corpus": {"sources": [{"kind": "directory", "path": str(write_corpus(tmp / "corpus", CORPUS))}]},
            "embedding": {"model": MINILM, "shard_size": 4},
            "chunking": {"max_tokens": 64, "overlap_tokens": 8},
            "retrieval": {"k": 3, "fusion": {"dense_weight": 0.5}},
            # set, not calibrated: every question is evaluated (no calibration split)
            "answerability": {"threshold": 0.3, "messages": {"en": MESSAGE}},
            "eval": {"qa_path": str(qa), "metrics": {"bleu": True, "rouge": True, "ragas": {"enabled": False}}},
            "artifacts": {"root": str(tmp / "artifacts")},
            "llm": {"model": str(REPO_ROOT / "examples/tiny-llm"), "backend": "transformers", "max_model_len": 1024,
                    "max_lora_rank": 8, "device": "cpu", "dtype": "float32"},
            "sampling": {"max_tokens": 8},
        }
    ).resolved()
    out, ing, _ = build(cfg)
    examples = read_qa(fetch_file(ing.qa_uri, tmp))
    gold = {d.doc_id: d.text for d in read_documents(fetch_file(ing.documents_uri, tmp))}
    return cfg, evaluate_model(cfg, Retriever.load(out.artifact_uri), examples, gold, label="base",
                               show_progress=False)


def test_unanswerable_questions_are_refused_without_generating(run):
    _, result = run
    samples = {s.question: s for s in result.samples}
    assert len(samples) == len(QA)
    for q in QA:
        s = samples[q["question"]]
        assert s.answerable == q.get("answerable", True)
        assert s.refused == (not s.answerable), s
    for s in result.samples:
        if s.refused:  # the message, no sources, no generation at all
            assert (s.answer, s.refusal_kind, s.refusal_policy) == (MESSAGE, "not_in_documents", "answerability")
            assert s.finish_reason == "stop" and s.sources == [] and s.completion_tokens == s.prompt_tokens == 0
            assert not s.retrieval_hit
        else:
            assert s.completion_tokens > 0 and s.sources


def test_report_rates_counts_and_answer_metrics_on_answerable_only(run):
    cfg, result = run
    report = result.report
    assert report.metrics[REFUSAL_RATE_UNANSWERABLE].value == 1.0
    assert report.metrics[REFUSAL_RATE_ANSWERABLE].value == 0.0
    assert report.metrics[REFUSAL_RATE_ANSWERABLE].higher_is_better is False
    summary = report.answerability
    assert (summary.enabled, summary.threshold, summary.threshold_from) == (True, 0.3, "config")
    assert (summary.answerable_questions, summary.unanswerable_questions) == (3, 2)
    assert (summary.refused_answerable, summary.refused_unanswerable) == (0, 2)
    # text metrics cover the answerable questions and say that the others were left out
    assert "2 unanswerable questions left out" in report.metrics["rouge_l"].reason
    assert all(("rouge_l" in s.scores) == s.answerable for s in result.samples)
    # the per-sample table keeps whether a question was answerable, and its refusal
    _, samples_uri = store_eval_run(cfg, result)
    stored = read_samples(Path(samples_uri))
    assert [(s.answerable, s.refused) for s in stored] == [(s.answerable, s.refused) for s in result.samples]
    # ... and each question's relevance (best dense cosine), the monitor's drift reference: the answerability
    # check refused exactly the questions below its threshold
    assert all(s.relevance is not None and (s.relevance < 0.3) == s.refused for s in stored)
    assert [s.relevance for s in stored] == [s.relevance for s in result.samples]


def test_rates_without_questions_of_a_kind_are_not_measured_and_fail_their_gate():
    metrics = refusal_metrics(RefusalCounts.of([True, True], [False, True]))
    assert metrics[REFUSAL_RATE_ANSWERABLE].value == 0.5
    assert metrics[REFUSAL_RATE_UNANSWERABLE].value is None
    assert "no unanswerable questions" in metrics[REFUSAL_RATE_UNANSWERABLE].reason
    gates = GatesConfig(rules=[{"metric": REFUSAL_RATE_UNANSWERABLE, "floor": 0.3}])
    (gate,) = evaluate_gates(metrics, gates, None).gates
    assert gate.failed and "not measured" in gate.reason


@pytest.mark.parametrize(("answerable_rate", "passed"), [(0.1, True), (0.2, False)])
def test_the_answerable_refusal_rate_is_lower_is_better_for_gates(answerable_rate, passed):
    # bare floats: the gate finds the direction by the metric's name; the floor is a ceiling
    gates = GatesConfig(rules=[{"metric": REFUSAL_RATE_ANSWERABLE, "floor": 0.15},
                               {"metric": REFUSAL_RATE_UNANSWERABLE, "floor": 0.5}])
    verdict = evaluate_gates({REFUSAL_RATE_ANSWERABLE: answerable_rate, REFUSAL_RATE_UNANSWERABLE: 0.6}, gates, None)
    assert verdict.passed is passed
    assert [g.higher_is_better for g in verdict.gates] == [False, True]
