"""Keep httpx's command-line client out of kitaudit processes until someone calls it.

``import httpx`` imports ``httpx._main`` (its own CLI: click, rich, pygments lexers),
about 0.1 s of CPU that no kitaudit command uses. :func:`defer_httpx_cli` registers a
stand-in ``httpx._main`` before httpx is first imported. The stand-in is transparent:
calling ``httpx.main()`` or reading any other name from ``httpx._main`` drops it and
imports the real module, so another library in the same process that uses the httpx CLI
still gets it.

Called from ``kitaudit/registry/__init__.py``, which Python runs before any module of the
package (``client``, ``transport``) imports httpx, so every remote command benefits.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_NAME = "httpx._main"


def defer_httpx_cli() -> None:
    """Register the stand-in, unless httpx (or its CLI) is already imported."""
    if "httpx" in sys.modules or _NAME in sys.modules:
        return
    stub = types.ModuleType(_NAME, "kitaudit's stand-in for httpx's CLI; see "
                            "kitaudit.registry._httpx")

    def real() -> types.ModuleType:
        if sys.modules.get(_NAME) is stub:
            del sys.modules[_NAME]
        return importlib.import_module(_NAME)

    def main(*args: Any, **kwargs: Any) -> Any:
        return real().main(*args, **kwargs)

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):  # the import system probes __path__ and the like
            raise AttributeError(f"module {_NAME!r} has no attribute {name!r}")
        return getattr(real(), name)

    stub.main = main  # type: ignore[attr-defined]
    stub.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules[_NAME] = stub
