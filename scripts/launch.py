"""Launch a registered launch plan on a Flyte cluster and print the execution's console URL.

    python scripts/launch.py --config flyte.config --project flytesnacks --domain development \
        --version "$VERSION" llmops_pipeline_gpu

The launch plan's default inputs are used (workflows/launch_plans.py). The URL is also appended to
$GITHUB_STEP_SUMMARY when that is set (GitHub Actions), so the deploy run links to the execution. Does not wait for
the execution: a pipeline run takes longer than a CI job should.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["launch", "main"]


def launch(remote: Any, name: str, version: str, project: str, domain: str) -> tuple[str, str]:
    """Start launch plan `name` at `version` with its default inputs; returns (execution name, console URL)."""
    plan = remote.fetch_launch_plan(project=project, domain=domain, name=name, version=version)
    execution = remote.execute(plan, inputs={}, project=project, domain=domain, wait=False)
    return execution.id.name, remote.generate_console_url(execution)


def write_summary(path: str | None, name: str, version: str, execution: str, url: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"### Flyte execution\n\n[{execution}]({url}): launch plan `{name}`, version `{version}`\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("launch_plan", help="launch plan name, e.g. llmops_pipeline_gpu")
    parser.add_argument("--config", required=True, type=Path, help="flytekit config file (flyte.config)")
    parser.add_argument("--project", required=True)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--version", required=True, help="the version it was registered with (the git sha)")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        parser.error(f"--config {args.config}: no such file (flyte.config in the repository root is an example)")

    from flytekit.configuration import Config
    from flytekit.remote import FlyteRemote

    remote = FlyteRemote(Config.auto(config_file=str(args.config)), default_project=args.project,
                         default_domain=args.domain)
    execution, url = launch(remote, args.launch_plan, args.version, args.project, args.domain)
    print(f"Launched {args.launch_plan} (version {args.version}): execution {execution}")
    print(url)
    write_summary(os.environ.get("GITHUB_STEP_SUMMARY"), args.launch_plan, args.version, execution, url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
