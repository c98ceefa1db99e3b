"""CI/CD files: the GitHub workflows pass actionlint, the Dockerfile passes hadolint, the deploy workflow runs the
README's commands (no drift), every flag they use exists, the image's pins satisfy pyproject.toml, and
scripts/launch.py starts a launch plan and reports its URL."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from packaging.requirements import Requirement

from tests.conftest import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"
DEPLOY = WORKFLOWS / "deploy.yml"
README = REPO_ROOT / "README.md"


def tool(name: str) -> str:
    """A linter from the dev extra: beside this interpreter (the venv), else on PATH; skip when not installed."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} not installed: pip install -e '.[dev]' brings it")
    return found


def run(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------------------------------------------------------
# Linters: each passes on the real file and fails on a broken copy (so a pass means something).
# ---------------------------------------------------------------------------------------------------------------


def actionlint(*paths: Path) -> subprocess.CompletedProcess:
    return run(tool("actionlint"), "-no-color", "-shellcheck", tool("shellcheck"), *map(str, paths))


def test_github_workflows_pass_actionlint():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"ci.yml", "deploy.yml"}
    result = actionlint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("runs-on: ubuntu-24.04", "runs-onn: ubuntu-24.04", "runs-onn"),  # misspelt key
        ('"$FLYTE_PROJECT"', "$FLYTE_PROJECT", "SC2086"),  # unquoted variable in a run: script (shellcheck)
        ("${{ vars.FLYTE_ENDPOINT }}", "${{ vars.FLYTE_ENDPOINT ", "expression"),  # unclosed expression
    ],
)
def test_actionlint_rejects_a_broken_deploy_workflow(tmp_path, old, new, message):
    text = DEPLOY.read_text()
    assert old in text
    broken = tmp_path / ".github" / "workflows" / "deploy.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(text.replace(old, new, 1))
    result = actionlint(broken)
    assert result.returncode != 0 and message in result.stdout, result.stdout


