"""What the gates Deck, the eval Deck and the release card say about skipped gates, random models, per-request
latency and re-runs, read back from the page headless Chromium lays out (badges by their class and visible text).

The decisions come from the real gate logic and the releases from a real registry; the deck functions are the ones
the Flyte tasks publish (tests/tasks/test_deck_rendering.py runs the tasks themselves).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from eval.gates import evaluate_gates
from eval.metrics.base import MetricValue
from llmops.config import GatesConfig
from eval.schemas import AnswerabilitySummary, GateDecision, RagEvalReport, VerdictRecord
from eval.stage import release_candidate
from llmops.release.promotion import promote_candidate
from llmops.release.registry import ReleaseRegistry
from tasks.decks import evaluation_deck, gates_deck, release_card
from scripts.chromium import dom_text, find_chromium
from tests.conftest import write_corpus
from tests.helpers import CORPUS, build, make_config

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(find_chromium() is None,
                       reason="Chromium not found: apt-get install -y chromium fonts-noto-cjk (CI installs both)"),
]

# Every badge as Chromium lays it out: [class, visible text]; and the page's visible text.
PROBE = """<script>
document.title = JSON.stringify({
  badges: [...document.querySelectorAll('.badge')].map(b => [b.className, b.innerText]),
  text: document.body.innerText,
});
</script>"""


def rendered(html: str, tmp_path: Path) -> dict:
    page = tmp_path / "deck.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'></head><body>{html}{PROBE}</body></html>",
                    encoding="utf-8")
    title = re.search(r"<title>(.*?)</title>", dom_text(page), re.S).group(1)
    return json.loads(title.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


def report(rouge: float = 0.0, random_weights: bool = True) -> RagEvalReport:
    return RagEvalReport.model_validate({
        "label": "base",
        "created_at": "2026-01-01T00:00:00+00:00",
        "generation_seconds": 2.0,
        "config": {},
        "lineage": {"index_version": "idx-1", "git_sha": "g", "code_version": "c"},
        "questions": 2,
        "index_version": "idx-1",
        "primary_metric": "rouge_l",
        "seconds": 3.0,
        "model": {"name": "examples/tiny-llm", "base": "examples/tiny-llm", "adapter_version": None,
                  "adapter_uri": None, "backend": "transformers", "random_weights": random_weights},
        "metrics": {
            "rouge_l": {"value": rouge, "higher_is_better": True, "reason": None},
            "bertscore_f1": {"value": 0.2, "higher_is_better": True, "reason": None},
        },
        "latency": {"p50_s": 0.4, "p95_s": 0.6, "retrieval_mean_s": 0.01, "prompt_tokens_mean": 300,
                    "completion_tokens_mean": 32},
        "retrieval": None,
        "guardrails": {"questions": 2, "refusals": 1, "refusal_rate": 0.5, "by_policy": {"prompt_injection": 1},
                       "added_p50_s": 0.0004, "added_p95_s": 0.0009},
    })


def decision(rules: tuple[dict, ...], cand: RagEvalReport, baseline: dict | None = None,
             policy: str = "skip") -> GateDecision:
    cfg = GatesConfig(rules=rules, on_missing_baseline=policy)
    metrics = {k: MetricValue(k, m.value, m.higher_is_better, m.reason) for k, m in cand.metrics.items()}
    verdict = evaluate_gates(metrics, cfg, baseline, baseline_source="prod/report.json" if baseline else None)
    return GateDecision(created_at="2026-01-01T00:00:00+00:00", candidate="base", candidate_model=cand.model,
                        index_version=cand.index_version, verdict=VerdictRecord.of(verdict),
                        on_missing_baseline=policy, compared={"base": cand.metric_values()}, baseline=baseline)


REGRESSION_ONLY = ({"metric": "rouge_l", "max_drop": 0.05}, {"metric": "bertscore_f1", "max_drop": 0.05})


def test_gates_deck_shows_skipped_gates_and_a_verdict_that_checked_nothing(tmp_path):
    """The quickstart's first run before the fix: ROUGE-L 0 behind regression-only gates showed two green passes."""
    cand = report(rouge=0.0)
    page = rendered(gates_deck(decision(REGRESSION_ONLY, cand), {"base": cand}), tmp_path)
    badges = page["badges"]
    assert badges[0] == ["badge fail", "\u2717 gates failed: nothing was checked"]
    assert badges[1:] == [["badge skip", "\u2013 skipped"]] * 2  # one per gate row, neither is a pass
    assert not any("pass" in text for _, text in badges)
    text = page["text"]
    assert "failed: nothing was checked: all 2 gates skipped: rouge_l (no baseline); bertscore_f1 (no baseline)" in text
    assert "0 passed, 0 failed, 2 skipped" in text
    assert "regression checks are skipped (gates.on_missing_baseline: skip); floors always apply" in text
    assert "random test model" in text


