"""The answerability threshold: calibrated at index time on a real index, recorded in its manifest."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from llmops.corpus.qa import read_qa
from llmops.corpus.documents import split_answerable
from llmops.index.answerability import THRESHOLD_RESOLUTION, threshold_for_recall
from llmops.index.artifact import read_manifest
from llmops.index.build import index_version
from llmops.index.retriever import Retriever
from llmops.index.tuning import split_calibration
from llmops.provenance.stage_inputs import stage_config
from tests.conftest import write_corpus
from tests.helpers import CORPUS, build, make_config

QA = [
    {"question": "Which Sicilian volcano is one of the most active?", "answers": ["Mount Etna"]},
    {"question": "What is matcha made of?", "answers": ["green tea leaves"]},
    {"question": "When did the first Shinkansen line open?", "answers": ["1964"]},
    {"question": "What is green tea made from?", "answers": ["Camellia sinensis"]},
    {"question": "富士山の標高は何メートルですか？", "answers": ["3776メートル"]},
    {"question": "握り寿司が広まったのはいつですか？", "answers": ["江戸時代"]},
    {"question": "What rises through the vents of a volcano?", "answers": ["Magma"]},
    {"question": "How do I reset my corporate VPN password?", "answerable": False},
    {"question": "What is the deductible of the company's dental insurance?", "answerable": False},
    {"question": "Which JavaScript framework does the billing dashboard use?", "answerable": False},
]


def qa_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in QA), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("answerability")
    # most questions in the calibration split, so both kinds are there
    cfg = make_config(tmp, write_corpus(tmp / "corpus", CORPUS), eval={"qa_path": qa_file(tmp),
                                                                       "calibration_fraction": 0.9})
    out, ing, _ = build(cfg)
    return cfg, out, ing


def test_auto_threshold_keeps_the_target_share_of_answerable_calibration_questions(calibrated):
    cfg, out, ing = calibrated
    manifest = read_manifest(out.artifact_uri)
    section = manifest.answerability
    assert section.calibrated and section.threshold_from == "calibrated"
    assert manifest.calibration_fraction == 0.9 and section.target_answerable_recall == 0.95
    calibration, _ = split_calibration(read_qa(ing.qa_uri), 0.9)
    answerable, unanswerable = split_answerable(calibration)
    assert (section.answerable_questions, section.unanswerable_questions) == (len(answerable), len(unanswerable))
    assert answerable and unanswerable

    retriever = Retriever.load(out.artifact_uri)
    ok = retriever.best_dense_similarity([ex.question for ex in answerable])
    bad = retriever.best_dense_similarity([ex.question for ex in unanswerable])
    # the highest threshold keeping >= 95% of the answerable ones: with fewer than 20, every one of them
    assert ok.min() - THRESHOLD_RESOLUTION < section.threshold <= ok.min()
    assert section.answerable_kept == 1.0
    assert section.unanswerable_rejected == pytest.approx(float(np.mean(bad < section.threshold)), abs=1e-4)
    # off-topic questions score below every answerable one on this corpus
    assert section.unanswerable_rejected == 1.0
    # fusion was tuned on the answerable calibration questions only
    assert manifest.retrieval.fusion.calibration_questions == len(answerable)


def test_best_dense_similarity_is_the_top_dense_hits_cosine(calibrated):
    _, out, _ = calibrated
    retriever = Retriever.load(out.artifact_uri)
    questions = [QA[0]["question"], QA[7]["question"]]
    scores = retriever.best_dense_similarity(questions)
    assert scores.tolist() == pytest.approx([retriever.search(q, 1, "dense")[0].score for q in questions])
    assert -1.0 <= scores.min() and scores.max() <= 1.0 and scores[0] > scores[1]


def test_threshold_for_recall():
    assert threshold_for_recall([0.9, 0.8, 0.7, 0.6], 1.0) == pytest.approx(0.6)
    assert threshold_for_recall([0.6, 0.9, 0.7, 0.8], 0.75) == pytest.approx(0.7)
    assert threshold_for_recall([0.9, 0.8, 0.7, 0.6], 0.5) == pytest.approx(0.8)
    assert threshold_for_recall([0.61237], 0.95) == pytest.approx(0.6123)  # rounded down, never above a kept score
    with pytest.raises(ValueError):
        threshold_for_recall([], 0.95)


def test_no_eval_set_falls_back_and_a_set_threshold_is_the_configs(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", CORPUS)
    fallback = make_config(tmp_path, corpus, answerability={"fallback_threshold": 0.25})
    section = read_manifest(build(fallback)[0].artifact_uri).answerability
    assert (section.threshold, section.threshold_from, section.calibrated) == (0.25, "fallback", False)
    assert "no answerable eval question" in section.chosen_by

    fixed = make_config(tmp_path, corpus, answerability={"threshold": 0.3}, eval={"qa_path": qa_file(tmp_path)},
                        retrieval={"fusion": {"dense_weight": 0.5}})
    out, _, _ = build(fixed)
    manifest = read_manifest(out.artifact_uri)
    assert (manifest.answerability.threshold, manifest.answerability.threshold_from) == (0.3, "config")
    assert manifest.calibration_fraction is None  # nothing was tuned on the eval set: eval scores every question


def test_the_threshold_settings_are_the_index_stages_inputs(calibrated, tmp_path):
    cfg, out, ing = calibrated
    view = stage_config(cfg, "index")  # what the index stage may read; anything else raises
    assert view.answerability.threshold == "auto"
    args = (f"{tmp_path}/chunks.parquet", "digest", "Flat", ing.qa_uri)
    other = cfg.model_copy(update={"answerability": cfg.answerability.model_copy(
        update={"target_answerable_recall": 0.8})})
    assert index_version(view, *args) != index_version(stage_config(other, "index"), *args)


def test_a_manifest_from_before_answerability_still_loads(calibrated, tmp_path):
    _, out, _ = calibrated
    copy = tmp_path / "old"
    shutil.copytree(out.artifact_uri, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest.pop("answerability")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    old = read_manifest(copy)
    assert old.answerability is None and old.calibration_fraction == 0.9  # its fusion weight was tuned


def test_a_query_cache_copy_embeds_each_question_once(tmp_path):
    """Evaluation searches a question, then scores its answerability: the copy with a query cache embeds it once."""
    cfg = make_config(tmp_path, write_corpus(tmp_path / "corpus", CORPUS))
    out, _, _ = build(cfg)
    retriever = Retriever.load(out.artifact_uri)
    cached = retriever.with_query_cache(8)
    hits = cached.search_batch(["Where is Etna?"], 3, "dense")
    score = cached.best_dense_similarity(["Where is Etna?"])[0]
    assert (cached.query_vectors.misses, cached.query_vectors.hits) == (1, 1)
    assert score == pytest.approx(hits[0][0].score, abs=1e-5)
    assert retriever.query_vectors.size == 0 and cached.manifest is retriever.manifest  # the original is untouched
