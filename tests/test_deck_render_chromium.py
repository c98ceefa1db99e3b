"""Reports render in headless Chromium, offline: a standalone page and a real flytekit deck, escaping intact."""

from __future__ import annotations

import html
import json
import random
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from flytekit import task
from flytekit.core.context_manager import FlyteContextManager
from flytekit.core.data_persistence import FileAccessProvider

from llmops.htmlkit import (
    Html,
    bar_chart_svg,
    fragment,
    histogram_svg,
    kv_table,
    page,
    publish_deck,
    section,
    status_badge,
    table,
)
from scripts.chromium import dom_text, find_chromium, nonwhite_fraction, read_png, render_to_png

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="Chromium not found: apt-get install -y chromium fonts-noto-cjk (CI installs both), or set CHROMIUM",
)

# Both payloads would set document.title if they reached the page as markup.
IMG_XSS = "<img src=x onerror=\"document.title='pwned'\">"
SCRIPT_XSS = "<script>document.title='pwned'</script>"
HEADINGS = ("Summary", "Retrieved chunks", "Chunk length", "Retrieval quality", "Champion vs challenger")
JA_CELL = "東京は日本の首都です。"


def sample_sections() -> list[str]:
    rng = random.Random(0)
    lengths = [rng.gauss(350, 80) for _ in range(1000)]
    return [
        section(
            "Summary",
            kv_table({"documents": 12_345, "chunks": 98_765, "gate": status_badge(True, "passed")}),
            note="sample run",
        ),
        section(
            "Retrieved chunks",
            table(
                ["query", "rank", "score", "text"],
                [["首都は？", 1, 0.91234, JA_CELL], ["xss", 2, 0.5, IMG_XSS], ["script", 3, 0.25, SCRIPT_XSS]],
            ),
        ),
        section("Chunk length", histogram_svg(lengths, x_label="tokens per chunk")),
        section(
            "Retrieval quality",
            bar_chart_svg(
                ["recall@1", "recall@10"],
                {"dense": [0.61, 0.88], "lexical": [0.55, 0.81], "hybrid": [0.66, 0.91]},
                value_label="recall",
            ),
        ),
        section(
            "Champion vs challenger",
            bar_chart_svg(
                ["正答率", "faithfulness"], {"champion": [0.71, 0.83], "challenger": [0.74, 0.85]}, horizontal=False
            ),
        ),
    ]


def document_title(dom: str) -> str:
    return html.unescape(re.search(r"<title>(.*?)</title>", dom, re.S).group(1))


