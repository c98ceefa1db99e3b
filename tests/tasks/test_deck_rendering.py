"""Every stage's Deck, as the Flyte console shows it, renders in headless Chromium with its sections visible.

The real tasks run in-process (flytekit local execution) on a small corpus with MiniLM and the tiny LLM: ingest,
chunk, embed_shard, build_index, evaluate_retrieval (run summary), evaluate_model, apply_gates and promote, each
writing its deck.html (embed_shard, a map-task subtask, publishes none: the index deck shows its shards). Each deck is then screenshotted (not blank) and probed for which report headings are laid out, i.e.
not hidden in a collapsed tab. The fine-tune deck is rendered in tests/tasks/test_finetune.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from flytekit.core.context_manager import FlyteContextManager
from flytekit.core.data_persistence import FileAccessProvider

from llmops.config import parse_config
from llmops.provenance.stage_inputs import stage_keys
from scripts.chromium import dom_text, find_chromium, nonwhite_fraction, render_to_png
from tests.conftest import MINILM, REPO_ROOT, write_corpus
from tests.helpers import CORPUS

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.skipif(find_chromium() is None,
                       reason="Chromium not found: apt-get install -y chromium fonts-noto-cjk (CI installs both)"),
]

QA = [
    {"question": "When did the first Shinkansen line open?", "answers": ["1964"]},
    {"question": "Which volcano in Sicily is very active?", "answers": ["Mount Etna"]},
    {"question": "富士山の標高は何メートルですか？", "answers": ["3776メートル"]},
]

# Headings (their beginnings) each deck must show laid out, not hidden.
EXPECTED = {
    "ingest": ["Ingest"],
    "chunk": ["Chunks"],
    "build_index": ["Index artifact", "Embedding shards"],
    "evaluate_retrieval": ["Retrieval quality", "Index artifact", "Chunks"],
    "evaluate_model": ["Evaluation: base", "Metrics", "Retrieval"],
    "apply_gates": ["Promotion gates"],
    "promote": ["Release"],
}

VISIBILITY_PROBE = """<script>
const shown = [...document.querySelectorAll('.llmops-report h2')].filter(h => h.getClientRects().length > 0);
document.title = JSON.stringify(shown.map(h => h.textContent));
</script>"""


def run_task(sandbox: Path, task, **inputs):
    """Run one task locally with its own sandbox folder, so its deck.html is told apart from the others'."""
    provider = FileAccessProvider(local_sandbox_dir=str(sandbox), raw_output_prefix=str(sandbox / "raw"))
    with FlyteContextManager.with_context(FlyteContextManager.current_context().with_file_access(provider)):
        return task(**inputs)


@pytest.fixture(scope="module")
def decks(tmp_path_factory) -> dict[str, Path]:
    from tasks.chunk import chunk
    from tasks.embed import embed_shard, plan_shards
    from tasks.evaluate import apply_gates, evaluate_model
    from tasks.index import build_index
    from tasks.ingest import ingest
    from tasks.promote import promote
    from tasks.retrieval_eval import evaluate_retrieval

    tmp = tmp_path_factory.mktemp("decks")
    corpus = write_corpus(tmp / "corpus", CORPUS)
    (corpus / "broken.bin").write_bytes(b"\x00\x01")  # a skipped input, so the ingest deck lists one
    qa = tmp / "qa.jsonl"
    qa.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in QA), encoding="utf-8")
    cfg = parse_config(
        {
            "corpus": {"sources": [{"kind": "directory", "path": str(corpus)}]},
            "embedding": {"model": MINILM, "shard_size": 2},
            "chunking": {"max_tokens": 64, "overlap_tokens": 8},
            "retrieval": {"k": 3, "fusion": {"dense_weight": 0.5}},
            "answerability": {"threshold": 0.0},  # fixed threshold: no calibration split
            "eval": {"qa_path": str(qa), "metrics": {"bertscore": {"model": MINILM, "num_layers": 6}}},
            "artifacts": {"root": str(tmp / "artifacts")},
            "llm": {"model": str(REPO_ROOT / "examples/tiny-llm"), "backend": "transformers", "max_model_len": 1024,
                    "max_lora_rank": 8, "device": "cpu", "dtype": "float32"},
            "sampling": {"max_tokens": 8},
            "gates": {"rules": [{"metric": "retrieval.recall@5", "floor": 0.0}, {"metric": "rouge_l", "max_drop": 1}]},
        }
    ).resolved()
    config_json, keys = cfg.model_dump_json(), stage_keys(cfg)

    sandboxes = {name: tmp / "sandbox" / name for name in EXPECTED}
    docs = run_task(sandboxes["ingest"], ingest, config_json=config_json)
    chunks = run_task(sandboxes["chunk"], chunk, config_json=config_json, stage_key=keys["chunk"],
                      documents_uri=docs.documents_uri, corpus_fingerprint=docs.corpus_fingerprint)
    shards = plan_shards(config_json=config_json, stage_key=keys["plan_shards"], chunks_uri=chunks.chunks_uri)
    assert len(shards) >= 2
    vectors = [
        run_task(tmp / "sandbox" / "embed_shard" / str(i), embed_shard, config_json=config_json,
                 stage_key=keys["embed"], model_digest=chunks.model_digest, shard_uri=s)
        for i, s in enumerate(shards)
    ]
    assert not list((tmp / "sandbox" / "embed_shard").rglob("deck.html"))
    built = run_task(sandboxes["build_index"], build_index, config_json=config_json, stage_key=keys["index"],
                     chunks_uri=chunks.chunks_uri,
                     vector_uris=vectors, model_digest=chunks.model_digest, max_tokens=chunks.max_tokens,
                     corpus_fingerprint=docs.corpus_fingerprint, ingest_report_json=docs.report_json,
                     qa_uri=docs.qa_uri)
    report = run_task(sandboxes["evaluate_retrieval"], evaluate_retrieval, config_json=config_json,
                      stage_key=keys["retrieval_eval"], index=built.index, qa_uri=docs.qa_uri, chunks_uri=chunks.chunks_uri,
                      ingest_report_json=docs.report_json, index_stats_json=built.stats_json)
    base = run_task(sandboxes["evaluate_model"], evaluate_model, config_json=config_json,
                    stage_key=keys["evaluate"], index=built.index,
                    qa_uri=docs.qa_uri, documents_uri=docs.documents_uri, retrieval_report=report, label="base")
    gates = run_task(sandboxes["apply_gates"], apply_gates, config_json=config_json,
                     base_report_uri=base.report_uri, finetuned_report_uri="")
    run_task(sandboxes["promote"], promote, config_json=config_json, index=built.index,
             candidate_report_uri=gates.candidate_report_uri, decision_uri=gates.decision_uri)

    found = {}
    for name, sandbox in sandboxes.items():
        (deck,) = sandbox.rglob("deck.html")
        found[name] = deck
    return found


