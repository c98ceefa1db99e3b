"""RAGAS metrics: offline non-LLM metrics against hand values, and judge failure handling against real endpoints."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

from eval.metrics.base import EvalSample
from eval.metrics.ragas_metrics import JUDGE_KEYS, NON_LLM_KEYS, RagasMetric, run_sync
from llmops.config import JudgeConfig, RagasConfig
from llmops.llm.vllm_server import free_port
from tests.conftest import MINILM

PARIS = "Paris is the capital and largest city of France."
ETNA = "Mount Etna is an active stratovolcano on the east coast of Sicily."
BANANA = "Bananas are berries rich in potassium."


def sample(qid, contexts, reference_contexts, answer="Paris.", references=("Paris",), lang="en"):
    return EvalSample(qid, "What is the capital of France?", answer, tuple(references), tuple(contexts),
                      tuple(reference_contexts), lang)


@pytest.fixture(scope="module")
def offline():
    return RagasMetric(RagasConfig(), MINILM)


def test_tracking_is_off():
    import ragas._analytics

    assert os.environ["RAGAS_DO_NOT_TRACK"] == "true"
    assert ragas._analytics.do_not_track() is True


def test_context_recall_and_precision_match_hand_values(offline):
    samples = [
        sample("rank1", [PARIS, BANANA], [PARIS]),  # relevant first: AP = 1
        sample("rank2", [BANANA, PARIS], [PARIS]),  # relevant second: AP = (1/2 * 1) / 1 = 0.5
        sample("half", [PARIS, BANANA], [PARIS, ETNA]),  # one of two reference contexts retrieved: recall 0.5
        sample("none", [BANANA], [PARIS]),
        sample("empty", [], [PARIS]),  # nothing retrieved: 0, not an error
    ]
    values = offline.compute(samples)
    recall, precision = values["ragas.context_recall"], values["ragas.context_precision"]
    assert recall.per_sample == pytest.approx((1.0, 1.0, 0.5, 0.0, 0.0))
    assert precision.per_sample == pytest.approx((1.0, 0.5, 1.0, 0.0, 0.0), abs=1e-9)
    assert recall.value == pytest.approx(2.5 / 5) and precision.value == pytest.approx(2.5 / 5, abs=1e-9)


def test_context_match_is_levenshtein_similarity_over_half(offline):
    edited = PARIS.replace("largest", "biggest")  # a small edit still matches
    chunk = PARIS[:20]  # a chunk shorter than half its reference paragraph does not (documented limitation)
    values = offline.compute([sample("edit", [edited], [PARIS]), sample("chunk", [chunk], [PARIS])])
    assert values["ragas.context_recall"].per_sample == (1.0, 0.0)


def test_semantic_similarity_is_embedding_cosine_best_over_references(offline, minilm_embedder):
    answer = "The capital of France is Paris."
    refs = ("Bananas are yellow.", "Paris is the capital of France.")
    values = offline.compute([
        sample("multi", [PARIS], [PARIS], answer=answer, references=refs),
        sample("same", [PARIS], [PARIS], answer=refs[1], references=refs[1:]),
    ])
    vectors = minilm_embedder.embed_passages([answer, *refs])
    expected = max(float(np.dot(vectors[0], vectors[1])), float(np.dot(vectors[0], vectors[2])))
    sim = values["ragas.semantic_similarity"]
    assert sim.per_sample == (pytest.approx(expected, abs=1e-5), pytest.approx(1.0, abs=1e-5))
    assert expected == pytest.approx(float(np.dot(vectors[0], vectors[2])), abs=1e-6)  # the right reference won


def test_japanese_semantic_similarity_of_identical_text_is_one(offline):
    text = "富士山の標高は3776メートルです。"
    value = offline.compute([sample("ja", [text], [], answer=text, references=(text,), lang="ja")])
    assert value["ragas.semantic_similarity"].value == pytest.approx(1.0, abs=1e-5)
    assert not value["ragas.context_recall"].measured  # no reference contexts at all
    assert value["ragas.context_recall"].reason == "no sample applies: 1 with no reference contexts"


def test_without_judge_only_non_llm_keys(offline):
    assert offline.keys == NON_LLM_KEYS
    assert set(offline.compute([sample("a", [PARIS], [PARIS])])) == set(NON_LLM_KEYS)


def test_missing_embedding_model_fails_only_the_metrics_that_embed(tmp_path):
    metric = RagasMetric(RagasConfig(embedding_model=str(tmp_path / "absent")), MINILM)
    values = metric.compute([sample("a", [PARIS], [PARIS])])
    assert values["ragas.context_recall"].value == 1.0
    assert not values["ragas.semantic_similarity"].measured
    assert "EmbeddingError" in values["ragas.semantic_similarity"].reason


def test_unreachable_judge_is_not_measured_per_metric_and_nothing_crashes():
    """A real connection to a port nobody listens on: every judged metric is not measured, with the reason."""
    judge = JudgeConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", model="judge", max_retries=0, timeout_s=5)
    metric = RagasMetric(RagasConfig(judge=judge), MINILM)
    assert metric.keys == NON_LLM_KEYS + JUDGE_KEYS
    values = metric.compute([sample("a", [PARIS], [PARIS]), sample("b", [ETNA], [PARIS])])
    for key in JUDGE_KEYS:
        assert not values[key].measured, key
        assert values[key].reason.startswith("2 of 2 samples failed; first (a): "), values[key].reason
        assert "Connection" in values[key].reason
        assert values[key].per_sample == (None, None)
    assert values["ragas.context_recall"].per_sample == (1.0, 0.0)  # offline metrics unaffected


def test_judge_skips_and_fixed_scores_need_no_call():
    """Samples the judge cannot apply to are decided without calling it (the endpoint here does not exist)."""
    judge = JudgeConfig(base_url=f"http://127.0.0.1:{free_port()}/v1", model="judge", max_retries=0, timeout_s=5)
    values = RagasMetric(RagasConfig(judge=judge), MINILM).compute([sample("empty", [], [PARIS], answer="")])
    assert values["ragas.faithfulness"].reason == "no sample applies: 1 with empty answer"
    assert values["ragas.answer_relevancy"].value == 0.0  # an empty answer addresses nothing
    assert values["ragas.llm_context_precision"].value == 0.0  # nothing retrieved
    assert values["ragas.llm_context_recall"].value == 0.0


def test_run_sync_works_inside_a_running_event_loop():
    import asyncio

    async def inner():
        return 42

    async def outer():
        return run_sync(inner)

    assert run_sync(inner) == 42
    assert asyncio.run(outer()) == 42


# ---------------------------------------------------------------------------------------------------------------
# Judge path against a local OpenAI-compatible endpoint with rule-based replies (tests/eval/scripted_judge.py)
# ---------------------------------------------------------------------------------------------------------------

QUESTION = "What is the capital of France?"
ANSWER = "Paris is the capital of France. Paris is in Germany."
REFERENCE = "Paris is the capital of France."
CONTEXTS = ["Paris is the capital of France and its largest city.", BANANA]


def judged(judge, samples, **config):
    cfg = JudgeConfig(base_url=judge.base_url, model="judge", **{"max_retries": 0, "timeout_s": 30, **config})
    return RagasMetric(RagasConfig(judge=cfg), MINILM).compute(samples)


def qa(qid, contexts, answer=ANSWER):
    return EvalSample(qid, QUESTION, answer, (REFERENCE,), tuple(contexts), (), "en")


def test_judge_verdicts_become_hand_computed_scores():
    from tests.eval.scripted_judge import ScriptedJudge

    with ScriptedJudge(relevance_question=QUESTION) as judge:
        values = judged(judge, [qa("relevant-first", CONTEXTS), qa("relevant-second", CONTEXTS[::-1])])
    # Two statements, one found in the contexts -> faithfulness 1/2 for both samples.
    assert values["ragas.faithfulness"].per_sample == (0.5, 0.5)
    # The judge's question back from the answer is the question itself: cosine 1 (strictness 3 -> 3 calls each).
    assert values["ragas.answer_relevancy"].per_sample == (pytest.approx(1.0, abs=1e-5),) * 2
    assert judge.calls["AnswerRelevanceOutput"] == 6
    # Verdicts [1, 0] -> average precision 1; [0, 1] -> (1/2) / 1 = 0.5.
    assert values["ragas.llm_context_precision"].per_sample == pytest.approx((1.0, 0.5), abs=1e-9)
    assert values["ragas.llm_context_precision"].value == pytest.approx(0.75, abs=1e-9)
    # The one reference sentence is in the contexts.
    assert values["ragas.llm_context_recall"].per_sample == (1.0, 1.0)


def test_noncommittal_answer_has_zero_relevancy():
    from tests.eval.scripted_judge import ScriptedJudge

    with ScriptedJudge(relevance_question=QUESTION) as judge:
        values = judged(judge, [qa("evasive", CONTEXTS, answer="I don't know.")])
    assert values["ragas.answer_relevancy"].value == 0.0


def test_invalid_json_from_the_judge_fails_that_metric_only_after_the_retries():
    from tests.eval.scripted_judge import ScriptedJudge

    with ScriptedJudge(relevance_question=QUESTION) as judge:
        judge.invalid_json.add("NLIStatementOutput")
        values = judged(judge, [qa("a", CONTEXTS)], max_retries=2)
    faithfulness = values["ragas.faithfulness"]
    assert not faithfulness.measured and faithfulness.per_sample == (None,)
    assert "InstructorRetryException" in faithfulness.reason and "Invalid JSON" in faithfulness.reason
    assert judge.calls["NLIStatementOutput"] == 3  # the first attempt and max_retries=2 re-asks
    assert values["ragas.llm_context_recall"].value == 1.0  # the other judged metrics are unaffected
    assert values["ragas.context_recall"].reason.startswith("no sample applies")


def test_nan_from_the_judge_is_not_measured():
    from tests.eval.scripted_judge import ScriptedJudge

    with ScriptedJudge(relevance_question=QUESTION) as judge:
        judge.empty.add("StatementGeneratorOutput")  # no statements: ragas returns NaN
        values = judged(judge, [qa("a", CONTEXTS), qa("b", CONTEXTS)])
    assert values["ragas.faithfulness"].value is None
    assert values["ragas.faithfulness"].reason == "2 of 2 samples failed; first (a): judge gave a nan score"


def test_judge_timeout_is_not_measured():
    from tests.eval.scripted_judge import ScriptedJudge

    with ScriptedJudge(relevance_question=QUESTION) as judge:
        judge.delay_s["ContextRecallOutput"] = 3.0
        values = judged(judge, [qa("a", CONTEXTS)], timeout_s=0.5)
    assert not values["ragas.llm_context_recall"].measured
    assert "timed out" in values["ragas.llm_context_recall"].reason
    assert values["ragas.faithfulness"].value == 0.5


# ---------------------------------------------------------------------------------------------------------------
# Judge path against a real vLLM server with a tiny random model (slow): garbage replies, handled per metric
# ---------------------------------------------------------------------------------------------------------------


def _vllm_python() -> str:
    from tests.conftest import REPO_ROOT

    python = os.environ.get("LLMOPS_VLLM_PYTHON") or str(REPO_ROOT / ".venv-vllm" / "bin" / "python")
    if not os.path.exists(python):
        pytest.skip(f"no vLLM environment at {python} (set LLMOPS_VLLM_PYTHON; README, 'Serving on a CPU')")
    return python


@contextlib.contextmanager
def _minimal_vllm(model, workdir):
    """Start `python -m vllm.entrypoints.openai.api_server` (flags from PLATFORM.md), yield its base URL."""
    import subprocess
    import time
    import urllib.request

    port = free_port()
    for name in ("tmp", "cache", "hf"):
        (workdir / name).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(workdir / "tmp"), "VLLM_CACHE_ROOT": str(workdir / "cache"),
           "HF_HOME": str(workdir / "hf"), "HF_HUB_OFFLINE": "1"}
    log = open(workdir / "server.log", "wb")
    proc = subprocess.Popen(
        [_vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), "--enforce-eager",
         "--kv-cache-memory-bytes", "67108864", "--max-model-len", "4096", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {proc.returncode}; see {workdir / 'server.log'}")
            try:
                urllib.request.urlopen(base_url + "/models", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"vLLM did not start in 300 s; see {workdir / 'server.log'}") from None
                time.sleep(1)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def vllm_judge(tmp_path_factory):
    """(base_url, served model name) of a real vLLM server running an untrained tiny Llama.

    Its own server rather than the session one in tests/llm_fixtures.py: ragas' judge prompts need a 4096-token
    context, so that the random model actually generates (garbage) instead of every request being too long.
    """
    import json
    import urllib.request

    from llmops.llm.tiny_llm import build_tiny_llm

    tmp = tmp_path_factory.mktemp("vllm-judge")
    model = build_tiny_llm(tmp / "tiny-llm", seed=0)
    try:
        from llmops.llm.vllm_server import VLLMServer
    except ImportError:  # the shared launcher is not there: start the server directly
        server = _minimal_vllm(model, tmp / "server")
    else:
        server = VLLMServer(model, served_model_name="judge", max_model_len=4096, dtype="float32",
                            extra_args=("--enforce-eager", "--kv-cache-memory-bytes", "67108864"),
                            workdir=tmp / "server", python=_vllm_python())
    with server as handle:
        base_url = (handle if isinstance(handle, str) else handle.base_url).rstrip("/")
        base_url = base_url if base_url.endswith("/v1") else base_url + "/v1"
        models = json.loads(urllib.request.urlopen(base_url + "/models", timeout=10).read())
        yield base_url, models["data"][0]["id"]


@pytest.mark.slow
def test_garbage_from_a_real_vllm_judge_is_not_measured_and_nothing_crashes(vllm_judge):
    import json
    import urllib.request

    base_url, model = vllm_judge
    # A random model never closes its JSON: replies stop at max_tokens (IncompleteOutputException) or prompts
    # outgrow its context (HTTP 400 -> InstructorRetryException). Either way: not measured, with the reason.
    judge = JudgeConfig(base_url=base_url, model=model, max_tokens=64, max_retries=0, timeout_s=120)
    values = RagasMetric(RagasConfig(judge=judge), MINILM).compute([
        sample("q1", [PARIS], [PARIS], answer="Paris is the capital of France.", references=("Paris",)),
    ])
    for key in JUDGE_KEYS:
        assert not values[key].measured, (key, values[key])
        assert values[key].reason.startswith("1 of 1 samples failed; first (q1): "), values[key].reason
        assert any(e in values[key].reason for e in ("IncompleteOutputException", "InstructorRetryException"))
    assert values["ragas.context_recall"].value == 1.0
    assert values["ragas.semantic_similarity"].measured
    assert json.loads(urllib.request.urlopen(base_url + "/models", timeout=10).read())["data"]  # server still up
