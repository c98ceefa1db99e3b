"""The installed environment is what pyproject.toml declares, with nothing left to a newer pip.

`python3.11 -m venv` ships pip 23.2, which does not normalize extra names (PEP 685): justext's `lxml[html_clean]`
did not match lxml's `html-clean` extra, so `lxml_html_clean` was never installed and ingest failed on a fresh
machine while CI (which upgraded pip) passed. These tests walk the requirement graph the way a correct resolver
would and fail on any requirement that is not installed, and on any third-party import of ours that is not declared.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

import pytest
from packaging.markers import UndefinedEnvironmentName
from packaging.requirements import Requirement

from llmops.provenance.code_version import OWN_PACKAGES, ROOT, code_closure

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
INSTALLED_EXTRAS = ("cpu", "dev")  # what README's install command asks for


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wanted(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    try:
        return any(req.marker.evaluate({"extra": e}) for e in extras or {""})
    except UndefinedEnvironmentName:
        return False


def unmet_requirements(root: str = f"flyte-llmops[{','.join(INSTALLED_EXTRAS)}]") -> list[str]:
    """Every requirement reachable from `root` (default: what README installs) that is not installed or satisfied."""
    problems, seen = [], set()
    pending = [(Requirement(root), "README install")]
    while pending:
        req, parent = pending.pop()
        extras = {norm(e) for e in req.extras}
        key = (norm(req.name), frozenset(extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            problems.append(f"{req} (required by {parent}) is not installed")
            continue
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            problems.append(f"{req} (required by {parent}) but {dist.version} is installed")
        for sub in map(Requirement, dist.requires or []):
            # PEP 685: extras compare normalized, so `html_clean` asks for lxml's `html-clean` extra.
            if _wanted(sub, extras):
                name = dist.metadata["Name"]
                pending.append((sub, f"{name}[{','.join(sorted(extras))}]" if extras else name))
    return problems


def test_every_requirement_of_the_readme_install_is_installed():
    assert unmet_requirements() == []


def test_an_extra_spelt_differently_is_still_followed(monkeypatch):
    """What pip 23 got wrong: justext wants `lxml[html_clean]`, lxml names the extra `html-clean`."""
    real = metadata.distribution

    def without_cleaner(name):
        if norm(name) == "lxml-html-clean":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "distribution", without_cleaner)
    # From justext itself: pyproject.toml now also asks for lxml_html_clean directly (which a full walk meets first).
    (problem,) = unmet_requirements("justext")
    assert problem.startswith("lxml_html_clean") and problem.endswith("(required by lxml[html-clean]) is not installed")
    assert any(p.startswith("lxml_html_clean") for p in unmet_requirements())


def test_every_third_party_import_is_a_declared_dependency():
    declared = {norm(Requirement(r).name) for r in PYPROJECT["dependencies"]}
    declared |= {norm(Requirement(r).name) for group in PYPROJECT["optional-dependencies"].values() for r in group}
    modules = tuple(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in OWN_PACKAGES
        for p in (ROOT / package).rglob("*.py")
    )
    imported = code_closure(modules).libraries
    undeclared = sorted(d for d in imported if d != "python" and norm(d) not in declared)
    assert not undeclared, f"imported but not declared in pyproject.toml (add them directly): {undeclared}"


@pytest.mark.parametrize("module", ["lxml.html.clean", "trafilatura", "justext"])
def test_the_extractors_import(module):
    __import__(module)
