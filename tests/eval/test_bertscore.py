"""BERTScore F1 with the local MiniLM files, checked against greedy matching recomputed with transformers."""

import pytest
import torch

from eval.metrics import compute_metrics
from eval.metrics.base import EvalSample
from eval.metrics.bertscore import BertScoreMetric, resolve_bertscore_model
from llmops.config import BertScoreConfig, MetricsConfig, RagasConfig
from tests.conftest import MINILM

LAYER = 4


def sample(qid, answer, references):
    return EvalSample(qid, "q?", answer, tuple(references), ())


@pytest.fixture(scope="module")
def metric():
    return BertScoreMetric(BertScoreConfig(model=MINILM, num_layers=LAYER, batch_size=8))


def greedy_f1(candidate: str, reference: str) -> float:
    """BERTScore by its definition: layer-LAYER token embeddings without [CLS]/[SEP], cosine similarity, each
    token matched to its most similar token on the other side; P and R are the mean best matches."""
    from transformers import AutoModel, AutoTokenizer

    path = str(resolve_bertscore_model(MINILM))
    tokenizer, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

    def embed(text):
        enc = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**enc, output_hidden_states=True).hidden_states[LAYER][0]
        return torch.nn.functional.normalize(hidden[1:-1], dim=-1)

    sim = embed(candidate) @ embed(reference).T
    precision, recall = sim.max(dim=1).values.mean().item(), sim.max(dim=0).values.mean().item()
    return 2 * precision * recall / (precision + recall)


def test_matches_greedy_matching_by_hand(metric):
    pairs = [("The capital of France is Paris.", "Paris is the capital of France."),
             ("Mount Etna is in Sicily.", "Bananas are rich in potassium.")]
    values = metric.compute([sample(str(i), c, [r]) for i, (c, r) in enumerate(pairs)])["bertscore_f1"]
    expected = [greedy_f1(c, r) for c, r in pairs]
    assert values.per_sample == (pytest.approx(expected[0], abs=1e-4), pytest.approx(expected[1], abs=1e-4))
    assert values.value == pytest.approx(sum(expected) / 2, abs=1e-4)
    assert expected[0] > expected[1]  # the paraphrase scores above the unrelated pair


def test_identical_text_scores_one_and_best_reference_wins(metric):
    values = metric.compute([
        sample("same", "Paris is the capital of France.", ["Paris is the capital of France."]),
        sample("multi", "Paris is the capital of France.", ["Bananas are yellow.", "Paris is the capital of France."]),
    ])["bertscore_f1"]
    assert values.per_sample == (pytest.approx(1.0, abs=1e-5), pytest.approx(1.0, abs=1e-5))


def test_empty_answer_scores_zero_and_missing_reference_is_left_out(metric):
    values = metric.compute([sample("empty", "  ", ["Paris"]), sample("noref", "Paris", [])])["bertscore_f1"]
    assert values.per_sample == (0.0, None)
    assert values.value == 0.0 and "no reference answer" in values.reason


def test_missing_model_is_not_measured_and_other_metrics_still_run(tmp_path):
    config = MetricsConfig(
        bertscore=BertScoreConfig(model=str(tmp_path / "no-such-model"), num_layers=2),
        ragas=RagasConfig(enabled=False),
    )
    values = compute_metrics([sample("a", "the cat sat on the mat", ["the cat sat on the mat"])], config, MINILM)
    assert not values["bertscore_f1"].measured
    assert "eval.metrics.bertscore.model" in values["bertscore_f1"].reason
    assert values["bertscore_f1"].per_sample == (None,)
    assert values["bleu"].value == pytest.approx(1.0) and values["rouge_l"].value == pytest.approx(1.0)


def test_layer_beyond_the_model_is_not_measured():
    config = MetricsConfig(bleu=False, rouge=False, bertscore=BertScoreConfig(model=MINILM, num_layers=99),
                           ragas=RagasConfig(enabled=False))
    value = compute_metrics([sample("a", "x y", ["x y"])], config, MINILM)["bertscore_f1"]
    assert not value.measured and "num_layers" in value.reason
