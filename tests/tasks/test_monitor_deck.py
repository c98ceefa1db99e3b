"""The monitor Deck with everything measured (drift over its threshold, a judged sample, gap clusters, skipped
lines), read back from the page headless Chromium lays out; and `llmops monitor` in the terminal."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cli.main import app
from llmops.monitor.gaps import GapCluster, Gaps
from llmops.monitor.judge import JudgedAnswer, JudgeResult
from llmops.monitor.report import LogSummary
from scripts.chromium import find_chromium
from tasks.decks import monitor_deck
from tests.conftest import write_corpus
from tests.helpers import CORPUS, make_config
from tests.llmops.monitor.synthetic import DAY0, request, write_log
from tests.llmops.monitor.test_report import make_report
from tests.tasks.test_eval_decks import rendered

XSS = "<img src=x onerror=\"document.title='pwned'\">"


def full_report():
    report = make_report(drift_shift=0.3)
    return report.model_copy(update={
        "log": LogSummary(files=2, skipped_lines=3, skip_reasons=["log/2026/03/01/a.jsonl:7: not valid JSON"]),
        "gaps": Gaps(threshold=0.25, threshold_from="index idx answerability threshold", questions=5,
                     not_in_documents=4, clustered=5,
                     clusters=[GapCluster(size=5, distinct=2, examples=[XSS, "How do I get a refund?"],
                                          mean_relevance=0.1)]),
        "judge": JudgeResult(configured=True, judge_model="judge-7b", sampled=1, eligible=9,
                             metrics={"ragas.faithfulness": 0.5, "ragas.answer_relevancy": 0.9},
                             answers=[JudgedAnswer(response_id="chatcmpl-1", question="What is matcha?",
                                                   answer="Ground green tea.",
                                                   scores={"ragas.faithfulness": 0.5,
                                                           "ragas.answer_relevancy": 0.9})]),
    })


@pytest.mark.chromium
@pytest.mark.skipif(find_chromium() is None, reason="Chromium not found: apt-get install -y chromium (CI does)")
def test_the_deck_names_the_drift_statistic_and_threshold_and_shows_every_part(tmp_path):
    page = rendered(monitor_deck(full_report()), tmp_path)
    text = page["text"]
    badges = [b for b in page["badges"] if "Kolmogorov" in b[1]]
    assert badges and all("fail" in cls for cls, _ in badges)
    assert "two-sample Kolmogorov-Smirnov D" in text and "exceeded threshold 0.2" in text
    assert "judge judge-7b: 1 of 9 answered requests" in text and "Ground green tea." in text
    assert XSS in text  # shown as text, never run as markup
    assert "How do I get a refund?" in text and "below 0.25 (index idx answerability threshold)" in text
    assert "3 lines could not be read" in text and "a.jsonl:7: not valid JSON" in text
    assert "3.2% (1 of 31)" in text  # the no-answer rate, with its counts
    assert "Traffic per hour" in text and "Latency percentiles" in text


def test_llmops_monitor_prints_a_readable_summary(tmp_path):
    log = tmp_path / "log"
    write_log(str(log), [request(i, DAY0 - 600 + i, relevance=0.5, total_ms=100.0 + i) for i in range(4)]
              + [request(9, DAY0 - 60, refusal="content_filter", relevance=None)])
    cfg = make_config(tmp_path, write_corpus(tmp_path / "corpus", CORPUS),
                      monitoring={"request_log": {"path": str(log)}})
    config = tmp_path / "config.yaml"
    config.write_text(cfg.model_dump_json())
    result = CliRunner().invoke(app, ["monitor", "--config", str(config), "--end", "2026-03-02T00:00:00",
                                      "--days", "1", "--write"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "window 2026-03-01T00:00:00+00:00 to 2026-03-02T00:00:00+00:00 (1 days)" in out
    assert "refused (content filter) │ 20.0% (1 of 5)" in out
    assert "drift not measured: no release behind alias 'production'" in out
    assert "judge not configured" in out
    assert (tmp_path / "artifacts" / "monitor" / "20260302T000000Z" / "metrics.json").is_file()
    missing = CliRunner().invoke(app, ["monitor", "--config", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 2
