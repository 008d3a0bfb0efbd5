"""Policy and waiver files: strict schema, error messages, param overrides, property tests."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kitaudit.errors import PolicyError
from kitaudit.policy import (
    PolicyFileError,
    apply_params,
    load_policies,
    load_policy,
    loads_policy,
    loads_waivers,
    parse_param_args,
)

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"

GOOD = """\
name: demo
description: a demo
params:
  allowed_licenses: [Apache-2.0, MIT]
  min_score: 0.5
  strict_mode: false
  owner: team-a
rules:
  - id: signed
    description: signed
    severity: deny
    expression: signatures.exists(s, s.verified)
    controls:
      - {framework: eu-ai-act, ref: "Annex IV 2(h)"}
      - {framework: nist-ai-rmf, ref: "MEASURE 2.7"}
      - {framework: iso-42001, ref: "A.6.2.8"}
    remediation: kitaudit sign REF
  - id: licences
    description: licences allowed
    severity: warn
    expression: sbom.licenses.all(l, l in params.allowed_licenses)
    message: "'bad: ' + sbom.licenses.join(',')"
"""


def test_good_policy_loads() -> None:
    p = loads_policy(GOOD, "demo.yaml")
    assert p.name == "demo"
    assert [r.id for r in p.rules] == ["signed", "licences"]
    assert p.rules[0].controls[0].framework == "eu-ai-act"
    assert p.rules[0].line == 9
    assert p.rules[1].severity == "warn" and p.rules[1].remediation == ""
    assert p.params["allowed_licenses"] == ["Apache-2.0", "MIT"]
    assert p.fingerprint().startswith("sha256:")


def _problems(text: str) -> list[str]:
    with pytest.raises(PolicyFileError) as info:
        loads_policy(text, "p.yaml")
    return [str(p) for p in info.value.problems]


def test_every_problem_names_file_line_rule_and_field() -> None:
    text = """\
name: x
rules:
  - id: a
    description: d
    severity: block
    expression: "true"
    colour: red
  - id: b
    severity: deny
    expression: "true"
    controls: [{framework: gdpr, ref: "Art. 5"}]
