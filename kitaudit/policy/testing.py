"""Policy unit tests (``kitaudit policy test DIR``), in the spirit of ``opa test`` and
``kyverno test``: input documents plus the expected status of each named rule.

Every ``*_test.yaml`` / ``*_test.yml`` file under DIR is one suite::

    policies: [../baseline.yaml]          # paths relative to this file (required)
    waivers: ../waivers.yaml              # optional waivers file for every case
    params: {allowed_licenses: [MIT]}     # optional param values for every case
    now: 2026-11-27T00:00:00Z             # optional evaluation time for every case
    inputs:                               # named input documents (JSON or YAML files)
      complete: inputs/complete.json
    cases:
      - name: unsigned kit is denied      # required
        input: complete                   # a name from inputs, a file path, or a mapping
        patch: {signatures: []}           # optional JSON merge patch (RFC 7386)
        params: {...}                     # optional, over the suite's params
        waivers: [{rule: ..., ...}]       # optional inline waivers (replace the file's)
        now: 2027-01-01                   # optional
        decision: deny                    # optional: pass | warn | deny
        expect:                           # rule id (or policy/rule) -> status
          modelkit-signed: fail

Statuses: pass, fail, warn, waived, error. Rules not named in ``expect`` are not checked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kitaudit.errors import PolicyError
from kitaudit.policy import _yaml
from kitaudit.policy.evaluate import evaluate
from kitaudit.policy.inputdoc import parse_time
from kitaudit.policy.loader import PolicyFileError, Problem, load_policies
from kitaudit.policy.model import STATUSES, Policy, PolicyReport, Waiver
from kitaudit.policy.waivers import check_waivers_data, load_waivers

_SUITE_KEYS = {"policies", "waivers", "params", "now", "inputs", "cases"}
_CASE_KEYS = {"name", "input", "patch", "params", "waivers", "now", "decision", "expect"}


@dataclass
class CaseResult:
    """One test case: ``problems`` is empty when it passed."""

    suite: str
    name: str
    problems: list[str] = field(default_factory=list)
    report: PolicyReport | None = None

    @property
    def passed(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "name": self.name, "passed": self.passed,
                "problems": list(self.problems)}


@dataclass
class TestRun:
    """All suites under a directory."""

    __test__ = False  # not a pytest class

    cases: list[CaseResult]
    suites: list[str]

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def failed(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "suites": list(self.suites),
                "total": len(self.cases), "failed": len(self.failed),
                "cases": [c.to_dict() for c in self.cases]}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _load_document(path: Path) -> dict[str, Any]:
    text = _yaml.read_text(path)
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError as err:
            raise PolicyError(f"{path}: not valid JSON: {err}")
    else:
        data = _yaml.loads(text, str(path))
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: an input document must be a JSON object")
    return data


def _fail(source: str, message: str, field: str | None = None) -> PolicyFileError:
    return PolicyFileError([Problem(source, message, 0, None, field)],
                           fix="fix the test file (see docs/policy.md, 'Policy tests')")


def _with_params(policies: list[Policy], params: Mapping[str, Any], source: str
                 ) -> list[Policy]:
    known = {k for p in policies for k in p.params}
    unknown = sorted(set(params) - known)
    if unknown:
        raise _fail(source, f"param '{unknown[0]}' is not a param of the policies", "params")
    return [p.with_params({k: v for k, v in params.items() if k in p.params})
            for p in policies]


def _inline_waivers(raw: Any, source: str) -> list[Waiver]:
    waivers, problems = check_waivers_data({"waivers": raw}, source)
    if problems:
        raise PolicyFileError(problems)
    return waivers


def run_suite(path: str | Path) -> list[CaseResult]:
    """Run one ``*_test.yaml`` file. Bad suite files raise PolicyError."""
    path = Path(path)
    source = str(path)
    data = _yaml.load(path)
    if not isinstance(data, dict):
        raise _fail(source, "a test file is a mapping with policies and cases")
    unknown = sorted(map(str, set(data) - _SUITE_KEYS))
    if unknown:
        raise _fail(source, f"unknown field (allowed: {', '.join(sorted(_SUITE_KEYS))})",
                    unknown[0])
    base = path.parent
    pol_paths = data.get("policies")
    if isinstance(pol_paths, str):
        pol_paths = [pol_paths]
    if not isinstance(pol_paths, list) or not pol_paths or \
            not all(isinstance(p, str) for p in pol_paths):
        raise _fail(source, "must list policy files", "policies")
    policies = load_policies([base / p for p in pol_paths])
    suite_params = data.get("params") or {}
    if not isinstance(suite_params, dict):
        raise _fail(source, "must be a mapping", "params")
    policies = _with_params(policies, suite_params, source)
    waivers: list[Waiver] = []
    if data.get("waivers") is not None:
        if not isinstance(data["waivers"], str):
            raise _fail(source, "must be a path to a waivers file", "waivers")
        waivers = load_waivers(base / data["waivers"])
    suite_now = data.get("now")
    inputs: dict[str, dict[str, Any]] = {}
    raw_inputs = data.get("inputs") or {}
    if not isinstance(raw_inputs, dict):
        raise _fail(source, "must map names to files", "inputs")
    for name, rel in raw_inputs.items():
        if isinstance(rel, dict):
            inputs[str(name)] = rel
        elif isinstance(rel, str):
            inputs[str(name)] = _load_document(base / rel)
        else:
            raise _fail(source, f"input {name!r}: must be a file path or a mapping",
                        "inputs")
    cases = data.get("cases")
    if not isinstance(cases, list) or not cases:
        raise _fail(source, "missing or empty", "cases")
    results = []
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or not isinstance(case.get("name"), str):
            raise _fail(source, f"cases[{i}]: must be a mapping with a name")
        results.append(_run_case(source, base, case, policies, waivers, suite_now, inputs))
    return results


def _run_case(source: str, base: Path, case: dict[str, Any], policies: list[Policy],
              waivers: list[Waiver], suite_now: Any,
              inputs: dict[str, dict[str, Any]]) -> CaseResult:
    name = case["name"]
    where = f"{source}: case {name!r}"
    unknown = sorted(map(str, set(case) - _CASE_KEYS))
    if unknown:
        raise _fail(where, f"unknown field (allowed: {', '.join(sorted(_CASE_KEYS))})",
                    unknown[0])
    raw_input = case.get("input")
    if isinstance(raw_input, dict):
        doc = raw_input
    elif isinstance(raw_input, str) and raw_input in inputs:
        doc = inputs[raw_input]
    elif isinstance(raw_input, str):
        doc = _load_document(base / raw_input)
    else:
        raise _fail(where, "must name an input, a file or give a mapping", "input")
    if case.get("patch") is not None:
        if not isinstance(case["patch"], dict):
            raise _fail(where, "must be a mapping (JSON merge patch)", "patch")
        doc = merge_patch(doc, case["patch"])
    if case.get("params"):
        if not isinstance(case["params"], dict):
            raise _fail(where, "must be a mapping", "params")
        policies = _with_params(policies, case["params"], where)
    if "waivers" in case:
        waivers = _inline_waivers(case["waivers"] or [], where)
    when = case.get("now", suite_now)
    now = parse_time(when, f"{where}: now") if when is not None else None
    expect = case.get("expect") or {}
    decision = case.get("decision")
    if not isinstance(expect, dict) or (not expect and decision is None):
        raise _fail(where, "give expected statuses (rule: status) or a decision", "expect")
    result = CaseResult(suite=source, name=name)
    report = evaluate(policies, doc, waivers=waivers, now=now)
    result.report = report
    for rule, want in expect.items():
        if want not in STATUSES:
            raise _fail(where, f"rule {rule!r}: expected status must be one of "
                        f"{', '.join(STATUSES)} (got {want!r})", "expect")
        try:
            got = report.result(str(rule))
        except KeyError as err:
            raise _fail(where, f"rule {err.args[0]}", "expect")
        if got.status != want:
            result.problems.append(f"{rule}: expected {want}, got {got.status}"
                                   + (f" ({got.reason})" if got.reason else ""))
    if decision is not None:
        if decision not in ("pass", "warn", "deny"):
            raise _fail(where, "must be pass, warn or deny", "decision")
        if report.decision != decision:
            result.problems.append(f"decision: expected {decision}, got {report.decision}")
    return result


def find_suites(directory: str | Path) -> list[Path]:
    """Every ``*_test.yaml``/``*_test.yml`` under ``directory``, sorted."""
    root = Path(directory)
    if not root.exists():
        raise PolicyError(f"{root}: no such directory", fix="check the path")
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and p.name.endswith(("_test.yaml", "_test.yml")))


def run_tests(directory: str | Path) -> TestRun:
    """Run every suite under ``directory``; PolicyError if none is found or one is bad."""
    suites = find_suites(directory)
    if not suites:
        raise PolicyError(f"{directory}: no *_test.yaml files found",
                          fix="name policy test files like baseline_test.yaml")
    cases: list[CaseResult] = []
    for suite in suites:
        cases.extend(run_suite(suite))
    return TestRun(cases=cases, suites=[str(s) for s in suites])
