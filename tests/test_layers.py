"""The shape of the code: imports point down the layers, and no module reaches another's private names.

    cli, workflows -> tasks -> {eval, serving} -> llmops

Inside `llmops`, the subpackages form the DAG in `LLMOPS_DEPENDS` (each may import the base modules, `config`,
`errors`, `storage`, `htmlkit`, `workspace` and `exports`). Imports are read from the source (every `import` statement, lazy ones inside functions
too), so a cycle hidden by a function-level import is still caught.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A package may import the packages of a lower rank, never its own rank's siblings or anything above.
RANKS = {"llmops": 0, "eval": 1, "serving": 1, "tasks": 2, "workflows": 3, "cli": 3}

LLMOPS_BASE = {"config", "errors", "storage", "htmlkit", "workspace", "exports", "records"}
LLMOPS_DEPENDS = {
    "provenance": set(),
    "corpus": {"provenance"},  # the chunk stage's cache key names its code closure
    "index": {"corpus", "provenance"},
    "llm": {"corpus", "provenance"},
    "rag": {"corpus", "index", "llm"},
    "chat": {"corpus", "index", "llm", "rag", "guardrails"},  # the conversation path around the chain (serving and eval)
    "finetune": {"corpus", "index", "llm", "rag", "provenance"},
    "release": {"index", "llm", "finetune", "provenance"},
    "requestlog": set(),  # the request log's records, reader and writer: serving writes it, the monitor reads it
    "monitor": {"requestlog"},  # the request log window in numbers; eval/monitor.py adds the release, index, judge
    "guardrails": set(),  # pure checks and an HTTP client of its own: no model, no corpus
    "feedback": {"requestlog", "corpus", "index", "release"},  # request log -> review file -> eval set / SFT data
    "tracking": set(),  # records -> MLflow runs; mlflow imported lazily, only when tracking.mlflow_uri is set
}
# The base modules are the floor: they import no subpackage, and among themselves only what is listed here.
BASE_DEPENDS = {
    "config": {"errors"},
    "errors": set(),
    "storage": {"errors"},
    "htmlkit": {"errors"},
    "exports": set(),
    "records": set(),  # reading stored records back: schema version, then schema
    "workspace": {"config", "storage"},  # where stages keep their work: under the configured artifact root
}
# Private names of third-party libraries we have to reach, and why.
THIRD_PARTY_PRIVATE = {
    "_analytics": "ragas sends telemetry from import time; its private switch is the only one that works offline",
}


def _sources(packages=tuple(RANKS)) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=None)
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) for every import statement in the file."""
    found = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def _unit(module: str) -> str | None:
    """The layer unit a module belongs to: a top-level package, or `llmops.<subpackage or base module>`."""
    parts = module.split(".")
    if parts[0] not in RANKS:
        return None
    if parts[0] == "llmops" and len(parts) > 1:
        return f"llmops.{parts[1]}"
    return parts[0]


def _allowed(src: str, dst: str) -> bool:
    if src == dst:
        return True
    top_src, top_dst = src.split(".")[0], dst.split(".")[0]
    if top_src != top_dst:
        return RANKS[top_dst] < RANKS[top_src]
    if top_src != "llmops":
        return True
    if dst == "llmops":  # the package's own __init__ re-exports nothing that points up
        return False
    a, b = src.split(".")[1], dst.split(".")[1]
    if b in LLMOPS_BASE:
        return a not in LLMOPS_BASE or b in BASE_DEPENDS.get(a, set())
    return b in LLMOPS_DEPENDS.get(a, set())


def test_every_llmops_subpackage_is_placed_in_the_layers():
    found = {p.name if p.is_dir() else p.stem for p in (ROOT / "llmops").iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert found == set(LLMOPS_DEPENDS) | LLMOPS_BASE


def test_imports_point_down():
    upward = []
    for path in _sources():
        src = _unit(_module_name(path))
        for line, module, _ in _imports(path):
            dst = _unit(module)
            if dst is not None and not _allowed(src, dst):
                upward.append(f"{path.relative_to(ROOT)}:{line}: {src} imports {module}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path):
    assert not _allowed("llmops.index", "eval")
    assert not _allowed("llmops.index", "llmops.rag")
    assert not _allowed("eval", "serving") and not _allowed("serving", "eval")
    assert not _allowed("tasks", "workflows")
    assert _allowed("tasks", "eval") and _allowed("llmops.rag", "llmops.index") and _allowed("cli", "serving")


def _private_definitions(tree: ast.Module) -> set[str]:
    """Private names a module defines itself: functions, classes, attributes it assigns, keyword names."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and isinstance(node.value, ast.Name)
              and node.value.id in ("self", "cls")):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if n.startswith("_")}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@pytest.mark.parametrize("packages", [tuple(RANKS), ("bench", "scripts")], ids=["product", "bench+scripts"])
def test_no_module_reaches_another_modules_private_names(packages):
    reached = []
    for path in _sources(packages):
        tree = _tree(path)
        for line, module, names in _imports(path):
            if _unit(module) is not None or module.split(".")[0] in {"tests", "bench"}:
                reached += [f"{path.relative_to(ROOT)}:{line}: imports {module}.{n}" for n in names if _is_private(n)]
        own = _private_definitions(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in own\
                    and node.attr not in THIRD_PARTY_PRIVATE):
                reached.append(f"{path.relative_to(ROOT)}:{node.lineno}: uses .{node.attr}")
    assert not reached, "private names reached across modules:\n" + "\n".join(reached)


def test_no_product_or_tool_code_imports_the_tests():
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: imports {module}"
        for path in _sources((*RANKS, "bench", "scripts"))
        for line, module, _ in _imports(path)
        if module.split(".")[0] == "tests"
    ]
    assert not offenders, "\n".join(offenders)