"""
    problems = _problems(text)
    assert "p.yaml:5: rule 'a': field 'severity': must be deny or warn (got 'block')" in problems
    assert any(p.startswith("p.yaml:7: rule 'a': field 'colour': unknown field")
               for p in problems)
    assert "p.yaml:8: rule 'b': field 'description': missing" in problems
    assert any(p.startswith("p.yaml:11: rule 'b': field 'controls[0]': framework must be")
               for p in problems)
    assert len(problems) == 4


@pytest.mark.parametrize(("text", "expected"), [
    ("[]", "a policy file must be a mapping"),
    ("name: x\n", "field 'rules': missing or empty"),
    ("name: X Y\nrules: [{id: a, description: d, severity: deny, expression: 'true'}]",
     "field 'name'"),
    ("name: x\nversion: 2\nrules: [{id: a, description: d, severity: deny, expression: 'true'}]",
     "only version 1"),
    ("name: x\nrules: [{id: a, description: d, severity: deny, expression: 'true'},"
     " {id: a, description: d, severity: deny, expression: 'true'}]", "duplicate"),
    ("name: x\nrules: [{id: Bad Id, description: d, severity: deny, expression: 'true'}]",
     "field 'id': must match"),
    ("name: x\nparams: {Bad-Name: 1}\nrules: [{id: a, description: d, severity: deny, "
     "expression: 'true'}]", "must match [a-z_]"),
    ("name: x\nrules: [{id: a, description: d, severity: deny, expression: '1 + 1'}]",
     "must give a bool, gives int"),
    ("name: x\nrules: [{id: a, description: d, severity: deny, expression: 'true', "
     "message: '1'}]", "must give a string"),
    ("name: x\nrules: [{id: a, description: d, severity: deny, expression: 'true'}]\n"
     "name: y\n", "duplicate key"),
    ("name: x\nrules: [{id: a, description: d, severity: deny, expression: ''}]",
     "field 'expression': must be a non-empty string"),
])
def test_schema_errors(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as info:
        loads_policy(text, "p.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("p.yaml")


def test_cel_compile_error_has_rule_and_position() -> None:
    text = ("name: x\nrules:\n  - id: broken\n    description: d\n    severity: deny\n"
            "    expression: sbom.present &&& sbom.verified\n")
    problems = _problems(text)
    assert problems == [
        "p.yaml:6: rule 'broken': field 'expression': CEL error at 1:16: "
        "Syntax error: token recognition error at: '& '"]


def test_undeclared_variable_is_a_compile_error() -> None:
    text = ("name: x\nrules:\n  - id: typo\n    description: d\n    severity: deny\n"
            "    expression: sboms.present\n")
    (problem,) = _problems(text)
    assert "CEL error at 1:6: undeclared reference to 'sboms.present'" in problem


def test_invalid_yaml_reports_line() -> None:
    with pytest.raises(PolicyError) as info:
        loads_policy("name: x\nrules:\n  - id: a\n   bad: [\n", "p.yaml")
    assert str(info.value).startswith("p.yaml:")
    assert "not valid YAML" in str(info.value)


def test_missing_file_is_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such file"):
        load_policy(tmp_path / "nope.yaml")


def test_policy_names_must_be_unique(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    with pytest.raises(PolicyError, match="policy name 'demo' also used"):
        load_policies([tmp_path / "a.yaml", tmp_path / "b.yaml"])


# --- params -----------------------------------------------------------------------------

def test_param_overrides_by_type(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(GOOD)
    raw = parse_param_args(["allowed_licenses=MIT, BSD-3-Clause", "min_score=0.9",
                            "strict_mode=true", "owner=team-b"])
    p = load_policy(path, params=raw)
    assert p.params == {"allowed_licenses": ["MIT", "BSD-3-Clause"], "min_score": 0.9,
                        "strict_mode": True, "owner": "team-b"}
    # JSON list form
    p = load_policy(path, params={"allowed_licenses": '["GPL-3.0-only", "MIT"]'})
    assert p.params["allowed_licenses"] == ["GPL-3.0-only", "MIT"]
    # Original untouched, fingerprint changes with params
    assert loads_policy(GOOD).fingerprint() != p.fingerprint()


@pytest.mark.parametrize(("arg", "message"), [
    ("nokey", "expected key=value"),
    ("=x", "expected key=value"),
])
def test_bad_param_syntax(arg: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        parse_param_args([arg])


def test_param_type_and_name_errors() -> None:
    p = loads_policy(GOOD)
    with pytest.raises(PolicyError, match="no loaded policy has this param"):
        apply_params([p], {"allowed_licences": "MIT"})
    with pytest.raises(PolicyError, match="min_score: expected float"):
        apply_params([p], {"min_score": '"high"'})
    with pytest.raises(PolicyError, match="strict_mode: 'yes' is not valid JSON"):
        apply_params([p], {"strict_mode": "yes"})
    with pytest.raises(PolicyError, match="allowed_licenses: '\\[1' is not valid JSON"):
        apply_params([p], {"allowed_licenses": "[1"})


def test_param_applies_to_every_policy_declaring_it() -> None:
    other = GOOD.replace("name: demo", "name: other").replace("  owner: team-a\n", "")
    a, b = loads_policy(GOOD), loads_policy(other)
    out = apply_params([a, b], {"owner": "x", "min_score": "1"})
    assert out[0].params["owner"] == "x" and "owner" not in out[1].params
    assert out[0].params["min_score"] == 1 and out[1].params["min_score"] == 1


# --- waivers ----------------------------------------------------------------------------

def test_waivers_load_and_validate() -> None:
    (w,) = loads_waivers("""\
waivers:
  - rule: licences
    policy: demo
    repository: "reg.example.com/team/*"
    reason: accepted
    owner: alice
    expires: 2026-12-31
