"""Screenshot of the web chat with a short conversation: asks a RAG API's page (`llmops serve`) a question and a
follow-up in headless Chromium (Playwright driving the Chromium of scripts/chromium.py), opens the first source,
and saves the page. Exits 3 when the screenshot is blank.

    llmops serve --config configs/quickstart.yaml &
    python scripts/screenshot_chat.py --url http://127.0.0.1:8000/ --out docs/images/chat.png

Needs `playwright` (the dev extra) and Chromium (apt-get install -y chromium fonts-noto-cjk, or $CHROMIUM).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chromium import find_chromium, nonwhite_fraction  # noqa: E402

QUESTIONS = (
    "How long does a manual failover of the metadata database interrupt writes?",
    "Which tool manages that cluster?",
)
ANSWER_TIMEOUT_MS = 300_000


def screenshot_chat(url: str, out: Path, questions: tuple[str, ...], width: int, height: int) -> None:
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    if executable is None:
        raise SystemExit("Chromium not found: apt-get install -y chromium (or set CHROMIUM=/path/to/chrome)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            page.wait_for_selector("body[data-ready=true]")
            for n, question in enumerate(questions, 1):
                page.fill("#question", question)
                page.press("#question", "Enter")
                page.wait_for_function(
                    "n => document.querySelectorAll('#messages .msg.assistant[aria-busy=\"false\"]').length >= n",
                    arg=n, timeout=ANSWER_TIMEOUT_MS,
                )
            sources = page.locator("#messages .sources summary")
            if sources.count():
                sources.first.click()
            page.evaluate("window.scrollTo(0, 0)")
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
        finally:
            browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000/", help="the web chat (the API's /)")
    parser.add_argument("--out", type=Path, default=Path("docs/images/chat.png"))
    parser.add_argument("--question", action="append", help="ask this (repeat for a conversation)")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    screenshot_chat(args.url, args.out, tuple(args.question or QUESTIONS), args.width, args.height)
    if nonwhite_fraction(args.out) < 0.02:
        print(f"{args.out}: the screenshot is blank", file=sys.stderr)
        return 3
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