@pytest.mark.parametrize("stage", list(EXPECTED))
def test_stage_deck_renders_with_its_sections_visible(decks, stage, tmp_path):
    deck = decks[stage]
    html = deck.read_text(encoding="utf-8")
    assert '<div class="llmops-report">' in html  # inserted as markup, not escaped by flytekit

    png = tmp_path / f"{stage}.png"
    render_to_png(deck, png, height=1000)
    assert 0.02 < nonwhite_fraction(png) < 0.9, f"{stage}: blank or solid page"

    probe = tmp_path / "probe.html"
    probe.write_text(html + VISIBILITY_PROBE, encoding="utf-8")
    dom = dom_text(probe)
    shown = json.loads(re.search(r"<title>(.*?)</title>", dom, re.S).group(1).replace("&quot;", '"'))
    missing = [e for e in EXPECTED[stage] if not any(h.startswith(e) for h in shown)]
    assert not missing, f"{stage}: {missing} not visible; shown: {shown}"
    assert "Traceback" not in dom


def test_decks_say_what_the_stage_did(decks):
    """A few facts per deck that make it worth opening."""
    text = {stage: path.read_text(encoding="utf-8") for stage, path in decks.items()}
    assert "Skipped inputs (1)" in text["ingest"] and "broken.bin" in text["ingest"]
    assert "<svg" in text["chunk"]  # chunk-length histogram
    assert "vectors: embedded in this run" in text["build_index"]
    # One row per shard (shard_size 2, a fresh cache): each embedded its chunks on the CPU in this run.
    shards = int(re.search(r"Embedding shards \((\d+)\)", text["build_index"]).group(1))
    cells = r'<td class="num">(\d+)</td>'
    rows = re.findall(rf"<td>cpu</td>{cells}{cells}{cells}{cells}", text["build_index"])
    assert shards >= 2 and len(rows) == shards
    assert all(int(n) == int(now) > 0 and (cache, reused) == ("0", "0") for n, now, cache, reused in rows)
    assert "recall@" in text["evaluate_retrieval"]
    assert "Samples, worst" in text["evaluate_model"] and "富士山" in text["evaluate_model"]
    assert "no baseline" in text["apply_gates"]
    # rouge_l (max_drop only, no production release yet) is skipped, never a pass; the floor gate passed.
    assert '<span class="badge skip">\u2013 skipped</span>' in text["apply_gates"]
    assert "passed: 1 of 2 gates checked, skipped: rouge_l (no baseline)" in text["apply_gates"]
    assert "Random test model" in text["evaluate_model"] and "latency per request p50" in text["evaluate_model"]
    assert "promoted to production" in text["promote"] and "gate decision (this run)" in text["promote"]
