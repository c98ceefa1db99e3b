"""Lazy re-exports for the subpackages' `__init__` files (PEP 562).

`from llmops.index import Retriever` works, yet importing a package imports none of its modules. A package's
`__init__` runs on every import of a module inside it, so eager re-exports would make `import llmops.index.tuning`
load faiss and torch, and would put every sibling module into each cached stage's code closure
(`llmops.provenance.code_version` follows import statements, `__init__` files included): editing one module would
then re-run stages that never use it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, modules: Mapping[str, Sequence[str]]
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """`__all__`, `__getattr__` and `__dir__` for `package`, which re-exports `names` from `package.module` for
    each `module: names` in `modules`; a name's module is imported on its first use."""
    home = {name: f"{package}.{module}" for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home[name]), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(home))

    return sorted(home), __getattr__, __dir__
