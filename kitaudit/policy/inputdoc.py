"""The policy input document: the one contract between ``verify``/the crawler (which
build it) and policies (which read it). Documented in ``docs/policy.md``.

:func:`normalize_input` makes every documented key present with a value of the
documented type, so that rules need no ``has()`` guards for them, converts ``now`` to a
timestamp, and enforces the "verified facts only" rule as a second line of defence:

* ``sbom`` content (everything except ``present``/``verified``) is cleared unless
  ``sbom.verified`` is true;
* ``signatures`` and ``attestations`` keep only entries whose ``verified`` is true.

Unknown keys are kept (forward compatibility); a documented key with a value of the wrong
type is a :class:`~kitaudit.errors.PolicyError` (``null`` means "not known" and becomes
the default).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

from kitaudit.errors import PolicyError

INPUT_SCHEMA_VERSION = 1

_CARD: dict[str, Any] = {
    "approach": "", "task": "", "architecture_family": "", "architecture": "",
    "intended_use": [], "users": [], "limitations": [], "tradeoffs": [],
    "metrics": [], "fairness": [], "ethical_considerations": [], "energy": [],
    "datasets": [],
}
_SBOM_MODEL: dict[str, Any] = {
    "name": "", "version": "", "license": "", "purl": "", "hashes": {},
    "card": _CARD,
}
_SBOM_CONTENT: dict[str, Any] = {
    "digest": "", "spec_version": "", "signed_by": [], "matches_manifest": False,
    "mismatches": [], "licenses": [], "model": _SBOM_MODEL, "datasets": [],
    "ancestors": [], "completeness": {"score": 0.0, "missing": []},
}

#: The document with every documented key at its default ("nothing known").
_DEFAULTS: dict[str, Any] = {
    "schema_version": INPUT_SCHEMA_VERSION,
    "reference": {"registry": "", "repository": "", "tag": "", "text": ""},
    "digest": "",
    "registry": {"host": "", "referrers_api": False},
    "manifest": {
        "mediaType": "", "artifactType": "",
        "config": {"mediaType": "", "digest": "", "size": 0},
        "annotations": {}, "layers": [],
    },
    "kitfile": {"package": {}, "datasets": [], "code": [], "docs": [], "prompts": []},
    "sbom": {"present": False, "verified": False, **_SBOM_CONTENT},
    "signatures": [],
    "attestations": [],
    "lineage": {"base_models": [], "depth": 0},
    "params": {},
    "now": "",
}

_SIGNER: dict[str, Any] = {"kind": "", "identity": "", "issuer": "", "key_id": ""}

#: Defaults for the entries of documented lists (path with ``[]`` for "each item").
_ITEM_DEFAULTS: dict[str, dict[str, Any]] = {
    "manifest.layers[]": {"mediaType": "", "digest": "", "size": 0, "kind": "", "path": "",
                          "annotations": {}},
    "sbom.signed_by[]": _SIGNER,
    "sbom.model.card.metrics[]": {"type": "", "value": "", "slice": ""},
    "sbom.datasets[]": {
        "name": "", "version": "", "license": "", "hashes": {}, "classification": "",
        "provenance": {"url": "", "source": ""},
        "governance": {"owners": [], "custodians": [], "stewards": []},
        "sensitive_data": [],
    },
    "sbom.ancestors[]": {"name": "", "version": "", "purl": "", "reference": "",
                         "digest": "", "license": ""},
    "signatures[]": {**_SIGNER, "verified": False, "predicate_type": "", "created": "",
                     "source": ""},
    "attestations[]": {**_SIGNER, "verified": False, "predicate_type": "", "digest": "",
                       "created": "", "source": ""},
    "lineage.base_models[]": {"reference": "", "digest": "", "signed": False,
                              "verified": False, "identity": "", "issuer": "", "depth": 1},
}

# Keys whose value is free-form (no defaults/type checks inside).
_FREE_FORM = {"manifest.annotations", "kitfile", "params", "sbom.model.hashes",
              "sbom.datasets[].hashes", "manifest.layers[].annotations"}


def empty_input() -> dict[str, Any]:
    """A fresh document in which nothing is known (every key at its default)."""
    return _fresh(_DEFAULTS)


def _type_name(value: Any) -> str:
    return {dict: "map", list: "list", str: "string", bool: "bool", int: "int",
            float: "double"}.get(type(value), type(value).__name__)


def _plain(value: Any, path: str) -> Any:
    """Copy ``value`` into plain JSON types that CEL accepts (tuples become lists).

    ``path`` is only used in error messages (the nearest documented key)."""
    t = type(value)
    if t is str or t is bool or t is int or t is float or value is None:
        return value
    if t is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise PolicyError(f"input document: {path}: map key {k!r} is not a string",
                                  fix="input documents are JSON objects")
            out[k] = _plain(v, path)
        return out
    if t is list or t is tuple:
        return [_plain(v, path) for v in value]
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return _plain(dict(value), path)
    if isinstance(value, _dt.datetime):
        return _rfc3339(value)
    raise PolicyError(f"input document: {path}: unsupported value of type "
                      f"{type(value).__name__}", fix="input documents hold JSON values only")


def _rfc3339(when: _dt.datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return when.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str | _dt.datetime | _dt.date, what: str = "time") -> _dt.datetime:
    """An RFC 3339 timestamp (or date) as an aware UTC datetime; PolicyError if bad."""
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.UTC)
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_dt.UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return parse_time(_dt.date.fromisoformat(text))
            return parse_time(_dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            pass
    raise PolicyError(f"{what}: {value!r} is not an RFC 3339 timestamp or YYYY-MM-DD date",
                      fix="write e.g. 2026-12-31 or 2026-12-31T00:00:00Z")


def _fresh(default: Any) -> Any:
    """A new copy of a (small) default value."""
    if isinstance(default, dict):
        return {k: _fresh(v) for k, v in default.items()}
    if isinstance(default, list):
        return [_fresh(v) for v in default]
    return default


class _Node:
    """One documented key: its default, type and children (compiled from _DEFAULTS)."""

    __slots__ = ("children", "default", "item", "kind", "path")

    def __init__(self, path: str, default: Any) -> None:
        self.path = path
        self.default = default
        self.children: dict[str, _Node] = {}
        self.item: _Node | None = None
        if path in _FREE_FORM:
            self.kind = "free-map" if isinstance(default, dict) else "free"
        elif isinstance(default, dict):
            self.kind = "map"
            self.children = {k: _Node(f"{path}.{k}" if path else k, v)
                             for k, v in default.items()}
        elif isinstance(default, list):
            self.kind = "list"
            item = _ITEM_DEFAULTS.get(f"{path}[]")
            self.item = _Node(f"{path}[]", item) if item is not None else None
        else:
            self.kind = type(default).__name__  # bool, int, float, str


def _bad(node: _Node, expected: str, value: Any) -> PolicyError:
    return PolicyError(f"input document: {node.path}: expected {expected}, "
                       f"got {_type_name(value)}")


def _merge(node: _Node, value: Any) -> Any:
    """Check ``value`` against the documented type and fill missing keys, in one pass
    that also copies ``value`` into plain JSON types."""
    if value is None:
        return _fresh(node.default)
    kind = node.kind
    t = type(value)
    if kind == "str":
        if t is str:
            return value
        if isinstance(value, str):
            return str(value)
        raise _bad(node, "string", value)
    if kind == "map":
        if t is not dict and not isinstance(value, dict):
            raise _bad(node, "map", value)
        children = node.children
        out = {}
        matched = 0
        for key, sub in value.items():
            child = children.get(key)
            if child is not None:
                out[key] = _merge(child, sub)
                matched += 1
            elif type(key) is str:
                out[key] = _plain(sub, f"{node.path}.{key}" if node.path else key)
            else:
                raise PolicyError(f"input document: {node.path}: map key {key!r} is not a "
                                  "string", fix="input documents are JSON objects")
        if matched != len(children):
            for key, child in children.items():
                if key not in out:
                    out[key] = _fresh(child.default)
        return out
    if kind == "list":
        if t is not list and not isinstance(value, list | tuple):
            raise _bad(node, "list", value)
        item = node.item
        if item is None:
            return _plain(value, node.path)
        return [_merge(item, v) for v in value]
    if kind == "bool":
        if t is bool:
            return value
        raise _bad(node, "bool", value)
    if kind == "int":
        if t is int or (isinstance(value, int) and not isinstance(value, bool)):
            return int(value)
        raise _bad(node, "int", value)
    if kind == "float":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _bad(node, "number", value)
    if kind == "free-map":
        if not isinstance(value, dict):
            raise _bad(node, "map", value)
        return {**_fresh(node.default), **_plain(value, node.path)}
    return _plain(value, node.path)


_SCHEMA = _Node("", _DEFAULTS)


def normalize_input(doc: Mapping[str, Any], *, params: Mapping[str, Any] | None = None,
                    now: _dt.datetime | str | None = None) -> dict[str, Any]:
    """Return a complete, checked copy of ``doc`` ready for evaluation.

    ``params`` replaces ``doc["params"]`` (evaluation sets the policy's params); ``now``
    replaces ``doc["now"]``; when neither gives a time, the current UTC time is used.
    ``now`` in the result is an aware ``datetime`` (a CEL timestamp).
    """
    if not isinstance(doc, Mapping):
        raise PolicyError(f"input document: expected a JSON object, got {_type_name(doc)}")
    version = doc.get("schema_version", INPUT_SCHEMA_VERSION)
    if version != INPUT_SCHEMA_VERSION:
        raise PolicyError(f"input document: schema_version {version!r} is not supported "
                          f"(this kitaudit reads {INPUT_SCHEMA_VERSION})",
                          fix="upgrade kitaudit or rebuild the document with this version")
    plain = dict(doc)
    raw_now = plain.pop("now", None)
    if isinstance(raw_now, _dt.datetime | _dt.date):
        raw_now = parse_time(raw_now)
    elif raw_now is not None and not isinstance(raw_now, str):
        raise PolicyError(f"input document: now: expected an RFC 3339 string, "
                          f"got {_type_name(raw_now)}")
    if params is not None:
        plain["params"] = params
    out = _merge(_SCHEMA, plain)
    sbom = out["sbom"]
    if not sbom["verified"]:
        # Content of an unverified ML-BOM never reaches a policy.
        for key, dval in _SBOM_CONTENT.items():
            sbom[key] = _fresh(dval)
    out["signatures"] = [s for s in out["signatures"] if s["verified"] is True]
    out["attestations"] = [a for a in out["attestations"] if a["verified"] is True]
    when = now if now is not None else (raw_now or None)
    out["now"] = parse_time(when, "input document: now") if when else _dt.datetime.now(_dt.UTC)
    return out


def to_json_document(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``doc`` with ``now`` as an RFC 3339 string (for writing the document as JSON)."""
    out = dict(doc)
    if isinstance(out.get("now"), _dt.datetime):
        out["now"] = _rfc3339(out["now"])
    return out
