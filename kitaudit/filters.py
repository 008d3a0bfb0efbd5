"""kit's ``--filter`` grammar and layer matching.

A filter is ``<type>[,<type>...][:<match>[,<match>...]]``. Types: ``kitfile``,
``model`` (the model and its parts), ``datasets``, ``code``, ``docs``,
``prompts``, ``mcpservers``; ``config`` (= kitfile) and ``dataset`` (= datasets)
are accepted as aliases, and type words are case-insensitive. Without matches
every entry of a listed type is selected; with matches an entry is selected when
its ``name`` or its ``path`` equals one of them (docs and code have no name).
Several filters are OR-ed; no filter at all selects everything.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kitaudit.errors import UsageError

FILTER_TYPES = ("kitfile", "model", "datasets", "code", "prompts", "docs", "mcpservers")
TYPE_ALIASES = {"config": "kitfile", "dataset": "datasets"}

_FORMAT = "invalid filter: should be in format <type1>,<type2>[:<filter1>,<filter2>]"
_FIX = ("use e.g. --filter model, --filter datasets:training-data,validation or "
        "--filter docs:README.md; types: " + ", ".join(FILTER_TYPES))

# Layer kinds (as in kitaudit.mediatypes.LAYER_KINDS and Kitfile section names)
# to the filter type that selects them.
_KIND_TO_TYPE = {
    "model": "model", "modelpart": "model", "parts": "model",
    "dataset": "datasets", "datasets": "datasets",
    "code": "code",
    "docs": "docs", "doc": "docs",
    "prompts": "prompts", "prompt": "prompts",
    "mcpservers": "mcpservers", "mcpserver": "mcpservers", "mcpb": "mcpservers",
    "kitfile": "kitfile", "config": "kitfile",
}
# Kinds whose entries have no name: matched by path only.
_PATH_ONLY = frozenset({"code", "docs"})


def _clean_path(path: str) -> str:
    path = path.strip()
    if not path:
        return "."
    return posixpath.normpath(path)


def _field(entry: Any, key: str) -> str | None:
    if entry is None:
        return None
    value = entry.get(key) if isinstance(entry, Mapping) else getattr(entry, key, None)
    return value if isinstance(value, str) and value != "" else None


def _kind_type(kind: str) -> str:
    try:
        return _KIND_TO_TYPE[kind.lower()]
    except KeyError:
        raise ValueError(f"unknown layer kind {kind!r}") from None


@dataclass(frozen=True)
class LayerFilter:
    """One ``--filter`` value: the types it selects and the names/paths it requires."""

    types: tuple[str, ...]
    targets: tuple[str, ...] = ()

    def matches(self, kind: str, entry: Any = None) -> bool:
        """Does this filter select the entry (``name``/``path`` attributes or keys) of ``kind``?"""
        ftype = _kind_type(kind)
        if ftype not in self.types:
            return False
        if not self.targets or ftype == "kitfile":
            return True
        name = None if ftype in _PATH_ONLY else _field(entry, "name")
        path = _field(entry, "path")
        if name is not None and name in self.targets:
            return True
        if path is None:
            return False
        if path in self.targets:
            return True
        # Also accept the same path written differently (./README.md vs README.md).
        cleaned = _clean_path(path)
        return any(_clean_path(t) == cleaned for t in self.targets)

    def __str__(self) -> str:
        text = ",".join(self.types)
        if self.targets:
            text += ":" + ",".join(self.targets)
        return text


@dataclass(frozen=True)
class FilterSet:
    """Several filters, OR-ed. An empty set selects everything."""

    filters: tuple[LayerFilter, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.filters)

    def __iter__(self) -> Iterator[LayerFilter]:
        return iter(self.filters)

    def __len__(self) -> int:
        return len(self.filters)

    def matches(self, kind: str, entry: Any = None) -> bool:
        if not self.filters:
            _kind_type(kind)
            return True
        return any(f.matches(kind, entry) for f in self.filters)

    def wants_kitfile(self) -> bool:
        """Should the Kitfile itself be written out (unpack)?"""
        return not self.filters or any("kitfile" in f.types for f in self.filters)

    def selects_any(self, kitfile: Any) -> bool:
        """True if at least one entry of ``kitfile`` (or the Kitfile itself) is selected.

        ``kitfile`` needs attributes ``model`` (with ``parts``), ``datasets``, ``code``,
        ``docs``, ``prompts``, ``mcp_servers`` (missing ones count as empty).
        """
        if self.wants_kitfile():
            return True
        return any(self.matches(kind, entry) for kind, entry in iter_entries(kitfile))


def iter_entries(kitfile: Any) -> Iterator[tuple[str, Any]]:
    """(kind, entry) for every layer entry of a Kitfile-like object, in kit's layer order."""
    model = getattr(kitfile, "model", None)
    if model is not None:
        yield "model", model
        for part in getattr(model, "parts", None) or ():
            yield "modelpart", part
    for kind, attr in (("code", "code"), ("dataset", "datasets"), ("docs", "docs"),
                       ("prompts", "prompts"), ("mcpservers", "mcp_servers")):
        for entry in getattr(kitfile, attr, None) or ():
            yield kind, entry


def parse_filter(text: str) -> LayerFilter:
    """Parse one ``--filter`` value. Raises :class:`UsageError` with kit's messages."""
    parts = text.split(":")
    if len(parts) > 2:
        raise UsageError(_FORMAT, fix=_FIX)
    types: list[str] = []
    for word in parts[0].split(","):
        canonical = word.strip().lower()
        canonical = TYPE_ALIASES.get(canonical, canonical)
        if canonical not in FILTER_TYPES:
            shown = word if word.strip() else repr(word)
            raise UsageError(
                f"invalid filter type {shown} (must be one of {', '.join(FILTER_TYPES)})",
                fix=_FIX)
        if canonical not in types:
            types.append(canonical)
    targets: list[str] = []
    if len(parts) == 2:
        for target in parts[1].split(","):
            target = target.strip()
            if not target:
                raise UsageError(f"invalid filter {text!r}: empty name or path after ':'",
                                 fix=_FIX)
            targets.append(target)
    return LayerFilter(tuple(types), tuple(targets))


def parse_filters(texts: Iterable[str] | None) -> FilterSet:
    """Parse repeated ``--filter`` values (OR-ed). None or empty → select everything."""
    return FilterSet(tuple(parse_filter(t) for t in texts or ()))


def filters_from_unpack_flags(*, kitfile: bool = False, models: bool = False, code: bool = False,
                              datasets: bool = False, docs: bool = False) -> FilterSet:
    """kit's deprecated unpack flags (``--kitfile``, ``--model``...) as one filter.

    Like kit, this always returns exactly one filter with the selected types in the
    order kitfile, model, docs, datasets, code; with no flag set that filter selects
    nothing, so call it only when at least one flag was given.
    """
    types = [t for t, on in (("kitfile", kitfile), ("model", models), ("docs", docs),
                             ("datasets", datasets), ("code", code)) if on]
    return FilterSet((LayerFilter(tuple(types)),))
