import json

import pytest

from eval.retrieval import evaluate_mode, evaluate_retrieval_modes
from llmops.corpus.documents import QAExample
from llmops.index.retriever import Retriever
from llmops.index.tuning import split_calibration
from tests.conftest import write_corpus
from tests.helpers import CORPUS, build, make_config


@pytest.fixture(scope="module")
def retriever(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("retrieval")
    cfg = make_config(tmp, write_corpus(tmp / "corpus", CORPUS), retrieval={"fusion": {"dense_weight": 0.5}})
    out, _, _ = build(cfg)
    return Retriever.load(out.artifact_uri)


def _doc_of(retriever, filename):
    return next(c["doc_id"] for c in map(retriever.chunk, range(retriever.size)) if c["source"].endswith(filename))


def test_hits_by_gold_document_and_by_answer_string(retriever):
    rail = _doc_of(retriever, "rail.md")
    examples = [
        QAExample("q1", "When did the first Shinkansen line open?", (), gold_doc_id=rail),
        QAExample("q2", "Which Sicilian volcano is very active?", ("Mount Etna",)),
        QAExample("q3", "富士山の標高は？", ("3776メートル",), lang="ja"),
        QAExample("q4", "What is the capital of Peru?", ("Lima",)),  # in no document: a miss
    ]
    ev = evaluate_mode(retriever, examples, "lexical", ks=(1, 5))
    ranks = {r["qid"]: r["first_relevant_rank"] for r in ev.per_question}
    assert ranks["q1"] == 1 and ranks["q2"] == 1 and ranks["q3"] == 1 and ranks["q4"] is None
    assert ev.metrics["recall@1"] == pytest.approx(0.75)
    assert ev.metrics["mrr@10"] == pytest.approx(0.75)


def test_metric_values_match_hand_computation():
    import numpy as np

    from llmops.index.relevance import RelevanceJudge, aggregate_scores, score_questions

    class Stub:  # chunk store with doc ids: positions 0..3
        columns = {"doc_id": ["a", "a", "b", "c"], "text": ["x", "y", "answer here", "z"]}

        def chunk_column(self, name):
            return self.columns[name]

    judge = RelevanceJudge(Stub())
    examples = [QAExample("1", "q", (), gold_doc_id="a"), QAExample("2", "q", ("ANSWER",))]
    ids = np.array([[3, 1, 0, -1], [0, 3, 1, 2]])
    rows = score_questions(judge, examples, ids, (1, 3))
    m = aggregate_scores(rows, (1, 3))
    # q1: first relevant at rank 2; q2: at rank 4 (case-folded answer match)
    assert m["recall@1"] == 0 and m["recall@3"] == 0.5
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    # q1 nDCG: relevant at ranks 2 and 3; ideal has its 2 gold chunks at ranks 1 and 2
    dcg = 1 / np.log2(3) + 1 / np.log2(4)
    idcg = 1 + 1 / np.log2(3)
    assert rows[0]["ndcg@10"] == pytest.approx(dcg / idcg)


def test_split_is_deterministic_and_disjoint():
    exs = [QAExample(str(i), "q", ("a",)) for i in range(200)]
    calib, held = split_calibration(exs, 0.3)
    assert split_calibration(exs, 0.3) == (calib, held)
    assert not {e.qid for e in calib} & {e.qid for e in held}
    assert 30 < len(calib) < 90


def test_report_covers_every_mode_and_is_json(retriever):
    examples = [QAExample("q", "Matcha powder", ("Matcha",))]
    report = evaluate_retrieval_modes(retriever, examples)
    assert set(report.modes) == {"dense", "lexical", "hybrid"}
    assert report.modes["hybrid"].metrics["recall@1"] == 1.0
    json.dumps(report.model_dump(mode="json"))


def test_unjudgeable_questions_are_counted_not_scored(retriever):
    ev = evaluate_mode(retriever, [QAExample("q", "anything", ())], "dense")
    assert ev.questions == 0 and ev.unjudgeable == 1


def test_a_follow_up_is_searched_with_the_previous_user_message(retriever):
    """Retrieval evaluation (and fusion tuning) run without an LLM: a follow-up is searched in its concat form."""
    from llmops.index.tuning import tune_dense_weight

    rail = _doc_of(retriever, "rail.md")
    history = (("user", "Tell me about the Shinkansen railway lines in Japan."), ("assistant", "High-speed lines."))
    follow_up = QAExample("f", "When did the first one open?", (), gold_doc_id=rail, history=history)
    ev = evaluate_mode(retriever, [follow_up], "lexical", ks=(1,))
    (row,) = ev.per_question
    assert row["query"] == "Tell me about the Shinkansen railway lines in Japan. When did the first one open?"
    assert row["question"] == "When did the first one open?" and row["first_relevant_rank"] == 1
    _, scores = tune_dense_weight(retriever, [follow_up])
    assert scores[0.0] == 1.0  # lexical alone finds the rail document through the previous user message
    report = evaluate_retrieval_modes(retriever, [follow_up, QAExample("s", "Which Sicilian volcano?", ("Etna",))])
    assert report.follow_up_questions == 1 and report.questions == 2