def test_dockerfile_passes_hadolint():
    result = run(tool("hadolint"), "--no-color", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_rejects_a_broken_dockerfile(tmp_path):
    broken = tmp_path / "Dockerfile"
    text = (REPO_ROOT / "Dockerfile").read_text()
    broken.write_text(text.replace("FROM python:3.11-slim-bookworm AS base", "FROM python AS base")
                      + "RUN apt-get update && apt-get install -y curl\n")
    result = run(tool("hadolint"), "--no-color", str(broken))
    assert result.returncode != 0
    assert {"DL3006", "DL3008", "DL3009"} <= set(re.findall(r"DL\d{4}", result.stdout)), result.stdout


def test_ci_scripts_pass_shellcheck():
    result = run(tool("shellcheck"), ".ci/run")
    assert result.returncode == 0, result.stdout


# ---------------------------------------------------------------------------------------------------------------
# README "Run on a Flyte cluster" <-> deploy.yml: the same commands, flags that exist.
# ---------------------------------------------------------------------------------------------------------------


def shell_commands(script: str) -> list[str]:
    """Simple commands of a shell script, continuation lines joined, split at && and ;, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", script)
    commands = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        commands += [" ".join(c.split()) for c in re.split(r"&&|;", line) if c.strip()]
    return commands


def readme_cluster_commands() -> list[str]:
    text = README.read_text()
    section = text.split("## Run on a Flyte cluster", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert blocks, "README's 'Run on a Flyte cluster' section has no bash block"
    return [c for block in blocks for c in shell_commands(block)]


def deploy_workflow() -> dict:
    return yaml.safe_load(DEPLOY.read_text())


def deploy_steps() -> list[dict]:
    return deploy_workflow()["jobs"]["deploy"]["steps"]


def deploy_commands() -> list[str]:
    return [c for step in deploy_steps() if "run" in step for c in shell_commands(step["run"])]


def test_deploy_workflow_registers_and_launches_with_the_readme_commands():
    readme = readme_cluster_commands()
    deploy = deploy_commands()
    ours = [c for c in readme if c.startswith(("pyflyte ", "python scripts/"))]
    assert any(" register " in c for c in ours) and any(c.startswith("python scripts/launch.py") for c in ours)
    for command in ours:
        assert command in deploy, f"README runs\n  {command}\nbut deploy.yml does not; make them the same"
    for command in deploy:
        if command.startswith(("pyflyte ", "python scripts/")):
            assert command in readme, f"deploy.yml runs\n  {command}\nbut README does not; make them the same"


def _substitute(expr: str) -> str:
    """GitHub expressions over env as shell variables: ${{ env.IMAGE }} -> $IMAGE."""
    return re.sub(r"\$\{\{\s*env\.(\w+)\s*\}\}", r"$\1", expr)


def test_deploy_workflow_builds_the_images_the_readme_builds():
    readme = {}
    for command in readme_cluster_commands():
        if command.startswith("docker build "):
            args = shlex.split(command)
            build_args = dict(a.split("=", 1) for a in args[args.index("docker") + 2:] if "=" in a and a[0].isupper())
            readme[build_args["VARIANT"]] = (build_args, args[args.index("-t") + 1], args[-1])
    deploy = {}
    for step in deploy_steps():
        if step.get("uses", "").startswith("docker/build-push-action@"):
            w = step["with"]
            build_args = dict(line.split("=", 1) for line in _substitute(w["build-args"]).split())
            deploy[build_args["VARIANT"]] = (build_args, _substitute(w["tags"]), w["context"])
            assert w["push"] is True
    assert set(readme) == set(deploy) == {"cpu", "gpu"}
    assert readme == deploy
    # The registered images are the ones built: --image <cpu tag> --image gpu=<gpu tag>.
    (register,) = [c for c in deploy_commands() if c.startswith("pyflyte ") and " register " in c]
    images = [a for a in shlex.split(register.replace('"', "")) if a.startswith(("$IMAGE", "gpu="))]
    assert images == [deploy["cpu"][1], "gpu=" + deploy["gpu"][1]]


def test_readme_sets_every_variable_the_deploy_commands_use():
    exported = set()
    for command in readme_cluster_commands():
        if command.startswith("export "):
            exported |= {a.split("=", 1)[0] for a in shlex.split(command)[1:]}
    used = set(re.findall(r"\$\{?(\w+)", " ".join(c for c in deploy_commands() if c.startswith(("pyflyte", "python")))))
    assert used <= exported, f"README does not set {sorted(used - exported)}"
    job_env = deploy_workflow()["jobs"]["deploy"]["env"]
    written_by_steps = {"FLYTE_CONFIG", "IMAGE"}  # via $GITHUB_ENV
    assert used <= set(job_env) | written_by_steps


def test_every_flag_of_the_deploy_commands_exists():
    from click import Context

    from flytekit.clis.sdk_in_container.pyflyte import main as pyflyte

    spec = importlib.util.spec_from_file_location("launch", REPO_ROOT / "scripts" / "launch.py")
    launch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch)

    for command in deploy_commands():
        args = shlex.split(command)
        if args[0] == "pyflyte":
            ctx = Context(pyflyte)
            sub = next(a for a in args[1:] if a in pyflyte.list_commands(ctx))
            top, rest = args[1:args.index(sub)], args[args.index(sub) + 1:]
            pyflyte.make_parser(ctx).parse_args(list(top))  # raises on an unknown option
            cmd = pyflyte.get_command(ctx, sub)
            cmd.make_parser(Context(cmd)).parse_args(list(rest))
        elif args[:2] == ["python", "scripts/launch.py"]:
            with pytest.raises(SystemExit) as exited:  # parse only: --help after the real arguments
                launch.main([*args[2:], "--help"])
            assert exited.value.code == 0


def test_ci_packages_with_the_images_the_package_test_checks():
    from tests.workflows.test_package import CPU_IMAGE, GPU_IMAGE

    steps = yaml.safe_load((WORKFLOWS / "ci.yml").read_text())["jobs"]["test"]["steps"]
    (package,) = [c for s in steps if "run" in s for c in shell_commands(s["run"]) if " package " in c]
    assert f"--image {CPU_IMAGE} --image gpu={GPU_IMAGE}" in package
    assert any("LLMOPS_FLYTE_PACKAGE=flyte-package.tgz" in s.get("run", "") for s in steps)


# ---------------------------------------------------------------------------------------------------------------
# deploy.yml: triggers, concurrency, secrets documented; the Flyte config it writes is one flytekit reads.
# ---------------------------------------------------------------------------------------------------------------


def test_deploy_runs_on_merges_to_main_touching_code_and_cancels_stale_runs():
    wf = deploy_workflow()
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as true
    assert on["push"]["branches"] == ["main"]
    paths = on["push"]["paths"]
    for path in ("llmops/**", "tasks/**", "workflows/**", "eval/**", "configs/**", "Dockerfile", "pyproject.toml"):
        assert path in paths
    assert wf["concurrency"] == {"group": "deploy-${{ github.ref }}", "cancel-in-progress": True}


def test_every_secret_and_variable_the_deploy_uses_is_documented():
    text = DEPLOY.read_text()
    names = set(re.findall(r"\b(?:secrets|vars)\.(\w+)", text)) - {"GITHUB_TOKEN"}
    section = README.read_text().split("### CI/CD", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(\w+)`", section))
    assert names and names <= documented, f"undocumented in README's CI/CD: {sorted(names - documented)}"


def test_deploy_writes_a_flyte_config_that_flytekit_reads(tmp_path, monkeypatch):
    from flytekit.configuration import Config

    (step,) = [s for s in deploy_steps() if s.get("name", "").startswith("Flyte client config")]
    env = dict(os.environ, FLYTE_ENDPOINT="flyte.example.com", FLYTE_CLIENT_ID="ci-app", RUNNER_TEMP=str(tmp_path),
               GITHUB_ENV=str(tmp_path / "github_env"))
    subprocess.run(["bash", "-e", "-c", step["run"]], env=env, check=True, timeout=30)
    config_path = (tmp_path / "github_env").read_text().strip().removeprefix("FLYTE_CONFIG=")
    monkeypatch.setenv("FLYTE_CLIENT_SECRET", "s3cret")
    platform = Config.auto(config_path).platform
    assert (platform.endpoint, platform.insecure, platform.auth_mode) == ("flyte.example.com", False, "ClientSecret")
    assert (platform.client_id, platform.client_credentials_secret) == ("ci-app", "s3cret")
    # Without the variables the step stops with a message instead of registering against nothing.
    env.update(FLYTE_ENDPOINT="")
    failed = subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True, text=True, timeout=30)
    assert failed.returncode != 0 and "FLYTE_ENDPOINT" in failed.stdout


def test_sandbox_flyte_config_is_read_by_flytekit():
    from flytekit.configuration import Config

    config = Config.auto(str(REPO_ROOT / "flyte.config"))
    assert (config.platform.endpoint, config.platform.insecure) == ("localhost:30080", True)
    assert config.data_config.s3.endpoint == "http://localhost:30002"


# ---------------------------------------------------------------------------------------------------------------
# The image's pins, and the launcher.
# ---------------------------------------------------------------------------------------------------------------


def test_image_constraints_satisfy_pyproject():
    pins = {}
    for line in (REPO_ROOT / "docker" / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["cpu"] + project["optional-dependencies"]["gpu"]
    for spec in map(Requirement, wanted):
        name = spec.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in docker/constraints.txt: run python scripts/lock_image.py"
        assert spec.specifier.contains(pins[name], prereleases=True), (
            f"docker/constraints.txt pins {name}=={pins[name]}, outside pyproject's {spec}: "
            "run python scripts/lock_image.py"
        )


def test_dockerfile_installs_vllm_apart_and_points_llmops_at_it():
    text = (REPO_ROOT / "Dockerfile").read_text()
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "LLMOPS_VLLM_PYTHON=/opt/vllm/bin/python" in text
    for extra in ("cpu-serving", "gpu-serving"):
        (pin,) = project[extra]
        assert "/opt/vllm/bin/pip install" in text and pin in text, f"the image does not install {pin}"
    assert "USER 1000" in text and "--constraint /opt/constraints.txt" in text


class FakeRemote:
    def __init__(self):
        self.calls = []

    def fetch_launch_plan(self, **kwargs):
        self.calls.append(("fetch", kwargs))
        return "plan"

    def execute(self, entity, **kwargs):
        self.calls.append(("execute", entity, kwargs))
        return SimpleNamespace(id=SimpleNamespace(name="f1a2b3"))

    def generate_console_url(self, execution):
        return f"http://localhost:30080/console/projects/p/domains/d/executions/{execution.id.name}"


def test_launch_starts_the_registered_version_and_reports_the_console_url(tmp_path):
    spec = importlib.util.spec_from_file_location("launch", REPO_ROOT / "scripts" / "launch.py")
    launch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch)

    remote = FakeRemote()
    name, url = launch.launch(remote, "llmops_pipeline_gpu", "abc123", "p", "d")
    assert remote.calls[0] == ("fetch", {"project": "p", "domain": "d", "name": "llmops_pipeline_gpu",
                                         "version": "abc123"})
    assert remote.calls[1] == ("execute", "plan", {"inputs": {}, "project": "p", "domain": "d", "wait": False})
    assert (name, url) == ("f1a2b3", "http://localhost:30080/console/projects/p/domains/d/executions/f1a2b3")

    summary = tmp_path / "summary.md"
    launch.write_summary(str(summary), "llmops_pipeline_gpu", "abc123", name, url)
    assert f"[f1a2b3]({url})" in summary.read_text()


# ---------------------------------------------------------------------------------------------------------------
# .ci/run <-> README: CI runs the README's commands, extracted from it, and installs nothing of its own.
# ---------------------------------------------------------------------------------------------------------------


def _readme_commands():
    spec = importlib.util.spec_from_file_location("readme_commands", REPO_ROOT / "scripts" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ci_runs_the_readme_sections_and_nothing_else():
    script = (REPO_ROOT / ".ci" / "run").read_text()
    sections = re.findall(r'^\s*readme "([^"]+)"', script, re.M)
    assert sections == ["Browser packages (Debian)", "Quickstart", "Serving on a CPU", "Tests"]
    text = README.read_text()
    for section in sections:
        assert _readme_commands().section_commands(text, section), f"README has no commands under {section!r}"
    code = [line for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    own = [line for line in code if re.search(r"\b(pip|apt-get|venv|pytest|pyflyte)\b", line)]
    assert not own, f".ci/run runs commands the README lacks: {own}"


def test_the_quickstart_is_two_commands_install_then_the_pipeline():
    (block,) = _readme_commands().section_commands(README.read_text(), "Quickstart")
    install, run = block.splitlines()
    assert install == "python3.11 -m venv .venv && . .venv/bin/activate && pip install -e '.[cpu,dev]'"
    assert run == "pyflyte run workflows/pipeline.py llmops_pipeline --config configs/quickstart.yaml"


def test_readme_commands_fails_on_a_section_without_commands(tmp_path):
    result = run(sys.executable, "scripts/readme_commands.py", "No such section")
    assert result.returncode == 1 and "No such section" in result.stderr
    blocks = _readme_commands().section_commands("## A\n```bash\none\n```\n### B\n```bash\ntwo\n```\n", "A")
    assert blocks == ["one"]  # a subsection's blocks are not the section's
