"""Dependency-free HTML report blocks for Flyte Decks and standalone report files.

Everything renders offline: no CDN, no external CSS/JS/fonts, no scripts at all (the Flyte console shows decks in
a sandboxed iframe). Builders return `Html`, a `str` marking trusted markup; every other value that reaches the
page (headings, notes, cells, labels) is escaped, so a document title like `<img onerror=...>` shows as text.

A deck is `publish_deck(name, fragment(section(...), ...))`; a file is `page(title, section(...), ...)`.
"""

from __future__ import annotations

import html
import logging
import math
import numbers
import unicodedata
from collections.abc import Mapping, Sequence

__all__ = [
    "Html",
    "bar_chart_svg",
    "format_value",
    "fragment",
    "histogram_svg",
    "kv_table",
    "line_chart_svg",
    "page",
    "publish_deck",
    "section",
    "status_badge",
    "table",
]

log = logging.getLogger(__name__)

# Short cells (ids, names) never wrap; longer ones wrap anywhere (URLs, hashes) but keep a readable width.
LONG_CELL_CHARS = 32
MAX_CELL_CHARS = 300
# The full text of a truncated cell goes into its tooltip; capped so a table of huge chunks cannot bloat a deck.
MAX_TITLE_CHARS = 4000
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
_FONT = 12  # SVG text size in px
_SVG_FONTS = "system-ui, 'Segoe UI', Roboto, Arial, 'Noto Sans', 'Noto Sans CJK JP', sans-serif"


class Html(str):
    """Markup built by this module (or deliberately trusted): inserted as is where other values are escaped."""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


# Every rule is scoped under .llmops-report: in a deck our <style> shares the page with Flyte's own tab bar.
_CSS = """
.llmops-report{--fg:#1f2328;--muted:#57606a;--line:#d0d7de;--zebra:#f6f8fa;
 font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans","Noto Sans CJK JP",
 "Hiragino Sans","Hiragino Kaku Gothic ProN","Yu Gothic UI",Meiryo,sans-serif;
 font-size:14px;line-height:1.5;color:var(--fg);max-width:1200px;margin:0 auto;padding:16px;box-sizing:border-box}
.llmops-report *{box-sizing:border-box}
.llmops-report h1{font-size:22px;font-weight:600;margin:0 0 16px}
.llmops-report section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 20px;
 margin:0 0 16px}
.llmops-report h2{font-size:16px;font-weight:600;margin:0 0 4px}
.llmops-report .note{color:var(--muted);margin:0 0 12px}
.llmops-report h2+:not(.note){margin-top:12px}
.llmops-report .table-wrap{overflow-x:auto}
.llmops-report table{border-collapse:collapse;width:100%;font-size:13px}
.llmops-report th,.llmops-report td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;
 vertical-align:top;white-space:nowrap}
.llmops-report td.long{white-space:normal;overflow-wrap:anywhere;min-width:16em}
.llmops-report thead th{background:var(--zebra);border-bottom:2px solid var(--line);font-weight:600}
.llmops-report tbody tr:nth-child(even){background:var(--zebra)}
.llmops-report .num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.llmops-report table.kv{width:auto;min-width:40%}
.llmops-report table.kv td.num{text-align:left}
.llmops-report table.kv th{color:var(--muted);font-weight:600;white-space:nowrap;padding-right:24px}
.llmops-report .caption{color:var(--muted);font-size:12px;margin:6px 0 0}
.llmops-report .empty{color:var(--muted);font-style:italic}
.llmops-report .badge{display:inline-block;padding:1px 10px;border-radius:999px;font-size:12px;font-weight:600;
 border:1px solid}
.llmops-report .badge.ok{background:#dafbe1;color:#116329;border-color:#4ac26b}
.llmops-report .badge.fail{background:#ffebe9;color:#a40e26;border-color:#ff8182}
.llmops-report .badge.skip{background:#fff8c5;color:#7d4e00;border-color:#d4a72c}
.llmops-report svg{display:block;max-width:100%;height:auto}
"""


def fragment(*sections: str) -> Html:
    """Stylesheet + sections without <html>/<head>: what a Flyte Deck takes (flytekit wraps it in its own page)."""
    return Html(f'<style>{_CSS}</style>\n<div class="llmops-report">\n' + "\n".join(sections) + "\n</div>")