def test_gates_deck_passes_with_a_floor_and_still_shows_the_skipped_gate(tmp_path):
    cand = report(rouge=0.0)
    rules = ({"metric": "bertscore_f1", "floor": 0.1}, {"metric": "rouge_l", "max_drop": 0.05})
    page = rendered(gates_deck(decision(rules, cand), {"base": cand}), tmp_path)
    assert page["badges"] == [["badge ok", "\u2713 gates passed"], ["badge ok", "\u2713 pass"],
                              ["badge skip", "\u2013 skipped"]]
    assert "passed: 1 of 2 gates checked, skipped: rouge_l (no baseline)" in page["text"]


def test_gates_deck_on_missing_baseline_fail(tmp_path):
    cand = report(rouge=0.3)
    page = rendered(gates_deck(decision(REGRESSION_ONLY, cand, policy="fail"), {"base": cand}), tmp_path)
    assert [b[0] for b in page["badges"]] == ["badge fail", "badge fail", "badge fail"]
    assert "regression checks fail (gates.on_missing_baseline: fail)" in page["text"]
    assert "no baseline (on_missing_baseline: fail) FAILED" in page["text"]


def test_evaluation_deck_says_the_model_is_random_and_latency_is_per_request(tmp_path):
    from eval.runner import SampleRecord

    samples = [SampleRecord(qid=f"q{i}", question=f"question {i}", lang="en", answer="noise text", references=["a"],
                            contexts=["c"], sources=[{"title": "t", "source": "s.md"}], reference_contexts=[],
                            retrieval_hit=True, retrieval_s=0.01, latency_s=0.3 + i, first_token_s=0.1,
                            prompt_tokens=100, completion_tokens=32, finish_reason="length",
                            scores={"rouge_l": 0.0}) for i in range(2)]
    text = rendered(evaluation_deck(report(), samples), tmp_path)["text"]
    assert "Random test model: its weights are untrained noise" in text and "random: answers are noise" in text
    assert "latency per request p50 (s)" in text and "Latency is per request" in text
    assert "latency s (request)" in text
    assert "refused (content_filter)\t1 of 2" in text and "prompt_injection\t1" in text
    assert "added latency p50 (ms)\t0.4" in text
    real = rendered(evaluation_deck(report(random_weights=False), samples), tmp_path)["text"]
    assert "Random test model" not in real and "random: answers are noise" not in real
    assert "production questions\tnot counted (a report from before production questions)" in text
    counted = report().model_copy(update={"production_questions": 1})
    assert "production questions\t1 of 2 (from production, reviewed)" in rendered(
        evaluation_deck(counted, samples), tmp_path)["text"]


def test_evaluation_deck_shows_the_follow_ups_and_their_rewrites(tmp_path):
    from eval.conversations import summarize_conversations
    from eval.runner import SampleRecord

    def sample(qid, question, turns, rewrite, hit, query, rouge):
        return SampleRecord(qid=qid, question=question, lang="en", answer="noise", references=["a"], contexts=["c"],
                            sources=[{"title": "t", "source": "s.md"}], reference_contexts=[], retrieval_hit=hit,
                            retrieval_s=0.01, latency_s=0.3, first_token_s=0.1, prompt_tokens=100,
                            completion_tokens=32, finish_reason="length", turns=turns, retrieval_query=query,
                            rewrite=rewrite, rewrite_s=0.2 if rewrite != "none" else 0.0, scores={"rouge_l": rouge})

    samples = [
        sample("s", "How long are audit logs kept?", 0, "none", True, "How long are audit logs kept?", 0.5),
        sample("f1", "And when are they renewed?", 2, "fallback", True, "How long are certs valid? And when are "
               "they renewed?", 0.25),
        sample("f2", "When is it due?", 4, "llm", False, "post-incident review due date", 0.0),
    ]
    with_conv = report().model_copy(update={"conversations": summarize_conversations(samples)})
    page = rendered(evaluation_deck(with_conv, samples), tmp_path)
    text = page["text"]
    assert "Conversations" in text and "multi-turn questions\t2" in text
    assert "query rewrite (method: count)\tfallback 1, llm 1" in text
    assert "retrieval_hit_rate\t0.5\t1" in text and "rouge_l\t0.125\t0.5" in text  # multi-turn, then single
    assert "post-incident review due date" in text and "How long are certs valid? And when are they renewed?" in text
    assert ["badge fail", "\u2717 miss"] in page["badges"]  # the follow-up whose retrieval missed
    empty = rendered(evaluation_deck(report(), samples[:1]), tmp_path)["text"]
    assert "no multi-turn questions in this eval set" in empty
