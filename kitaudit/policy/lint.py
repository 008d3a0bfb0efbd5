"""``kitaudit policy lint [FILES]``: every problem in policy and waiver files at once.

Errors (the file cannot be used): YAML syntax, schema (unknown or missing fields, bad
severity, bad controls), CEL that does not compile (with the rule id and the line:column
within the expression), an expression that cannot give a bool, a ``params.X`` that the
policy does not declare. Warnings: a rule without remediation, a declared param no rule
uses, an expression or message that reads a key the input document does not define
(see docs/policy.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from kitaudit.errors import PolicyError
from kitaudit.policy import _yaml
from kitaudit.policy.inputdoc import empty_input
from kitaudit.policy.loader import Problem, check_policy_data
from kitaudit.policy.waivers import check_waivers_data

_PARAM_REF = re.compile(r"\bparams\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['\"]([^'\"]+)['\"]\s*\])")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")


def _param_refs(expression: str) -> set[str]:
    found = set()
    for m in _PARAM_REF.finditer(expression):
        found.add(m.group(1) or m.group(2))
    return found


def _known_paths() -> set[str]:
    """Dotted paths of the documented maps (``sbom.model.card``...)."""
    paths: set[str] = set()

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                path = f"{prefix}.{key}" if prefix else key
                paths.add(path)
                walk(path, sub)

    walk("", empty_input())
    return paths


_KNOWN = _known_paths()
_OPEN = ("kitfile", "params", "manifest.annotations", "sbom.model.hashes")
_PATH = re.compile(r"(?<![\w.])((?:sbom|lineage|reference|registry|manifest)(?:\.[A-Za-z_]\w*)+)")


def _unknown_paths(expression: str) -> list[str]:
    """Paths under documented maps that the input document does not define."""
    text = _STRING.sub("''", expression)
    out = []
    for m in _PATH.finditer(text):
        parts = m.group(1).split(".")
        for i in range(2, len(parts) + 1):
            path = ".".join(parts[:i])
            if path.startswith(_OPEN) or path in _KNOWN:
                continue
            parent = ".".join(parts[:i - 1])
            if parent in _KNOWN and path not in _KNOWN:
                # A method call on a value (e.g. sbom.licenses.all) is not a key.
                end = m.start(1) + len(path)
                if text[end:end + 1] == "(":
                    break
                out.append(path)
            break
    return out


def lint_file(path: str | Path) -> list[Problem]:
    """Lint one policy or waivers file (a mapping with ``waivers`` is a waivers file)."""
    source = str(path)
    try:
        data = _yaml.load(path)
    except PolicyError as err:
        return [Problem(source, err.message.removeprefix(source).lstrip(":0123456789 "),
                        _line_from(err.message, source))]
    if isinstance(data, dict) and "waivers" in data and "rules" not in data:
        return check_waivers_data(data, source)[1]
    policy, problems = check_policy_data(data, source)
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        return problems
    declared = data.get("params") if isinstance(data.get("params"), dict) else {}
    used: set[str] = set()
    for i, raw in enumerate(data["rules"]):
        if not isinstance(raw, dict):
            continue
        rid = raw.get("id") if isinstance(raw.get("id"), str) else f"rules[{i}]"
        for field in ("expression", "message"):
            text = raw.get(field)
            if not isinstance(text, str):
                continue
            line = raw.line_of(field) if hasattr(raw, "line_of") else 0
            refs = _param_refs(text)
            used |= refs
            for name in sorted(refs - set(declared)):
                problems.append(Problem(source, f"params.{name} is not declared in the "
                                        "policy's params", line, rid, field))
            for path_ in _unknown_paths(text):
                problems.append(Problem(source, f"{path_} is not in the input document "
                                        "(docs/policy.md); it will fail at run time",
                                        line, rid, field, severity="warning"))
        if not raw.get("remediation"):
            problems.append(Problem(source, "missing: say which kitaudit command fixes it",
                                    raw.line if hasattr(raw, "line") else 0, rid,
                                    "remediation", severity="warning"))
    for name in sorted(set(declared) - used):
        problems.append(Problem(source, f"param '{name}' is not used by any rule",
                                data.line_of("params") if hasattr(data, "line_of") else 0,
                                None, "params", severity="warning"))
    del policy
    return problems


def _line_from(message: str, source: str) -> int:
    m = re.match(re.escape(source) + r":(\d+):", message)
    return int(m.group(1)) if m else 0


def default_files(root: str | Path = ".") -> list[Path]:
    """``policies/*.yaml`` under ``root`` (what ``policy lint`` checks without FILES)."""
    folder = Path(root) / "policies"
    return sorted(p for p in folder.glob("*.y*ml") if p.is_file())


def lint_files(paths: Iterable[str | Path]) -> list[Problem]:
    """Lint every file; problems in file order, errors and warnings together."""
    out: list[Problem] = []
    for path in paths:
        out.extend(lint_file(path))
    return out