def page(title: str, *sections: str) -> Html:
    """A standalone HTML document (for report files) with the same look as the decks."""
    body = fragment(f"<h1>{_esc(title)}</h1>", *sections)
    return Html(
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n</head>\n"
        f'<body style="margin:0;background:#f6f8fa">\n{body}\n</body>\n</html>\n'
    )


def section(heading: str, body: str, note: str | None = None) -> Html:
    """A titled card. `heading` and `note` are text (escaped); `body` is markup from the other builders."""
    note_html = f'<p class="note">{_esc(note)}</p>' if note else ""
    return Html(f"<section>\n<h2>{_esc(heading)}</h2>{note_html}\n{body}\n</section>")


def status_badge(ok: bool | None, text: str) -> Html:
    """A pass/fail pill, or (ok=None) a skipped one: nothing was checked, which is neither; the mark keeps it
    readable without colour."""
    cls, mark = ("skip", "\u2013") if ok is None else ("ok", "\u2713") if ok else ("fail", "\u2717")
    return Html(f'<span class="badge {cls}">{mark} {_esc(text)}</span>')


# --------------------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    # numbers.* also covers numpy scalars; bool is an int subclass but reads as a flag, not a quantity.
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def format_value(value: object) -> str:
    """Display text for a cell: ints with thousands separators, floats to 4 significant digits.

    Floats of 10,000 and more are shown as rounded integers with separators: "12,346" reads better than the
    "1.235e+04" that 4 significant digits would give.
    """
    if value is None:
        return "\u2014"
    if not _is_number(value):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    x = float(value)
    if math.isfinite(x) and abs(x) >= 1e4:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def _cell(value: object, numeric: bool) -> str:
    """One <td>. `numeric` right-aligns it: set for a whole column, so that missing values line up too."""
    if isinstance(value, Html):
        return f"<td>{value}</td>"
    text = format_value(value)
    if numeric:
        return f'<td class="num">{_esc(text)}</td>'
    if len(text) <= LONG_CELL_CHARS:
        return f"<td>{_esc(text)}</td>"
    if len(text) <= MAX_CELL_CHARS:
        return f'<td class="long">{_esc(text)}</td>'
    tooltip = text if len(text) <= MAX_TITLE_CHARS else text[:MAX_TITLE_CHARS] + "\u2026"
    return f'<td class="long" title="{_esc(tooltip)}">{_esc(text[: MAX_CELL_CHARS - 1])}\u2026</td>'


def kv_table(rows: Mapping[str, object]) -> Html:
    """A two-column key/value card (run parameters, summary metrics)."""
    if not rows:
        return Html('<p class="empty">no values</p>')
    body = "\n".join(f'<tr><th scope="row">{_esc(k)}</th>{_cell(v, _is_number(v))}</tr>' for k, v in rows.items())
    return Html(f'<div class="table-wrap"><table class="kv"><tbody>\n{body}\n</tbody></table></div>')


def table(columns: Sequence[str], rows: Sequence[Sequence[object]], max_rows: int = 200) -> Html:
    """A zebra table; numeric columns are right-aligned, and only the first `max_rows` rows are shown."""
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"table row {i} has {len(row)} cells but there are {len(columns)} columns")
    shown = rows[:max_rows]
    # A column is numeric when every shown value is a number (None allowed): its header aligns with its cells.
    numeric = [
        any(_is_number(r[j]) for r in shown) and all(_is_number(r[j]) or r[j] is None for r in shown)
        for j in range(len(columns))
    ]
    head = "".join(
        f'<th scope="col" class="num">{_esc(c)}</th>' if is_num else f'<th scope="col">{_esc(c)}</th>'
        for c, is_num in zip(columns, numeric, strict=True)
    )
    body = "\n".join(
        "<tr>" + "".join(_cell(v, n) for v, n in zip(row, numeric, strict=True)) + "</tr>" for row in shown
    )
    if not rows:
        body = f'<tr><td class="empty" colspan="{max(len(columns), 1)}">no rows</td></tr>'
    caption = ""
    if len(rows) > len(shown):
        caption = f'<p class="caption">showing {len(shown):,} of {len(rows):,} rows</p>'
    return Html(
        f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n'
        f"</table></div>{caption}"
    )