@pytest.mark.chromium
@needs_chromium
def test_report_page_renders_with_content_and_no_injected_code(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    report.write_text(page("Retrieval report", *sample_sections()), encoding="utf-8")

    render_to_png(report, tmp_path / "report.png")
    assert 0.03 < nonwhite_fraction(tmp_path / "report.png") < 0.9

    dom = dom_text(report)
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in dom
    assert f"<td>{JA_CELL}</td>" in dom
    assert '<td class="num">0.9123</td>' in dom
    assert dom.count("<svg") == 3
    assert document_title(dom) == "Retrieval report"
    assert "&lt;img src=x onerror" in dom and "&lt;script&gt;" in dom


@pytest.mark.chromium
@needs_chromium
def test_title_probe_detects_unescaped_markup(tmp_path: Path) -> None:
    """Control for the test above: the same payloads as trusted markup do change the title."""
    for payload in (IMG_XSS, SCRIPT_XSS):
        report = tmp_path / "unsafe.html"
        report.write_text(page("t", section("s", table(["cell"], [[Html(payload)]]))), encoding="utf-8")
        assert document_title(dom_text(report)) == "pwned"


@task(enable_deck=True, deck_fields=())
def report_task() -> None:
    publish_deck("Retrieval report", fragment(*sample_sections()))


# Appended to a copy of deck.html: after flytekit's own script has opened the first tab, list the report headings
# that are actually laid out (not inside a display:none tab).
VISIBILITY_PROBE = """<script>
const shown = [...document.querySelectorAll('.llmops-report h2')].filter(h => h.getClientRects().length > 0);
document.title = JSON.stringify(shown.map(h => h.textContent));
</script>"""


def run_locally_writing_deck(tmp_path: Path) -> Path:
    """Run `report_task` in-process; local runs write deck.html into a random folder of the local sandbox."""
    sandbox = FileAccessProvider(local_sandbox_dir=str(tmp_path / "sandbox"), raw_output_prefix=str(tmp_path / "raw"))
    with FlyteContextManager.with_context(FlyteContextManager.current_context().with_file_access(sandbox)):
        report_task()
    (deck,) = (tmp_path / "sandbox").rglob("deck.html")
    return deck


@pytest.mark.chromium
@needs_chromium
def test_flytekit_deck_renders_report_visibly(tmp_path: Path) -> None:
    deck = run_locally_writing_deck(tmp_path)
    deck_html = deck.read_text(encoding="utf-8")
    assert '<div class="llmops-report">' in deck_html  # inserted as markup, not escaped by flytekit

    render_to_png(deck, tmp_path / "deck.png")
    assert 0.03 < nonwhite_fraction(tmp_path / "deck.png") < 0.9

    probe = tmp_path / "probe.html"
    probe.write_text(deck_html + VISIBILITY_PROBE, encoding="utf-8")
    assert json.loads(document_title(dom_text(probe))) == list(HEADINGS)


def encode_png(pixels: np.ndarray, filter_type: int) -> bytes:
    """A minimal RGB PNG encoder applying one filter to every row, to check the decoder against."""
    height, width, bpp = pixels.shape
    rows, prior, out = pixels.reshape(height, width * bpp).astype(int), np.zeros(width * bpp, dtype=int), b""
    for row in rows:
        left = np.concatenate([np.zeros(bpp, dtype=int), row[:-bpp]])
        upper_left = np.concatenate([np.zeros(bpp, dtype=int), prior[:-bpp]])
        p = left + prior - upper_left
        paeth = np.where(
            (abs(p - left) <= abs(p - prior)) & (abs(p - left) <= abs(p - upper_left)),
            left,
            np.where(abs(p - prior) <= abs(p - upper_left), prior, upper_left),
        )
        predictor = [0, left, prior, (left + prior) // 2, paeth][filter_type]
        out += bytes([filter_type]) + ((row - predictor) % 256).astype(np.uint8).tobytes()
        prior = row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(out)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("filter_type", range(5))
def test_png_decoder_undoes_every_filter(tmp_path: Path, filter_type: int) -> None:
    pixels = np.random.default_rng(filter_type).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = tmp_path / "t.png"
    path.write_bytes(encode_png(pixels, filter_type))
    assert (read_png(path) == pixels).all()
    pixels[:] = 255
    path.write_bytes(encode_png(pixels, filter_type))
    assert nonwhite_fraction(path) == 0.0


@pytest.mark.chromium
@needs_chromium
def test_comparison_deck_renders_best_marks_answers_side_by_side_and_escapes_answers(tmp_path: Path) -> None:
    from dataclasses import replace

    from eval.comparison.report import build_comparison
    from tasks.decks.compare import BEST_MARK, comparison_deck
    from tests.eval.test_comparison import runs

    a, b = runs()
    hostile = [replace(s, answer=IMG_XSS) if s.qid == "q2" else s for s in b.samples]
    report = build_comparison([a, replace(b, samples=hostile)], disagreement_rouge_l=0.5, created_at="t")
    deck = tmp_path / "compare.html"
    deck.write_text(page("Comparison", comparison_deck(report)), encoding="utf-8")

    render_to_png(deck, tmp_path / "compare.png")
    assert 0.03 < nonwhite_fraction(tmp_path / "compare.png") < 0.9
    dom = dom_text(deck)
    for heading in ("Comparison", "Metrics", "Latency, tokens and cost", "Per question"):
        assert f"<h2>{heading}</h2>" in dom
    # one best mark per column with a best value (rouge_l, refusal rate, p50, p95, cost)
    assert dom.count(f"{BEST_MARK}</strong>") == 5
    assert "cite/gpt/greedy" in dom and "terse/self/greedy" in dom and "sources: etna.md" in dom
    assert "&lt;img src=x onerror" in dom and document_title(dom) == "Comparison"
