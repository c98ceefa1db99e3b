"""Render an HTML file (a saved report, a downloaded deck.html) to PNG with headless Chromium, offline.

    python scripts/render_html.py report.html report.png [--width 1280] [--height 2000]

Prints the share of non-white pixels and exits 3 when the render is blank, so CI can keep the PNG as an artifact
and still notice an empty page. Needs Debian's `chromium` (or $CHROMIUM pointing at a Chrome binary).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root: scripts/ is not an installed package

from scripts.chromium import ChromiumError, nonwhite_fraction, render_to_png  # noqa: E402

BLANK_BELOW = 0.001  # share of non-white pixels under which a render counts as blank


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path, help="HTML file to render")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    parser.add_argument("--width", type=int, default=1280, help="viewport width in px (default 1280)")
    parser.add_argument("--height", type=int, default=2000, help="viewport height in px (default 2000)")
    args = parser.parse_args(argv)
    if not args.html.is_file():
        parser.error(f"{args.html}: no such file")
    try:
        render_to_png(args.html, args.png, width=args.width, height=args.height)
    except ChromiumError as e:
        print(f"render_html: {e}", file=sys.stderr)
        return 1
    share = nonwhite_fraction(args.png)
    print(f"{args.png}: {args.width}x{args.height}, {share:.1%} non-white pixels")
    if share < BLANK_BELOW:
        print(f"render_html: {args.png} is blank", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