# --------------------------------------------------------------------------------------------------------------
# SVG charts
# --------------------------------------------------------------------------------------------------------------


def _text_width(text: str, size: float = _FONT) -> float:
    """Rough rendered width: enough to lay out labels without measuring fonts (wide CJK glyphs count double)."""
    return sum(1.0 if unicodedata.east_asian_width(ch) in "WF" else 0.6 for ch in text) * size


def _clip(text: str, max_px: float, size: float = _FONT) -> str:
    if _text_width(text, size) <= max_px:
        return text
    while text and _text_width(text + "\u2026", size) > max_px:
        text = text[:-1]
    return text + "\u2026"


def _nice_step(span: float, target: int = 5) -> float:
    """A 1/2/5 x 10^k step giving about `target` ticks over `span`."""
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _ticks(lo: float, hi: float, step: float) -> list[float]:
    first = math.ceil(lo / step - 1e-9)
    count = math.floor(hi / step + 1e-9) - first + 1
    # Multiplying (not accumulating) keeps 0.1 * 3 from drifting into labels like 0.30000000000000004.
    return [round((first + i) * step, 12) for i in range(count)]


def _svg_open(width: float, height: float, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{_esc(label)}" '
        f'font-family="{_SVG_FONTS}" font-size="{_FONT}" fill="#1f2328"><title>{_esc(label)}</title>'
    )


