"""Reading policy files (YAML) with a strict schema, and ``--param`` overrides.

A policy file::

    name: baseline                  # required, [a-z0-9][a-z0-9._-]*
    description: ...                # optional
    params:                         # optional; names [a-z_][a-z0-9_]*
      allowed_licenses: [Apache-2.0, MIT]
    rules:                          # required, at least one
      - id: modelkit-signed         # required, unique in the policy
        description: ...            # required
        severity: deny              # required: deny | warn
        expression: signatures.size() > 0    # required, CEL, must give a bool
        message: "'...' + x"        # optional CEL giving the reason string on failure
        controls:                   # optional
          - {framework: eu-ai-act, ref: "Annex IV 2(h)"}
        remediation: "kitaudit sign ..."     # optional (lint warns when missing)

Every problem in a file is reported at once, each naming the file, line, rule id and
field. Every expression is compiled when the file is loaded (once per process).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kitaudit.errors import PolicyError
from kitaudit.policy import _yaml
from kitaudit.policy.cel import CelCompileError, engine
from kitaudit.policy.model import FRAMEWORKS, SEVERITIES, Control, Policy, Rule

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
PARAM_RE = re.compile(r"^[a-z_][a-z0-9_]{0,99}$")
_POLICY_KEYS = {"name", "description", "params", "rules", "version"}
_RULE_KEYS = {"id", "description", "severity", "expression", "message", "controls",
              "remediation"}
_REQUIRED_RULE_KEYS = ("id", "description", "severity", "expression")
_CONTROL_KEYS = {"framework", "ref"}


@dataclass(frozen=True)
class Problem:
    """One problem in a policy, waivers or test file.

    ``severity`` is ``error`` (the file cannot be used) or ``warning`` (lint only).
    ``column`` is the 1-based position within a CEL expression (``line`` is the file line).
    """

    source: str
    message: str
    line: int = 0
    rule: str | None = None
    field: str | None = None
    column: int = 0
    severity: str = "error"

    def __str__(self) -> str:
        parts = [f"{self.source}:{self.line}" if self.line else self.source]
        if self.rule:
            parts.append(f"rule '{self.rule}'" if not self.rule.startswith(("rules[",
                                                                            "waivers["))
                         else self.rule)
        if self.field:
            parts.append(f"field '{self.field}'")
        parts.append(self.message)
        return ": ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.source, "line": self.line, "rule": self.rule,
                "field": self.field, "column": self.column, "severity": self.severity,
                "message": self.message}


class PolicyFileError(PolicyError):
    """One or more problems in policy files; ``problems`` lists each one."""

    def __init__(self, problems: Sequence[Problem | str], *, fix: str | None = None) -> None:
        self.problems = list(problems)
        texts = [str(p) for p in self.problems]
        if len(texts) == 1:
            msg = texts[0]
        else:
            msg = f"{len(texts)} problems: " + "; ".join(texts)
        super().__init__(msg, fix=fix or "fix the policy file (see docs/policy.md); "
                                          "`kitaudit policy lint FILE` lists every problem")


def _line(obj: Any, key: str | None = None) -> int:
    if key is not None and hasattr(obj, "line_of"):
        return obj.line_of(key)
    return getattr(obj, "line", 0)


MAX_PARAM_NODES = 100_000


def _is_json_value(value: Any, budget: list[int] | None = None, depth: int = 0) -> bool:
    """A JSON value (no NaN), at most 20 deep and ``MAX_PARAM_NODES`` values in all
    (YAML aliases can make a small file expand enormously)."""
    if budget is None:
        budget = [MAX_PARAM_NODES]
    budget[0] -= 1
    if depth > 20 or budget[0] < 0:
        return False
    if value is None or isinstance(value, bool | int | float | str):
        return not (isinstance(value, float) and value != value)
    if isinstance(value, list):
        return all(_is_json_value(v, budget, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json_value(v, budget, depth + 1)
                   for k, v in value.items())
    return False


class _Sink:
    """Collects problems for one rule (or the policy's top level)."""

    def __init__(self, source: str, raw: Any, rule: str | None,
                 problems: list[Problem]) -> None:
        self.source, self.raw, self.rule, self.problems = source, raw, rule, problems

    def add(self, field: str | None, message: str, *, column: int = 0,
            key: str | None = None, severity: str = "error") -> None:
        line = _line(self.raw, key if key is not None else field)
        self.problems.append(Problem(self.source, message, line, self.rule, field, column,
                                     severity))


def _text(raw: Mapping[str, Any], key: str, sink: _Sink, *, required: bool) -> str:
    value = raw.get(key)
    if value is None:
        if required:
            sink.add(key, "missing")
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        sink.add(key, "must be a non-empty string")
        return ""
    return value


def _check_rule(raw: Any, index: int, source: str, problems: list[Problem],
                compile_expressions: bool) -> Rule | None:
    if not isinstance(raw, dict):
        problems.append(Problem(source, "must be a mapping", 0, f"rules[{index}]"))
        return None
    rid = raw.get("id")
    label = rid if isinstance(rid, str) and rid else f"rules[{index}]"
    sink = _Sink(source, raw, label, problems)
    before = len(problems)
    for key in raw:
        if key not in _RULE_KEYS:
            sink.add(str(key), f"unknown field (allowed: {', '.join(sorted(_RULE_KEYS))})",
                     key=key)
    if rid is None:
        sink.add("id", "missing")
    elif not isinstance(rid, str) or not NAME_RE.match(rid):
        sink.add("id", f"must match [a-z0-9][a-z0-9._-]* (got {rid!r})")
    description = _text(raw, "description", sink, required=True)
    expression = _text(raw, "expression", sink, required=True)
    remediation = _text(raw, "remediation", sink, required=False)
    message = raw.get("message")
    if message is not None and (not isinstance(message, str) or not message.strip()):
        sink.add("message", "must be a CEL expression string")
        message = None
    severity = raw.get("severity")
    if severity is None:
        sink.add("severity", "missing")
    elif severity not in SEVERITIES:
        sink.add("severity", f"must be deny or warn (got {severity!r})")
    controls: list[Control] = []
    raw_controls = raw.get("controls", [])
    if raw_controls is None:
        raw_controls = []
    if not isinstance(raw_controls, list):
        sink.add("controls", "must be a list")
    else:
        for i, c in enumerate(raw_controls):
            name = f"controls[{i}]"
            if not isinstance(c, dict):
                sink.add(name, "must be a mapping with framework and ref", key="controls")
                continue
            unknown = set(c) - _CONTROL_KEYS
            if unknown:
                sink.add(name, f"unknown field {sorted(map(str, unknown))[0]!r}",
                         key="controls")
            fw, ref = c.get("framework"), c.get("ref")
            if fw not in FRAMEWORKS:
                sink.add(name, f"framework must be one of {', '.join(FRAMEWORKS)} "
                         f"(got {fw!r})", key="controls")
            if not isinstance(ref, str) or not ref.strip():
                sink.add(name, "ref must be a non-empty string", key="controls")
            if fw in FRAMEWORKS and isinstance(ref, str) and ref.strip():
                controls.append(Control(fw, ref.strip()))
    if compile_expressions:
        for field_name, text in (("expression", expression), ("message", message)):
            if text:
                _check_cel(text, field_name, sink)
    if len(problems) != before:
        return None
    return Rule(id=rid, description=description, severity=severity, expression=expression,
                remediation=remediation, controls=tuple(controls), message=message,
                line=_line(raw))


def _check_cel(text: str, field_name: str, sink: _Sink) -> None:
    try:
        program = engine().compile(text)
    except CelCompileError as err:
        for issue in err.issues:
            sink.add(field_name, f"CEL error at {issue.line}:{issue.column}: {issue.message}",
                     column=issue.column)
        return
    want = "bool" if field_name == "expression" else "string"
    if program.result_type not in (want, "dyn"):
        sink.add(field_name, f"must give a {want}, gives {program.result_type}")


def check_policy_data(data: Any, source: str, *, compile_expressions: bool = True,
                      ) -> tuple[Policy | None, list[Problem]]:
    """Validate parsed YAML; return the policy (None if any problem) and the problems."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return None, [Problem(source, "a policy file must be a mapping with name and rules")]
    top = _Sink(source, data, None, problems)
    for key in data:
        if key not in _POLICY_KEYS:
            top.add(str(key), f"unknown field (allowed: {', '.join(sorted(_POLICY_KEYS))})",
                    key=key)
    version = data.get("version", 1)
    if version != 1 or isinstance(version, bool):
        top.add("version", "only version 1 is supported")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        top.add("name", "missing or not [a-z0-9][a-z0-9._-]*")
    description = data.get("description", "") or ""
    if not isinstance(description, str):
        top.add("description", "must be a string")
        description = ""
    params = data.get("params", {}) or {}
    if not isinstance(params, dict):
        top.add("params", "must be a mapping")
        params = {}
    for key, value in params.items():
        if not isinstance(key, str) or not PARAM_RE.match(key):
            top.add("params", f"name {key!r} must match [a-z_][a-z0-9_]*")
        elif not _is_json_value(value):
            top.add("params", f"'{key}' must be a JSON value (string, number, bool, "
                    f"list or mapping; at most {MAX_PARAM_NODES} values, 20 levels deep)")
    rules_raw = data.get("rules")
    rules: list[Rule] = []
    if not isinstance(rules_raw, list) or not rules_raw:
        top.add("rules", "missing or empty (a list of rules)")
    else:
        seen: dict[str, int] = {}
        for i, raw in enumerate(rules_raw):
            rule = _check_rule(raw, i, source, problems, compile_expressions)
            if rule is None:
                continue
            if rule.id in seen:
                _Sink(source, raw, rule.id, problems).add(
                    "id", f"duplicate (first at rules[{seen[rule.id]}])")
                continue
            seen[rule.id] = i
            rules.append(rule)
    if problems:
        return None, problems
    plain_params = json.loads(json.dumps(params))
    return Policy(name=name, description=description.strip(), rules=tuple(rules),
                  params=plain_params, source=source), []


def loads_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse and validate policy YAML text; :class:`PolicyFileError` lists every problem."""
    data = _yaml.loads(text, source)
    policy, problems = check_policy_data(data, source)
    if problems or policy is None:
        raise PolicyFileError(problems)
    return policy


def load_policy(path: str | Path, *, params: Mapping[str, str] | None = None) -> Policy:
    """Load one policy file, applying ``--param`` style overrides (``{key: raw text}``)."""
    policy = loads_policy(_yaml.read_text(path), str(path))
    if params:
        policy = apply_params([policy], params, strict=True)[0]
    return policy


def load_policies(paths: Iterable[str | Path], *,
                  params: Mapping[str, str] | None = None) -> list[Policy]:
    """Load several policy files; each override must be a param of at least one policy.

    Policy names must be unique across the files.
    """
    policies = [loads_policy(_yaml.read_text(p), str(p)) for p in paths]
    if not policies:
        raise PolicyError("no policy files given", fix="pass --policy FILE")
    names: dict[str, str] = {}
    for p in policies:
        if p.name in names:
            raise PolicyError(f"{p.source}: policy name '{p.name}' also used by "
                              f"{names[p.name]}", fix="give each policy a unique name")
        names[p.name] = p.source or ""
    if params:
        policies = apply_params(policies, params)
    return policies


def parse_param_args(args: Sequence[str]) -> dict[str, str]:
    """``["key=value", ...]`` from the command line into ``{key: raw value}``."""
    out: dict[str, str] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        key = key.strip()
        if not sep or not key:
            raise PolicyError(f"--param {arg!r}: expected key=value",
                              fix="e.g. --param allowed_licenses=Apache-2.0,MIT")
        out[key] = value
    return out


def coerce_param(name: str, raw: str, current: Any) -> Any:
    """Turn ``raw`` (command-line text) into a value of the same type as ``current``.

    Lists take JSON (``["a","b"]``) or a comma list (``a,b``); bools, numbers and maps
    take JSON; strings are taken as they are.
    """
    text = raw.strip()

    def as_json() -> Any:
        try:
            return json.loads(text)
        except ValueError:
            raise PolicyError(f"--param {name}: {raw!r} is not valid JSON",
                              fix=f"give {name} as JSON, e.g. --param {name}=true")

    if isinstance(current, list):
        if text.startswith("["):
            value = as_json()
        else:
            value = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(value, list):
            raise PolicyError(f"--param {name}: expected a list")
        return value
    if isinstance(current, str):
        return raw
    value = as_json() if current is not None else _json_or_text(text)
    if current is None:
        return value
    expected = type(current)
    ok = (isinstance(value, bool) if expected is bool else
          isinstance(value, int | float) and not isinstance(value, bool)
          if expected in (int, float) else isinstance(value, expected))
    if not ok:
        raise PolicyError(f"--param {name}: expected {expected.__name__}, got {raw!r}")
    return value


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_params(policies: Sequence[Policy], overrides: Mapping[str, str], *,
                 strict: bool = False) -> list[Policy]:
    """Apply raw overrides to every policy that declares the param.

    A key no policy declares is an error (``strict``: a key this policy does not declare).
    """
    known = {k for p in policies for k in p.params}
    for key in overrides:
        if key not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise PolicyError(f"--param {key}: no loaded policy has this param "
                              f"(params: {listed})", fix="check the param name")
    out = []
    for p in policies:
        mine = {k: coerce_param(k, v, p.params[k]) for k, v in overrides.items()
                if k in p.params}
        if strict and set(overrides) - set(mine):
            raise PolicyError(f"--param: {p.name} has no param "
                              f"{sorted(set(overrides) - set(mine))[0]}")
        out.append(p.with_params(mine) if mine else p)
    return out