""")
    assert w.expires == dt.date(2026, 12, 31)
    assert w.matches(policy="demo", rule="licences", repository="reg.example.com/team/m",
                     digest="sha256:00")
    assert not w.matches(policy="demo", rule="licences",
                         repository="reg.example.com/team/sub/m", digest="sha256:00")
    assert not w.matches(policy="other", rule="licences", repository="reg.example.com/team/m",
                         digest="sha256:00")
    assert not w.expired(dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.UTC))
    assert w.expired(dt.datetime(2027, 1, 1, tzinfo=dt.UTC))


def test_waiver_globs() -> None:
    (w,) = loads_waivers("waivers: [{rule: r, repository: 'reg/**', digest: 'sha256:ab*', "
                         "reason: x, owner: y, expires: 2030-01-01}]")
    assert w.matches(policy="p", rule="r", repository="reg/a/b/c", digest="sha256:abcd")
    assert not w.matches(policy="p", rule="r", repository="reg/a/b/c", digest="sha256:cd")
    assert not w.matches(policy="p", rule="r", repository="other/a", digest="sha256:abcd")


@pytest.mark.parametrize(("text", "expected"), [
    ("waivers: [{rule: r, reason: x, owner: y, expires: 2030-01-01}]",
     "give 'repository' or 'digest'"),
    ("waivers: [{rule: r, repository: a, owner: y, expires: 2030-01-01}]",
     "field 'reason': missing"),
    ("waivers: [{rule: r, repository: a, reason: x, owner: y, expires: 2030-13-01}]",
     "field 'expires': missing or not a YYYY-MM-DD date"),
    ("waivers: [{rule: r, repository: a, reason: x, owner: y, "
     "expires: '2030-01-01T00:00:00Z'}]", "not a YYYY-MM-DD date"),
    ("waivers: [{rule: r, repository: a, reason: x, owner: y, expires: 2030-01-01, why: 1}]",
     "field 'why': unknown field"),
    ("rules: []", "a waivers file is a mapping with one key"),
])
def test_waiver_errors(text: str, expected: str) -> None:
    with pytest.raises(PolicyFileError) as info:
        loads_waivers(text, "w.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("w.yaml")


def test_shipped_policies_load() -> None:
    policies = load_policies([POLICIES / "baseline.yaml", POLICIES / "strict.yaml",
                              POLICIES / "eu-ai-act.yaml"])
    for p in policies:
        for rule in p.rules:
            assert rule.remediation and "kitaudit " in rule.remediation, rule.id
            assert rule.controls, rule.id
    baseline = {r.id for r in policies[0].rules}
    assert baseline <= {r.id for r in policies[1].rules}  # strict includes baseline


# --- property tests: only PolicyError escapes ------------------------------------------

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                     st.text(max_size=20))
_values = st.recursive(_scalars, lambda c: st.one_of(
    st.lists(c, max_size=4), st.dictionaries(st.text(max_size=12), c, max_size=4)),
    max_leaves=20)
_rule = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.text(max_size=10), st.sampled_from(["a", "b"]), _scalars),
    "description": _values, "severity": st.sampled_from(["deny", "warn", "x", None]),
    "expression": st.one_of(st.sampled_from(["true", "sbom.present", "1 +", "params.x",
                                             "size(signatures) > 0", "'a'"]),
                            st.text(max_size=30), _scalars),
    "message": _values, "controls": _values, "remediation": _values, "junk": _values})
_policy = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.sampled_from(["p", "demo"]), _values),
    "description": _values, "params": _values,
    "rules": st.one_of(st.lists(st.one_of(_rule, _values), max_size=4), _values),
    "version": _values})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_policy)
def test_loader_structures_only_raise_policy_error(data: dict) -> None:
    text = json.dumps(data)  # JSON is YAML
    try:
        loads_policy(text, "h.yaml")
    except PolicyError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_loader_text_only_raises_policy_error(text: str) -> None:
    for fn in (loads_policy, loads_waivers):
        try:
            fn(text, "h.yaml")
        except PolicyError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["name: p\n", "rules:\n", "  - id: a\n",
                                 "    expression: true\n", "    severity: deny\n",
                                 "    description: d\n", "waivers:\n", "  - rule: a\n",
                                 "    expires: 2026-02-30\n", "params: {a: &x [1]}\n",
                                 "    ref: *x\n", "  ? [a]\n  : b\n", "!!python/object x\n",
                                 "- 1\n", "  bad indent\n", "expires: 2026-01-01\n"]),
                max_size=12))
def test_loader_yaml_fragments_only_raise_policy_error(lines: list[str]) -> None:
    text = "".join(lines)
    for fn in (loads_policy, loads_waivers):
        try:
            fn(text, "h.yaml")
        except PolicyError:
            pass


def test_yaml_python_tags_are_refused() -> None:
    with pytest.raises(PolicyError, match="not valid YAML"):
        loads_policy("!!python/object/apply:os.system ['true']\n")
    assert yaml.safe_load("a: 1") == {"a": 1}


def test_yaml_alias_expansion_is_bounded() -> None:
    """A "billion laughs" params block is refused quickly instead of expanding."""
    lines = ["name: x", "params:", "  l0: &l0 [a, a, a, a, a, a, a, a, a, a]"]
    for i in range(1, 9):
        refs = ", ".join([f"*l{i - 1}"] * 10)
        lines.append(f"  l{i}: &l{i} [{refs}]")
    lines += ["rules: [{id: a, description: d, severity: deny, expression: 'true'}]", ""]
    with pytest.raises(PolicyError, match="at most 100000 values"):
        loads_policy("\n".join(lines), "bomb.yaml")