def _svg_text(x: float, y: float, text: str, anchor: str = "middle", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>{_esc(text)}</text>'


def _no_data_svg(width: float, height: float, label: str) -> Html:
    w, h = width - 1, height - 1
    box = f'<rect x="0.5" y="0.5" width="{w:.0f}" height="{h:.0f}" rx="6" fill="#f6f8fa" stroke="#d0d7de"/>'
    text = _svg_text(width / 2, height / 2 + 4, "no data", extra=' fill="#57606a"')
    return Html(_svg_open(width, height, f"{label}: no data") + box + text + "</svg>")


def histogram_svg(
    values: Sequence[float],
    bins: int = 20,
    x_label: str = "",
    y_label: str = "count",
    width: int = 640,
    height: int = 240,
) -> Html:
    """An inline SVG histogram with axes and tick labels; non-finite values are counted and left out."""
    if bins < 1:
        raise ValueError(f"histogram needs at least 1 bin, got {bins}")
    finite = [float(v) for v in values if math.isfinite(float(v))]
    skipped = len(values) - len(finite)
    what = f"Histogram of {x_label or 'values'}"
    if not finite:
        return _no_data_svg(width, height, what)
    lo, hi = min(finite), max(finite)
    if lo == hi:  # one distinct value: widen the range so it shows as a single bar in the middle
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    counts = [0] * bins
    for v in finite:
        counts[min(int((v - lo) / (hi - lo) * bins), bins - 1)] += 1

    left, right, top = 56, 16, 12
    bottom = 28 + (18 if x_label else 0)
    plot_w, plot_h = width - left - right, height - top - bottom
    y_step = max(1, _nice_step(max(counts)))
    y_max = math.ceil(max(counts) / y_step) * y_step

    def sx(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot_w

    def sy(c: float) -> float:
        return top + plot_h - c / y_max * plot_h

    label = f"{what}: {len(finite):,} values, min {format_value(min(finite))}, max {format_value(max(finite))}"
    if skipped:
        label += f", {skipped:,} non-finite skipped"
    parts = [_svg_open(width, height, label)]
    for t in _ticks(0, y_max, y_step):
        y = sy(t)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e8eb"/>')
        parts.append(_svg_text(left - 6, y + 4, format_value(int(t)), "end"))
    bin_w = (hi - lo) / bins
    for i, c in enumerate(counts):
        if c:
            x0, x1 = sx(lo + i * bin_w), sx(lo + (i + 1) * bin_w)
            parts.append(
                f'<rect x="{x0 + 0.5:.1f}" y="{sy(c):.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
                f'height="{plot_h - (sy(c) - top):.1f}" fill="{PALETTE[0]}"><title>'
                f"[{format_value(lo + i * bin_w)}, {format_value(lo + (i + 1) * bin_w)}): {c:,}</title></rect>"
            )
    base = top + plot_h
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{base}" y2="{base}" stroke="#57606a"/>')
    for t in _ticks(lo, hi, _nice_step(hi - lo, 6)):
        x = sx(t)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" stroke="#57606a"/>')
        parts.append(_svg_text(x, base + 17, format_value(t)))
    if x_label:
        parts.append(_svg_text(left + plot_w / 2, height - 6, x_label, extra=' font-weight="600"'))
    if y_label:
        cy = top + plot_h / 2
        parts.append(_svg_text(14, cy, y_label, extra=f' font-weight="600" transform="rotate(-90 14 {cy:.1f})"'))
    if skipped:
        parts.append(_svg_text(width - right, top + 10, f"{skipped:,} non-finite skipped", "end"))
    parts.append("</svg>")
    return Html("".join(parts))


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _legend(names: Sequence[str], x: float, y: float) -> str:
    parts = []
    for i, name in enumerate(names):
        parts.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" rx="2" fill="{_color(i)}"/>')
        parts.append(_svg_text(x + 17, y, name, "start"))
        x += 17 + _text_width(name) + 18
    return "".join(parts)


def bar_chart_svg(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    horizontal: bool = True,
    value_label: str = "",
    width: int = 640,
    height: int | None = None,
) -> Html:
    """Grouped bars, one group per label and one bar per series (e.g. recall@k for dense / lexical / hybrid).

    Every bar carries its value; `value_label` names the value axis. A non-finite value (a metric that could not
    be computed) gets its label but no bar. Horizontal charts grow with the number of bars unless `height` is
    given; vertical ones default to 280 px.
    """
    for name, vals in series.items():
        if len(vals) != len(labels):
            raise ValueError(f"series {name!r} has {len(vals)} values but there are {len(labels)} labels")
    names = list(series)
    what = f"Bar chart of {value_label or 'values'} by {', '.join(names) or 'series'}"
    if not labels or not names:
        return _no_data_svg(width, height or 120, what)
    axis = _value_axis([float(v) for vals in series.values() for v in vals])
    summary = "; ".join(
        f"{lab}: " + ", ".join(f"{n} {format_value(series[n][i])}" for n in names) for i, lab in enumerate(labels)
    )
    layout = _horizontal_bars if horizontal else _vertical_bars
    return layout(labels, series, axis, value_label, width, height, f"{what}. {summary}")


def _value_axis(values: list[float]) -> tuple[float, float, float]:
    """(lo, hi, step) of a value axis that includes 0 and ends on ticks, so bars start at a visible baseline."""
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = min(0.0, *finite), max(0.0, *finite)
    step = _nice_step((hi - lo) or 1.0)
    lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    return lo, (hi if hi > lo else lo + step), step  # all zeros still get a non-empty axis


def _bar_title(name: str, label: str, value: float) -> str:
    return f"<title>{_esc(name)} / {_esc(label)}: {format_value(value)}</title>"


def _horizontal_bars(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    axis: tuple[float, float, float],
    value_label: str,
    width: int,
    height: int | None,
    aria: str,
) -> Html:
    lo, hi, step = axis
    names, n = list(series), len(series)
    bar_h, gap = 16, 14
    label_w = min(max(_text_width(lab) for lab in labels) + 14, width * 0.35)
    left, right, top = label_w, 52, 34
    bottom = 26 + (18 if value_label else 0)
    group_h = n * (bar_h + 2)
    height = height or top + len(labels) * (group_h + gap) + bottom
    plot_w = width - left - right
    plot_bottom = height - bottom

    def sx(v: float) -> float:
        return left + (v - lo) / (hi - lo) * plot_w

    parts = [_svg_open(width, height, aria), _legend(names, left, 16)]
    for t in _ticks(lo, hi, step):
        x = sx(t)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{plot_bottom}" stroke="#e5e8eb"/>')
        parts.append(_svg_text(x, plot_bottom + 16, format_value(t)))
    for g, lab in enumerate(labels):
        y0 = top + g * (group_h + gap)
        parts.append(
            f'<text x="{left - 8:.1f}" y="{y0 + group_h / 2 + 4:.1f}" text-anchor="end"><title>{_esc(lab)}</title>'
            f"{_esc(_clip(lab, label_w - 12))}</text>"
        )
        for s, name in enumerate(names):
            v = float(series[name][g])
            y, x0, x1 = y0 + s * (bar_h + 2), sx(0), sx(v if math.isfinite(v) else 0)
            if math.isfinite(v):
                parts.append(
                    f'<rect x="{min(x0, x1):.1f}" y="{y:.1f}" width="{abs(x1 - x0):.1f}" height="{bar_h}" '
                    f'fill="{_color(s)}">{_bar_title(name, lab, v)}</rect>'
                )
            tx, anchor = (x1 - 4, "end") if v < 0 else (x1 + 4, "start")
            parts.append(_svg_text(tx, y + bar_h - 4, format_value(v), anchor, ' font-size="11"'))
    zero = sx(0)
    parts.append(f'<line x1="{zero:.1f}" x2="{zero:.1f}" y1="{top - 6}" y2="{plot_bottom}" stroke="#57606a"/>')
    if value_label:
        parts.append(_svg_text(left + plot_w / 2, height - 6, value_label, extra=' font-weight="600"'))
    parts.append("</svg>")
    return Html("".join(parts))


def _vertical_bars(
    labels: Sequence[str],
    series: Mapping[str, Sequence[float]],
    axis: tuple[float, float, float],
    value_label: str,
    width: int,
    height: int | None,
    aria: str,
) -> Html:
    lo, hi, step = axis
    names, n = list(series), len(series)
    height = height or 280
    left, right, top, bottom = 56 if not value_label else 72, 16, 40, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    group_w = plot_w / len(labels)
    bar_w = min(32.0, group_w * 0.8 / n)

    def sy(v: float) -> float:
        return top + (hi - v) / (hi - lo) * plot_h

    parts = [_svg_open(width, height, aria), _legend(names, left, 16)]
    for t in _ticks(lo, hi, step):
        y = sy(t)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e8eb"/>')
        parts.append(_svg_text(left - 6, y + 4, format_value(t), "end"))
    for g, lab in enumerate(labels):
        cx = left + (g + 0.5) * group_w
        parts.append(
            f'<text x="{cx:.1f}" y="{top + plot_h + 18:.1f}" text-anchor="middle"><title>{_esc(lab)}</title>'
            f"{_esc(_clip(lab, group_w - 4))}</text>"
        )
        for s, name in enumerate(names):
            v = float(series[name][g])
            x, y0, y1 = cx - n * bar_w / 2 + s * bar_w, sy(0), sy(v if math.isfinite(v) else 0)
            if math.isfinite(v):
                parts.append(
                    f'<rect x="{x + 1:.1f}" y="{min(y0, y1):.1f}" width="{max(bar_w - 2, 1):.1f}" '
                    f'height="{abs(y1 - y0):.1f}" fill="{_color(s)}">{_bar_title(name, lab, v)}</rect>'
                )
            ty = y1 + 12 if v < 0 else y1 - 4
            parts.append(_svg_text(x + bar_w / 2, ty, format_value(v), extra=' font-size="10"'))
    zero = sy(0)
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#57606a"/>')
    if value_label:
        cy = top + plot_h / 2
        parts.append(_svg_text(14, cy, value_label, extra=f' font-weight="600" transform="rotate(-90 14 {cy:.1f})"'))
    parts.append("</svg>")
    return Html("".join(parts))


def line_chart_svg(
    series: Mapping[str, Sequence[tuple[float, float]]],
    x_label: str = "",
    y_label: str = "",
    width: int = 640,
    height: int = 260,
) -> Html:
    """Lines through (x, y) points, one per series (e.g. train and validation loss by step), with axes and a legend.

    Points with a non-finite coordinate are left out (and counted in the label). A series with one point shows as
    a dot. The y axis spans the data (not from 0), so a small decrease in loss stays visible.
    """
    names = list(series)
    what = f"Line chart of {y_label or 'values'} by {x_label or 'x'}"
    clean = {
        n: [(float(x), float(y)) for x, y in pts if math.isfinite(float(x)) and math.isfinite(float(y))]
        for n, pts in series.items()
    }
    skipped = sum(len(series[n]) - len(clean[n]) for n in names)
    points = [p for pts in clean.values() for p in pts]
    if not points:
        return _no_data_svg(width, height, what)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x_lo, x_hi = min(xs), max(xs)
    if x_lo == x_hi:
        x_lo, x_hi = x_lo - 1, x_hi + 1
    y_step = _nice_step((max(ys) - min(ys)) or abs(max(ys)) * 0.1 or 1.0)
    y_lo = math.floor(min(ys) / y_step + 1e-9) * y_step
    y_hi = math.ceil(max(ys) / y_step - 1e-9) * y_step
    if y_hi <= y_lo:
        y_lo, y_hi = y_lo - y_step, y_hi + y_step

    left, right, top = (72 if y_label else 56), 16, 34
    bottom = 28 + (18 if x_label else 0)
    plot_w, plot_h = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return left + (v - x_lo) / (x_hi - x_lo) * plot_w

    def sy(v: float) -> float:
        return top + (y_hi - v) / (y_hi - y_lo) * plot_h

    summary = "; ".join(
        f"{n}: {len(clean[n])} points" + (f", last {format_value(clean[n][-1][1])}" if clean[n] else "")
        for n in names
    )
    label = f"{what}. {summary}" + (f"; {skipped:,} non-finite points skipped" if skipped else "")
    parts = [_svg_open(width, height, label), _legend(names, left, 16)]
    for t in _ticks(y_lo, y_hi, y_step):
        y = sy(t)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e8eb"/>')
        parts.append(_svg_text(left - 6, y + 4, format_value(t), "end"))
    base = top + plot_h
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{base}" y2="{base}" stroke="#57606a"/>')
    for t in _ticks(x_lo, x_hi, _nice_step(x_hi - x_lo, 6)):
        x = sx(t)
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" stroke="#57606a"/>')
        parts.append(_svg_text(x, base + 17, format_value(t)))
    for i, name in enumerate(names):
        pts = sorted(clean[name])
        if len(pts) > 1:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{_color(i)}" stroke-width="2"/>')
        for x, y in pts if len(pts) <= 60 else pts[-1:]:  # dots (with values) only where they stay readable
            parts.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{_color(i)}">'
                f"<title>{_esc(name)} at {format_value(x)}: {format_value(y)}</title></circle>"
            )
    if x_label:
        parts.append(_svg_text(left + plot_w / 2, height - 6, x_label, extra=' font-weight="600"'))
    if y_label:
        cy = top + plot_h / 2
        parts.append(_svg_text(14, cy, y_label, extra=f' font-weight="600" transform="rotate(-90 14 {cy:.1f})"'))
    parts.append("</svg>")
    return Html("".join(parts))


# --------------------------------------------------------------------------------------------------------------
# Flyte
# --------------------------------------------------------------------------------------------------------------


def publish_deck(name: str, html: str) -> None:
    """Publish `html` (a `fragment(...)`) as the running Flyte task's deck, tab `name`; a no-op outside a task.

    One deck per task: publishing replaces what the task published before.

    Outside a task flytekit would still accept `Deck(...)` and keep it in a process-wide list that nothing ever
    writes, so we check the execution mode first. Inside a task declared without `enable_deck=True` flytekit
    never writes decks; we say so instead of dropping the report silently.
    """
    from flytekit import Deck  # lazy: the rest of this module (and llmops) works without flytekit
    from flytekit.core.context_manager import FlyteContextManager

    ctx = FlyteContextManager.current_context()
    if ctx.execution_state is None or ctx.execution_state.mode is None:
        return
    params = ctx.user_space_params
    if not params.enable_deck:
        log.warning("deck %r not published: task %s has enable_deck=False", name, params.task_id)
        return
    # Local runs execute every task in one process and flytekit keeps one deck list for all of them, so each
    # task's deck.html would repeat the tabs of the tasks before it. Our tasks publish one deck each: start afresh.
    params.decks.clear()
    Deck(name, html)
