"""The evaluation stage end to end in-process: shared chain over a real index with the tiny LLM, metrics, report,
per-sample parquet, gates against a production baseline."""

import json
from pathlib import Path

import pytest

from eval.runner import read_samples
from eval.schemas import RagEvalReport, RetrievalEvalReport
from eval.stage import decide, evaluate_model, load_rag_eval_report, store_decision, store_eval_run
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
    {"question": "富士山の標高は何メートルですか？", "answers": ["3776メートル"],
     "reference_contexts": ["標高は3776メートルで、日本最高峰の山である。"]},
    # a follow-up: alone it names nothing; with the previous user message it is about the volcano document
    {"id": "follow-up", "question": "And what rises through its vents?", "answers": ["Magma"],
     "history": [{"role": "user", "content": "Which volcano in Sicily is very active?"},
                 {"role": "assistant", "content": "Mount Etna."}]},
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stage")
    corpus = write_corpus(tmp / "corpus", CORPUS)
    qa = tmp / "qa.jsonl"
    qa.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QA), encoding="utf-8")
    cfg = parse_config(
        {
            "corpus": {"sources": [{"kind": "directory", "path": str(corpus)}]},
            "embedding": {"model": MINILM, "shard_size": 4},
            "chunking": {"max_tokens": 64, "overlap_tokens": 8},
            "retrieval": {"k": 3, "fusion": {"dense_weight": 0.5}},  # fixed weight: no calibration split
            "answerability": {"threshold": 0.0},  # fixed threshold: no calibration split
            "eval": {
                "qa_path": str(qa),
                "metrics": {"bertscore": {"model": MINILM, "num_layers": 6}},
            },
            "artifacts": {"root": str(tmp / "artifacts")},
            "llm": {"model": str(REPO_ROOT / "examples/tiny-llm"), "backend": "transformers", "max_model_len": 1024,
                    "max_lora_rank": 8, "device": "cpu", "dtype": "float32"},
            "sampling": {"max_tokens": 12},
            "gates": {"rules": [{"metric": "retrieval.recall@5", "floor": 0.5}, {"metric": "rouge_l", "max_drop": 0.1}]},
        }
    ).resolved()
    out, ing, _ = build(cfg)
    examples = read_qa(fetch_file(ing.qa_uri, tmp))
    gold = {d.doc_id: d.text for d in read_documents(fetch_file(ing.documents_uri, tmp))}
    retriever = Retriever.load(out.artifact_uri)
    retrieval_report = RetrievalEvalReport(index_version=retriever.version, default_mode="hybrid", modes={"hybrid": {
        "mode": "hybrid", "metrics": {"recall@5": 1.0, "mrr@10": 0.9}, "questions": 4, "unjudgeable": 0,
        "primary_metric": "recall@5", "greater_is_better": True}})
    run = evaluate_model(cfg, retriever, examples, gold, label="base", retrieval_report=retrieval_report,
                         show_progress=False)
    return cfg, run


def test_every_question_is_answered_and_recorded(setup):
    _, run = setup
    assert [s.question for s in run.samples] == [q["question"] for q in QA]
    for s in run.samples:
        assert s.contexts and len(s.sources) == len(s.contexts) <= 3
        assert all(src["source"].endswith((".md", ".txt")) for src in s.sources)
        assert s.completion_tokens <= 12 and s.prompt_tokens > 0 and s.latency_s > 0
        assert s.answer.strip(), s  # the random tiny model answers with visible (noise) text, not ''
    ja = run.samples[3]
    assert ja.lang == "ja" and ja.retrieval_hit  # the Fuji paragraph holds 3776メートル
    assert ja.reference_contexts == QA[3]["reference_contexts"]  # carried from the eval set
    assert run.samples[0].reference_contexts == []  # JSONL without gold document or references: none invented


def test_report_has_metrics_lineage_and_per_sample_scores(setup):
    cfg, run = setup
    report = run.report.model_dump(mode="json")
    for key in ("bleu", "rouge_l", "bertscore_f1", "ragas.context_recall", "retrieval.recall@5"):
        assert key in report["metrics"], key
    assert report["metrics"]["retrieval.recall@5"]["value"] == 1.0
    measured = report["metrics"]["bertscore_f1"]
    assert measured["value"] is not None and 0.0 <= measured["value"] <= 1.0
    assert report["questions"] == len(QA) and report["model"]["backend"] == "transformers"
    assert report["model"]["random_weights"] is True  # examples/tiny-llm/tiny_llm.json says so
    assert report["metrics"]["bertscore_f1"]["value"] > 0  # an empty answer scores 0
    assert report["lineage"]["index_version"] == report["index_version"]
    assert report["config"]["sampling"]["max_tokens"] == 12
    assert all("rouge_l" in s.scores for s in run.samples)
    guard = report["guardrails"]  # the served chat path's guardrails ran on every question
    assert (guard["questions"], guard["refusals"], guard["refusal_rate"]) == (len(QA), 0, 0.0)
    assert guard["added_p50_s"] > 0 and report["metrics"]["guardrails.refusal_rate"]["higher_is_better"] is False
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN slips into report.json


