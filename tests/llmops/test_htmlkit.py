"""Report blocks: escaping, number formatting, truncation, chart edge cases, and deck publishing rules."""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import flytekit
import numpy as np
import pytest
from flytekit import task
from flytekit.core.context_manager import FlyteContextManager
from flytekit.core.data_persistence import FileAccessProvider

from llmops.htmlkit import (
    MAX_CELL_CHARS,
    MAX_TITLE_CHARS,
    Html,
    bar_chart_svg,
    format_value,
    fragment,
    histogram_svg,
    kv_table,
    line_chart_svg,
    page,
    publish_deck,
    section,
    status_badge,
    table,
)

EVIL = "<b onclick=\"x('1')\">&amp;"
EVIL_ESCAPED = "&lt;b onclick=&quot;x(&#x27;1&#x27;)&quot;&gt;&amp;amp;"


def svg_root(svg: str) -> ET.Element:
    """Parse as XML: the SVG must be well-formed to be usable outside HTML too."""
    return ET.fromstring(svg)


def svg_texts(svg: str) -> list[ET.Element]:
    return list(svg_root(svg).iter("{http://www.w3.org/2000/svg}text"))


def shown_text(element: ET.Element) -> str:
    """Text as displayed: a label's <title> child is a tooltip, not part of the text."""
    return (element.text or "") + "".join(child.tail or "" for child in element)


def svg_rects(svg: str) -> list[ET.Element]:
    return [e for e in svg_root(svg).iter("{http://www.w3.org/2000/svg}rect") if e.find("{*}title") is not None]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1234567, "1,234,567"),
        (np.int64(-42000), "-42,000"),
        (0.123456, "0.1235"),
        (np.float32(0.5), "0.5"),
        (3.0, "3"),
        (999.95, "1000"),
        (12345.678, "12,346"),
        (1.5e-5, "1.5e-05"),
        (math.nan, "nan"),
        (-math.inf, "-inf"),
        (True, "True"),
        (None, "\u2014"),
        ("text", "text"),
    ],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text


def test_text_is_escaped_everywhere() -> None:
    html = page(
        EVIL,
        section(EVIL, kv_table({EVIL: EVIL}), note=EVIL),
        section("t", table([EVIL], [[EVIL]])),
        status_badge(False, EVIL),
        histogram_svg([1.0, 2.0], x_label=EVIL, y_label=EVIL),
        bar_chart_svg([EVIL], {EVIL: [1.0]}, value_label=EVIL),
    )
    assert "<b onclick" not in html
    assert html.count(EVIL_ESCAPED) >= 9


def test_trusted_html_is_kept_in_cells() -> None:
    badge = status_badge(True, "ok")
    assert badge in table(["gate"], [[badge]])
    assert badge in kv_table({"gate": badge})
    assert "&lt;span" not in kv_table({"gate": badge})


def test_fragment_is_self_contained_and_page_is_a_document() -> None:
    frag = fragment(section("s", "<p>x</p>"))
    assert frag.startswith("<style>") and "<html" not in frag
    doc = page("t", section("s", histogram_svg([1.0, 2.0])))
    assert doc.startswith("<!doctype html>") and "<title>t</title>" in doc and '<meta charset="utf-8">' in doc
    # Offline and sandbox-safe: nothing fetched, nothing executed.
    assert not re.search(r"<script|<link|@import|url\(|src=|href=", doc)
    assert set(re.findall(r"https?://[^\s\"']+", doc)) == {"http://www.w3.org/2000/svg"}


def test_numeric_columns_are_right_aligned() -> None:
    html = table(["name", "n", "score"], [["a", 1, 0.5], ["b", 2, None]])
    assert '<th scope="col">name</th><th scope="col" class="num">n</th><th scope="col" class="num">score</th>' in html
    assert '<td>a</td><td class="num">1</td><td class="num">0.5</td>' in html
    assert '<td class="num">\u2014</td>' in html  # the missing score lines up with the others


def test_long_cells_are_truncated_with_full_text_in_title() -> None:
    long_text = "x" * 1000
    html = table(["text"], [[long_text]])
    shown = re.search(r">(x+)\u2026</td>", html).group(1)
    assert len(shown) + 1 == MAX_CELL_CHARS
    assert f'title="{long_text}"' in html


def test_tooltip_of_huge_cell_is_capped() -> None:
    html = table(["text"], [["y" * (MAX_TITLE_CHARS * 5)]])
    assert f'title="{"y" * MAX_TITLE_CHARS}\u2026"' in html


def test_rows_beyond_max_rows_are_cut_and_counted() -> None:
    rows = [[i] for i in range(2500)]
    html = table(["i"], rows, max_rows=10)
    assert html.count("<tr>") == 11  # header + 10
    assert "showing 10 of 2,500 rows" in html
    assert "showing" not in table(["i"], rows[:10], max_rows=10)


def test_empty_table_and_ragged_rows() -> None:
    assert "no rows" in table(["a", "b"], [])
    with pytest.raises(ValueError, match="row 1 has 1 cells but there are 2 columns"):
        table(["a", "b"], [[1, 2], [3]])


def test_histogram_counts_every_finite_value() -> None:
    values = [float(v) for v in np.random.default_rng(0).normal(size=1000)]
    svg = histogram_svg(values + [math.nan, math.inf], bins=15, x_label="z")
    bars = svg_rects(svg)
    assert len(bars) <= 15
    assert sum(int(b.find("{*}title").text.split(": ")[1].replace(",", "")) for b in bars) == 1000
    label = svg_root(svg).get("aria-label")
    assert label.startswith("Histogram of z: 1,000 values") and "2 non-finite skipped" in label


