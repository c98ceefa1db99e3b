"""Digests of the code a stage runs, and the versions of the libraries that code imports.

Flyte's cache returns old results when a task's code changes without a `cache_version` bump; deriving the key from
the source makes that impossible to forget. A stage's code is the static import closure of its entry modules
within this repository (every `import` in those files, also inside functions, followed recursively), so editing a
Deck in `tasks/` or a module that a stage never imports re-runs nothing, and editing what it does run re-runs it.
Comments count as changes: a rebuild is cheap next to a stale result. The third-party packages that closure
imports are mapped to their installed distributions, whose versions go into the key too.
"""

from __future__ import annotations

import ast
import hashlib
import platform
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path

__all__ = ["CodeClosure", "code_closure", "code_version"]

ROOT = Path(__file__).resolve().parents[2]  # the repository: llmops/provenance/code_version.py
# The repository's own top-level packages; every other non-stdlib import is a third-party library.
OWN_PACKAGES = ("llmops", "eval", "serving", "tasks", "workflows", "cli")


class CodeClosure:
    """The files of `modules` and everything they import from this repository, and the libraries they import."""

    def __init__(self, files: dict[str, str], libraries: dict[str, str]):
        self.files = files  # repo-relative path -> sha256
        self.libraries = libraries  # distribution -> version (plus "python")

    @property
    def digest(self) -> str:
        """The code alone."""
        h = hashlib.sha256()
        for rel, sha in sorted(self.files.items()):
            h.update(f"{rel}\0{sha}\0".encode())
        return h.hexdigest()[:16]

    @property
    def fingerprint(self) -> str:
        """The code and the library versions: what an artifact version built by this code depends on."""
        h = hashlib.sha256(self.digest.encode())
        for dist, version in sorted(self.libraries.items()):
            h.update(f"{dist}\0{version}\0".encode())
        return h.hexdigest()[:16]


def _module_file(name: str) -> Path | None:
    parts = name.split(".")
    base = ROOT.joinpath(*parts)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved, `from x import y` as x and x.y)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=None)
def code_closure(modules: tuple[str, ...]) -> CodeClosure:
    missing = [m for m in modules if _module_file(m) is None]
    if missing:  # a moved entry module would otherwise key a stage on no code at all
        raise ModuleNotFoundError(
            f"entry modules {missing} are not files under {ROOT}: update the stage's `modules` in "
            "llmops/provenance/stage_inputs.py to where the code now lives"
        )
    files: dict[str, str] = {}
    third_party: set[str] = set()
    pending = list(modules)
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        top = name.split(".")[0]
        if top not in OWN_PACKAGES:
            if top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(top)
            continue
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        parents = [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]
        pending.extend(p for p in parents if p not in seen)
        path = _module_file(name)
        if path is None:  # `from pkg import function`: the name is not a module
            continue
        files[path.relative_to(ROOT).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
        pending.extend(_imports(path, name))
    libraries = {"python": platform.python_version()}
    for top in sorted(third_party):
        for dist in _distributions().get(top, []):
            if (v := _version(dist)) is not None:
                libraries[dist] = v
    return CodeClosure(files, libraries)


@lru_cache(maxsize=1)
def code_version() -> str:
    """Digest of all of the pipeline's library code (llmops, eval): recorded in artifacts' lineage."""
    names = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in ("llmops", "eval")
        for p in (ROOT / package).rglob("*.py")
    )
    return code_closure(tuple(names)).digest
