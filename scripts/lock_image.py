"""Pin the image's Python packages: resolve the pipeline's dependencies with pip (nothing is installed) and write
docker/constraints.txt, which the Dockerfile installs with (`pip install -c`).

    python scripts/lock_image.py      # after changing dependencies in pyproject.toml; commit docker/constraints.txt

Both the `cpu` and the `gpu` extra are resolved and merged; a package the two resolve to different versions is an
error. Local version labels are dropped (`torch==2.13.0`, not `2.13.0+cpu`), so the CPU variant takes PyTorch's
CPU wheel and the GPU variant PyPI's CUDA wheel of the same version. NVIDIA's CUDA libraries (nvidia-*) are left
out: resolved here beside the CPU torch they would only follow faiss-gpu's loose ranges, while the CUDA torch pins
them exactly. tests/test_ci.py checks that the file still satisfies pyproject.toml.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docker" / "constraints.txt"
EXTRAS = ("cpu,tracking", "gpu,tracking")  # the image logs to MLflow when tracking.mlflow_uri is set
HEADER = """\
# Versions of every Python package in the image's pipeline environment, written by scripts/lock_image.py from
# pyproject.toml (extras: {extras}). Regenerate after changing dependencies; do not edit by hand.
"""


def resolve(extra: str) -> dict[str, str]:
    """What `pip install .[extra]` would install into an empty environment: {name: version}."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
             "--report", str(report), f".[{extra}]"],
            cwd=ROOT, check=True,
        )
        installs = json.loads(report.read_text())["install"]
    return {i["metadata"]["name"].lower(): i["metadata"]["version"].split("+")[0] for i in installs}


def main() -> None:
    pins: dict[str, str] = {}
    for extra in EXTRAS:
        for name, version in resolve(extra).items():
            if pins.setdefault(name, version) != version:
                sys.exit(f"{name}: {pins[name]} for one extra, {version} for another; align pyproject.toml's ranges")
    pins.pop("flyte-llmops", None)
    pins = {name: version for name, version in pins.items() if not name.startswith("nvidia-")}
    lines = [f"{name}=={version}" for name, version in sorted(pins.items())]
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(HEADER.format(extras=", ".join(EXTRAS)) + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"{OUT.relative_to(ROOT)}: {len(lines)} packages")


if __name__ == "__main__":
    main()