def test_evaluation_deck_shows_the_threshold_the_refusal_rates_and_which_samples_were_refused(tmp_path):
    from eval.runner import SampleRecord

    def sample(qid, answerable, refused):
        return SampleRecord(qid=qid, question=f"question {qid}", lang="en", answer="noise", references=[],
                            contexts=[], sources=[], reference_contexts=[], retrieval_hit=False, retrieval_s=0.01,
                            latency_s=0.0, first_token_s=None, prompt_tokens=0, completion_tokens=0,
                            finish_reason="stop", refusal_kind="not_in_documents" if refused else None,
                            answerable=answerable)

    measured = report().model_copy(update={"answerability": AnswerabilitySummary(
        enabled=True, threshold=0.3531, threshold_from="calibrated", answerable_questions=12,
        unanswerable_questions=8, refused_answerable=0, refused_unanswerable=3)})
    samples = [sample("a", True, True), sample("u1", False, True), sample("u2", False, False)]
    page = rendered(evaluation_deck(measured, samples), tmp_path)
    assert "Answer only from the documents" in page["text"] and "0.3531" in page["text"]
    assert "calibrated on the eval set's calibration split" in page["text"]
    assert "3 of 8 (38%)" in page["text"] and "0 of 12 (0%)" in page["text"]
    labels = [b[1] for b in page["badges"]]
    assert {"\u2717 refused: not in the documents", "\u2713 unanswerable: refused",
            "\u2717 unanswerable: answered"} <= set(labels)
    # a report from before answerability says so instead of inventing rates
    assert "not measured in this run" in rendered(evaluation_deck(report(), samples), tmp_path)["text"]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    """A real index: promotion verifies the artifacts it pins."""
    tmp = tmp_path_factory.mktemp("promote")
    cfg = make_config(tmp, write_corpus(tmp / "corpus", CORPUS))
    return cfg, build(cfg)[0].artifact_uri


@pytest.fixture
def cfg(indexed, tmp_path):
    base, _ = indexed
    return base.model_copy(update={"artifacts": base.artifacts.model_copy(update={"registry": str(tmp_path / "reg")})})


def promote(cfg, cand: RagEvalReport, dec: GateDecision, decision_uri: str):
    (index,) = (p.parent for p in (Path(cfg.artifacts.root) / "indexes").glob("*/manifest.json"))
    cand = cand.model_copy(update={"index_version": index.name})
    candidate = release_candidate(cand, "/store/evals/r.json", dec, decision_uri)
    return promote_candidate(cfg, index_uri=str(index), candidate=candidate, alias="production", execution_id=None)


def test_release_card_of_a_rerun_shows_this_runs_decision_and_that_the_release_existed(cfg, tmp_path):
    cand = report(rouge=0.3)
    rules = ({"metric": "bertscore_f1", "floor": 0.1}, {"metric": "rouge_l", "max_drop": 0.05})
    first = promote(cfg, cand, decision(rules, cand), "/store/decisions/first.json")
    assert first.created and first.event is not None
    assert first.release.gate_outcome.skipped == 1 and first.release.gates_label() == "passed, 1 of 2 gates skipped"

    baseline = {"rouge_l": 0.3, "bertscore_f1": 0.2}
    second = promote(cfg, cand, decision(rules, cand, baseline), "/store/decisions/second.json")
    assert not second.created and second.release.release == first.release.release and second.event is None
    page = rendered(release_card(second, "production"), tmp_path)
    assert page["badges"] == [["badge ok", "\u2713 already production"]]
    text = page["text"]
    assert "gate decision (this run)\t/store/decisions/second.json" in text
    assert "gates (this run)\tpassed: 2 of 2 gates checked" in text
    assert "already existed: registered" in text and "(gates passed, 1 of 2 gates skipped)" in text
    assert "gate decision at registration\t/store/decisions/first.json" in text
    assert "production questions in its evaluation\tnot counted" in text
    counted = rendered(release_card(second, "production", production_questions=3, questions=20), tmp_path)["text"]
    assert "production questions in its evaluation\t3 of 20 evaluated questions (llmops feedback merge)" in counted


def test_a_release_whose_gates_checked_nothing_is_not_promoted(cfg, tmp_path):
    cand = report(rouge=0.0)
    result = promote(cfg, cand, decision(REGRESSION_ONLY, cand), "/store/decisions/d.json")
    assert result.event is None and not result.gates_passed
    assert ReleaseRegistry(cfg.artifacts.registry_root).resolve("production") is None
    assert result.release.gates_label() == "failed: nothing was checked (2 of 2 gates skipped)"
    page = rendered(release_card(result, "production"), tmp_path)
    (cls, text), = page["badges"]
    assert cls == "badge fail" and text.startswith("\u2717 not promoted: nothing was checked (force with llmops")


def test_a_rerun_whose_gates_fail_does_not_move_the_alias_to_the_existing_release(cfg, tmp_path):
    cand = report(rouge=0.3)
    rules = ({"metric": "rouge_l", "floor": 0.1},)
    first = promote(cfg, cand, decision(rules, cand), "/store/decisions/first.json")
    registry = ReleaseRegistry(cfg.artifacts.registry_root)
    other = registry.register(**{**first.release.model_dump(exclude={"release", "created_at"}), "index_version": "i2"})
    registry.promote(other.release, "production")
    # This run's verdict fails (a floor the same metrics no longer meet), though the release was registered as passed.
    failing = decision(({"metric": "rouge_l", "floor": 0.5},), cand)
    again = promote(cfg, cand, failing, "/store/decisions/again.json")
    assert not again.created and again.release.gates_passed and not again.gates_passed and again.event is None
    assert registry.resolve("production").release == other.release
    (cls, text), = rendered(release_card(again, "production"), tmp_path)["badges"]
    assert cls == "badge fail" and "not promoted: gates failed" in text
