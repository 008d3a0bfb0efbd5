"""Lazy re-exports for package ``__init__`` modules.

A package that wants ``import kitaudit.<pkg>`` to stay cheap lists its public names and
the submodule each lives in, and lets this module-level ``__getattr__`` (PEP 562) import
the submodule on first use::

    _EXPORTS = {"push": "kitaudit.registry.transfer", ...}
    __all__ = sorted(_EXPORTS)
    __getattr__ = lazy_exports(__name__, _EXPORTS)

Nothing is cached in the package namespace: every access asks the submodule, so a test
that monkeypatches ``kitaudit.registry.transfer.push`` is seen through
``kitaudit.registry.push`` too.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """Return a module ``__getattr__`` resolving ``exports`` (name → module path)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
