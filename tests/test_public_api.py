"""Each llmops subpackage's `__all__` is its public API: every name resolves, and importing a package is cheap."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

from tests.test_layers import LLMOPS_DEPENDS, ROOT

PACKAGES = sorted({f"llmops.{name}" for name in LLMOPS_DEPENDS} | {"llmops.corpus.ingest"})
# Libraries that take seconds to import or are only needed by some stages.
HEAVY = ("torch", "faiss", "sentence_transformers", "transformers", "datasets", "bm25s", "peft", "trl", "openai")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package):
    module = importlib.import_module(package)
    assert module.__all__, f"{package} exports nothing"
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it cannot provide: {missing}"
    assert set(module.__all__) <= set(dir(module))


@pytest.mark.parametrize("package", PACKAGES)
def test_an_exported_name_is_the_defining_modules_object(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        home = getattr(value, "__module__", None)
        if home is not None and home.startswith(package + "."):
            assert getattr(importlib.import_module(home), name) is value


def test_unknown_names_raise_attribute_error():
    import llmops.index

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        llmops.index.Nope  # noqa: B018


def test_importing_the_packages_loads_no_heavy_library():
    # A fresh interpreter: this one has loaded them already.
    code = (
        "import json, sys\n"
        f"for name in {PACKAGES!r} + ['llmops.index.tuning']: __import__(name)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [], "a package __init__ imports a heavy library; re-export it lazily"


def test_pipeline_code_imports_from_the_defining_module():
    """The re-exports are for users of the library. A cached stage's code closure follows import statements
    (llmops/provenance/code_version.py), and a lazy re-export hides the module that defines the name, so code in
    this repository imports from the module itself."""
    from tests.test_layers import RANKS, _imports, _sources

    hidden = []
    for path in _sources((*RANKS, "bench", "scripts")):
        for line, module, names in _imports(path):
            if module in PACKAGES:
                package_dir = ROOT.joinpath(*module.split("."))
                hidden += [
                    f"{path.relative_to(ROOT)}:{line}: from {module} import {name}"
                    for name in names
                    if not ((package_dir / f"{name}.py").exists() or (package_dir / name / "__init__.py").exists())
                ]
    assert not hidden, "import these from the module that defines them:\n" + "\n".join(hidden)