def test_histogram_of_nothing_says_no_data() -> None:
    for values in ([], [math.nan]):
        svg = histogram_svg(values)
        assert ">no data</text>" in svg and svg_rects(svg) == []


def test_histogram_rejects_zero_bins() -> None:
    with pytest.raises(ValueError, match="at least 1 bin"):
        histogram_svg([1.0], bins=0)


def test_histogram_of_equal_values_is_one_bar() -> None:
    (bar,) = svg_rects(histogram_svg([7.0] * 5))
    assert bar.find("{*}title").text.endswith(": 5")
    assert float(bar.get("height")) > 0


def test_bar_chart_labels_every_bar() -> None:
    series = {"dense": [0.61, 0.88], "lexical": [0.55, 0.81], "hybrid": [0.66, 0.91]}
    for horizontal in (True, False):
        svg = bar_chart_svg(["recall@1", "recall@10"], series, horizontal=horizontal, value_label="recall")
        assert len(svg_rects(svg)) == 6
        texts = [shown_text(t) for t in svg_texts(svg)]
        assert {"0.61", "0.91", "dense", "lexical", "hybrid", "recall@1", "recall"} <= set(texts)


def test_bar_chart_edge_cases() -> None:
    assert ">no data</text>" in bar_chart_svg([], {})
    svg_root(bar_chart_svg(["a", "b"], {"s": [0.0, 0.0]}))  # all zeros: still a valid axis
    negative = svg_rects(bar_chart_svg(["a", "b"], {"delta": [-0.2, 0.3]}))
    assert all(float(r.get("width")) > 0 for r in negative)
    unknown = bar_chart_svg(["a", "b"], {"s": [math.nan, 0.5]})
    assert len(svg_rects(unknown)) == 1 and ">nan</text>" in unknown
    with pytest.raises(ValueError, match="series 's' has 1 values but there are 2 labels"):
        bar_chart_svg(["a", "b"], {"s": [1.0]})


def test_long_and_japanese_labels_are_clipped_to_fit() -> None:
    label = "日本語のとても長いラベル" * 10
    svg = bar_chart_svg([label], {"s": [1.0]}, width=400)
    (clipped,) = [t for t in svg_texts(svg) if t.find("{*}title") is not None]
    assert clipped.find("{*}title").text == label
    assert shown_text(clipped).endswith("\u2026") and len(shown_text(clipped)) < 15


def test_line_chart_draws_each_series_through_its_points() -> None:
    train = [(1, 2.0), (2, 1.5), (3, 1.1), (4, 0.7)]
    svg = line_chart_svg({"train": train, "validation": [(0, 2.2), (4, 0.9)]}, x_label="step", y_label="loss")
    root = svg_root(svg)
    lines = list(root.iter("{http://www.w3.org/2000/svg}polyline"))
    assert [len(line.get("points").split()) for line in lines] == [4, 2]
    ys = [float(p.split(",")[1]) for p in lines[0].get("points").split()]
    assert ys == sorted(ys)  # falling loss: SVG y grows downwards
    dots = [c.find("{*}title").text for c in root.iter("{http://www.w3.org/2000/svg}circle")]
    assert "train at 4: 0.7" in dots and "validation at 0: 2.2" in dots
    texts = {shown_text(t) for t in svg_texts(svg)}
    assert {"train", "validation", "step", "loss"} <= texts
    assert "last 0.7" in root.get("aria-label")


def test_line_chart_edge_cases() -> None:
    assert ">no data</text>" in line_chart_svg({}) and ">no data</text>" in line_chart_svg({"s": [(1, math.nan)]})
    one = svg_root(line_chart_svg({"s": [(5, 1.0)]}))  # one point, flat range: a dot on a valid axis
    assert len(list(one.iter("{http://www.w3.org/2000/svg}circle"))) == 1
    skipped = line_chart_svg({"s": [(1, 1.0), (2, math.inf), (3, 0.5)]})
    assert "1 non-finite points skipped" in svg_root(skipped).get("aria-label")
    assert ET.fromstring(line_chart_svg({EVIL: [(1, 1.0), (2, 2.0)]}, x_label=EVIL)) is not None


def test_builders_return_html() -> None:
    assert isinstance(section("s", ""), Html) and isinstance(histogram_svg([]), Html)


# ---- publish_deck ------------------------------------------------------------------------------------------------


def test_publish_deck_outside_a_task_is_a_no_op() -> None:
    decks = FlyteContextManager.current_context().user_space_params.decks
    before = len(decks)
    publish_deck("report", fragment())
    assert len(decks) == before


@task(enable_deck=True, deck_fields=())
def publishing_task() -> list[str]:
    publish_deck("report", fragment(section("s", "")))
    return [d.name for d in flytekit.current_context().decks]


@task
def publishing_task_without_decks() -> list[str]:
    publish_deck("report", fragment(section("s", "")))
    return [d.name for d in flytekit.current_context().decks]


def test_publish_deck_inside_a_task(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sandbox = FileAccessProvider(local_sandbox_dir=str(tmp_path), raw_output_prefix=str(tmp_path / "raw"))
    with FlyteContextManager.with_context(FlyteContextManager.current_context().with_file_access(sandbox)):
        assert publishing_task() == ["report"]
        with caplog.at_level(logging.WARNING, logger="llmops.htmlkit"):
            assert "report" not in publishing_task_without_decks()
    assert "enable_deck=False" in caplog.text
    assert len(list(tmp_path.rglob("deck.html"))) == 1
