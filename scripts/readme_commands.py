"""Print the shell commands of one README section, so CI runs exactly what the README tells people to run.

    python3 scripts/readme_commands.py "Quickstart"     # every ```bash block under the heading "## Quickstart ..."

The heading matches by prefix (any level); its section ends at the next heading of any level, so subsections
blocks (examples with placeholders, say) are not part of it.
Exits 1, naming the section, when it has no bash block: a renamed heading must not turn a CI step into a no-op.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_FENCE = re.compile(r"^```(\w*)\s*$")


def section_commands(text: str, title: str) -> list[str]:
    """The bash blocks under the heading that starts with `title`, in order (fences inside code are respected)."""
    blocks, level, block, lang, in_fence = [], None, [], "", False
    for line in text.splitlines():
        fence = _FENCE.match(line)
        if fence:
            if not in_fence:
                in_fence, lang, block = True, fence.group(1), []
            else:
                in_fence = False
                if level is not None and lang == "bash":
                    blocks.append("\n".join(block))
            continue
        if in_fence:
            block.append(line)
            continue
        heading = _HEADING.match(line)
        if heading:
            if level is not None:
                break
            if heading.group(2).startswith(title):
                level = len(heading.group(1))
    return blocks


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    blocks = section_commands(README.read_text(encoding="utf-8"), argv[0])
    if not blocks:
        print(f"README.md has no ```bash block under a heading starting with {argv[0]!r}", file=sys.stderr)
        return 1
    print("\n".join(blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