def test_stored_run_round_trips_and_is_immutable(setup, tmp_path):
    cfg, run = setup
    report_uri, samples_uri = store_eval_run(cfg, run)
    assert load_rag_eval_report(report_uri).metrics == run.report.metrics
    samples = read_samples(Path(samples_uri))
    assert [s.qid for s in samples] == [s.qid for s in run.samples]
    assert samples[0].scores == run.samples[0].scores and samples[0].sources == run.samples[0].sources
    assert store_eval_run(cfg, run) == (report_uri, samples_uri)  # same content, same folder


def test_gates_use_the_production_baseline(setup):
    cfg, run = setup
    report = run.report
    first = decide(cfg, {"base": report}, None, None).model_dump(mode="json")
    assert first["candidate"] == "base" and first["verdict"]["passed"]
    assert [g["status"] for g in first["verdict"]["gates"]] == ["passed", "skipped"]  # rouge_l: no baseline
    assert first["verdict"]["summary"] == "passed: 1 of 2 gates checked, skipped: rouge_l (no baseline)"
    assert first["on_missing_baseline"] == "skip"

    better = report.model_dump(mode="json")
    better["metrics"]["rouge_l"]["value"] = (report.metrics["rouge_l"].value or 0.0) + 0.5
    regressed = decide(cfg, {"base": report}, RagEvalReport.model_validate(better), "prod/report.json")
    assert not regressed.verdict.passed and regressed.verdict.baseline_source == "prod/report.json"
    assert Path(store_decision(cfg, regressed)).is_file()


def test_a_first_release_whose_gates_are_all_skipped_is_not_approved(setup):
    cfg, run = setup
    report = run.report
    regression_only = {"rules": [{"metric": "rouge_l", "max_drop": 0.05}, {"metric": "bertscore_f1", "max_drop": 0.05}]}
    for policy in ("skip", "fail"):
        gates = GatesConfig.model_validate({**regression_only, "on_missing_baseline": policy})
        gated = cfg.model_copy(update={"gates": gates})
        verdict = decide(gated, {"base": report}, None, None).model_dump(mode="json")["verdict"]
        assert not verdict["passed"]
        expected = {"skip": {"passed": 0, "failed": 0, "skipped": 2}, "fail": {"passed": 0, "failed": 2, "skipped": 0}}
        assert verdict["counts"] == expected[policy]
    assert verdict["summary"].startswith("failed: 2 of 2 gates checked, failed: rouge_l (max_drop 0.05: no baseline")


def test_finetuned_candidate_is_preferred_when_present(setup):
    cfg, run = setup
    report = run.report
    finetuned = report.model_copy(update={"label": "finetuned"})
    decision = decide(cfg, {"base": report, "finetuned": finetuned}, None, None)
    assert decision.candidate == "finetuned" and set(decision.compared) == {"base", "finetuned"}


def test_a_follow_up_is_answered_with_its_conversation_and_reported_apart(setup):
    _, run = setup
    follow_up = run.samples[-1]
    assert follow_up.qid == "follow-up" and follow_up.turns == 2
    # the random tiny model's rewrite is noise, so the chat path falls back to the previous user message + follow-up
    assert follow_up.rewrite == "fallback"
    assert follow_up.retrieval_query == "Which volcano in Sicily is very active? And what rises through its vents?"
    assert follow_up.retrieval_hit and any("Magma" in c for c in follow_up.contexts)
    assert follow_up.rewrite_s > 0  # the model was asked before falling back
    assert all(s.turns == 0 and s.rewrite == "none" for s in run.samples[:-1])

    conv = run.report.conversations
    assert conv.questions == 1 and conv.turns_mean == 2 and conv.rewrite == {"fallback": 1}
    assert conv.metrics["multi_turn.retrieval_hit_rate"] == 1.0
    singles = [s for s in run.samples[:-1] if s.answerable]  # unanswerable questions have nothing to hit
    assert conv.metrics["single_turn.retrieval_hit_rate"] == sum(s.retrieval_hit for s in singles) / len(singles)
    assert conv.metrics["multi_turn.rouge_l"] == follow_up.scores["rouge_l"]
    assert {"multi_turn.bertscore_f1", "single_turn.bertscore_f1"} <= conv.metrics.keys()


def test_the_conversation_figures_survive_storage(setup):
    cfg, run = setup
    report_uri, samples_uri = store_eval_run(cfg, run)
    assert load_rag_eval_report(report_uri).conversations == run.report.conversations
    stored = read_samples(Path(samples_uri))[-1]
    assert (stored.turns, stored.rewrite, stored.retrieval_query) == (2, "fallback", run.samples[-1].retrieval_query)
