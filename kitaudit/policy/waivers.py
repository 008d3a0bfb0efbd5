"""Waivers: accepted failures of one rule for matching subjects, until an expiry date.

``policies/waivers.yaml``::

    waivers:
      - rule: licence-allow-listed           # required: rule id
        policy: strict                       # optional: only this policy's rule
        repository: "ghcr.io/acme/legacy-*"  # glob over registry/repository
        digest: "sha256:3f1c*"               # glob over the digest
        reason: "..."                        # required
        owner: "alice@example.com"           # required
        expires: 2026-12-31                  # required: last day (UTC) it applies

At least one of ``repository`` and ``digest`` is required (``"**"`` to mean every
repository, written out on purpose). An expired waiver waives nothing.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from kitaudit.policy import _yaml
from kitaudit.policy.loader import NAME_RE, PolicyFileError, Problem, _line
from kitaudit.policy.model import Waiver

_KEYS = {"rule", "policy", "repository", "digest", "reason", "owner", "expires"}


def _date(value: Any) -> _dt.date | None:
    if isinstance(value, _dt.datetime):
        return None  # a time of day would be ambiguous: dates only
    if isinstance(value, _dt.date):
        return value
    if isinstance(value, str):
        try:
            return _dt.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def check_waivers_data(data: Any, source: str) -> tuple[list[Waiver], list[Problem]]:
    """Validate parsed YAML; return the waivers and every problem found."""
    if data is None:
        return [], []
    if not isinstance(data, dict) or set(data) - {"waivers"}:
        return [], [Problem(source, "a waivers file is a mapping with one key, 'waivers'")]
    items = data.get("waivers") or []
    if not isinstance(items, list):
        return [], [Problem(source, "must be a list", _line(data), None, "waivers")]
    problems: list[Problem] = []
    out: list[Waiver] = []
    for i, raw in enumerate(items):
        label = f"waivers[{i}]"
        if not isinstance(raw, dict):
            problems.append(Problem(source, "must be a mapping", 0, label))
            continue
        before = len(problems)
        rid = raw.get("rule")
        if isinstance(rid, str):
            label += f" (rule '{rid}')"

        def add(field: str | None, message: str, raw: Any = raw, label: str = label) -> None:
            problems.append(Problem(source, message, _line(raw, field), label, field))

        for key in raw:
            if key not in _KEYS:
                add(str(key), f"unknown field (allowed: {', '.join(sorted(_KEYS))})")
        if not isinstance(rid, str) or not NAME_RE.match(rid):
            add("rule", "missing or not a rule id")
        policy = raw.get("policy")
        if policy is not None and (not isinstance(policy, str) or not NAME_RE.match(policy)):
            add("policy", "not a policy name")
        for key in ("reason", "owner"):
            value = raw.get(key)
            if not isinstance(value, str) or not value.strip():
                add(key, "missing or empty")
        patterns = {}
        for key in ("repository", "digest"):
            value = raw.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                add(key, "must be a non-empty glob")
            patterns[key] = value
        if patterns["repository"] is None and patterns["digest"] is None:
            add(None, "give 'repository' or 'digest' (use \"**\" on purpose to waive "
                "for every repository)")
        expires = _date(raw.get("expires"))
        if expires is None:
            add("expires", "missing or not a YYYY-MM-DD date")
        if len(problems) != before or expires is None:
            continue
        out.append(Waiver(rule=rid, reason=raw["reason"].strip(), owner=raw["owner"].strip(),
                          expires=expires, repository=patterns["repository"],
                          digest=patterns["digest"], policy=policy, source=source))
    return out, problems


def loads_waivers(text: str, source: str = "<waivers>") -> list[Waiver]:
    """Parse waivers YAML text; :class:`PolicyFileError` lists every problem."""
    waivers, problems = check_waivers_data(_yaml.loads(text, source), source)
    if problems:
        raise PolicyFileError(problems, fix="fix the waivers file (see docs/policy.md)")
    return waivers


def load_waivers(path: str | Path) -> list[Waiver]:
    """Load a waivers file (``policies/waivers.yaml``)."""
    return loads_waivers(_yaml.read_text(path), str(path))
