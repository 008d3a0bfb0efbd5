"""`kitaudit policy test|lint|eval`: the unit-test runner (over the shipped policy tests),
lint with CEL positions, and the CLI in a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kitaudit.errors import PolicyError
from kitaudit.policy.lint import default_files, lint_file, lint_files
from kitaudit.policy.testing import merge_patch, run_suite, run_tests

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"


def kitaudit(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_COLOR": "1"}
    return subprocess.run([str(Path(sys.executable).parent / "kitaudit"), *args],
                          capture_output=True, text=True, input=stdin, cwd=REPO, env=env,
                          timeout=60)


# --- policy unit tests -----------------------------------------------------------------

def test_shipped_policy_tests_pass() -> None:
    run = run_tests(POLICIES / "tests")
    assert run.passed, [(c.name, c.problems) for c in run.failed]
    assert len(run.suites) == 3
    assert len(run.cases) >= 30


def test_merge_patch() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"b": None, "e": 3},
                                                           "d": [2]}) == \
        {"a": {"c": 2, "e": 3}, "d": [2]}


def _suite(tmp_path: Path, cases: str) -> Path:
    (tmp_path / "in.json").write_text((POLICIES / "tests/inputs/complete.json").read_text())
    path = tmp_path / "x_test.yaml"
    path.write_text(f"policies: [{POLICIES / 'baseline.yaml'}]\nnow: 2026-11-27\n"
                    f"inputs: {{c: in.json}}\ncases:\n{cases}")
    return path


def test_runner_reports_wrong_expectations(tmp_path: Path) -> None:
    path = _suite(tmp_path, """\
  - name: wrong on purpose
    input: c
    patch: {signatures: []}
    decision: pass
    expect: {modelkit-signed: pass, mlbom-signed: pass}
""")
    (case,) = run_suite(path)
    assert not case.passed
    assert case.problems[0].startswith("modelkit-signed: expected pass, got fail (no verified")
    assert case.problems[1] == "decision: expected pass, got deny"
    run = run_tests(tmp_path)
    assert not run.passed and run.to_dict()["failed"] == 1


@pytest.mark.parametrize(("cases", "message"), [
    ("  - name: a\n    input: c\n    expect: {nope: pass}\n", "rule nope: no such rule"),
    ("  - name: a\n    input: c\n    expect: {modelkit-signed: ok}\n",
     "expected status must be one of"),
    ("  - name: a\n    input: c\n", "give expected statuses"),
    ("  - name: a\n    input: missing.json\n    decision: pass\n", "no such file"),
    ("  - name: a\n    input: c\n    params: {zzz: 1}\n    decision: pass\n",
     "param 'zzz' is not a param"),
    ("  - name: a\n    input: c\n    colour: red\n    decision: pass\n", "unknown field"),
])
def test_runner_rejects_bad_suites(tmp_path: Path, cases: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        run_suite(_suite(tmp_path, cases))


def test_runner_needs_test_files(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"no \*_test\.yaml files"):
        run_tests(tmp_path)
    with pytest.raises(PolicyError, match="no such directory"):
        run_tests(tmp_path / "nope")


# --- lint --------------------------------------------------------------------------------

BAD = """\
name: bad
params:
  allowed: [a]
  unused: 1
rules:
  - id: syntax
    description: bad syntax
    severity: deny
    expression: sbom.present &&& sbom.verified
    remediation: kitaudit sign REF
  - id: params-typo
    description: unknown param and key
    severity: warn
    expression: sbom.model.licence in params.alowed && sbom.licenses.all(l, l in params.allowed)
    remediation: kitaudit sign REF
  - id: no-fix
    description: undeclared variable
    severity: deny
    expression: sboom.present
"""


def test_lint_reports_positions_params_and_fields(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    problems = lint_file(path)
    text = [f"{p.severity}: {p}" for p in problems]
    src = str(path)
    assert (f"error: {src}:9: rule 'syntax': field 'expression': CEL error at 1:16: "
            "Syntax error: token recognition error at: '& '") in text
    assert (f"error: {src}:19: rule 'no-fix': field 'expression': CEL error at 1:6: "
            "undeclared reference to 'sboom.present'") in text
    assert (f"error: {src}:14: rule 'params-typo': field 'expression': params.alowed is not "
            "declared in the policy's params") in text
    assert (f"warning: {src}:14: rule 'params-typo': field 'expression': sbom.model.licence "
            "is not in the input document (docs/policy.md); it will fail at run time") in text
    assert (f"warning: {src}:16: rule 'no-fix': field 'remediation': missing: say which "
            "kitaudit command fixes it") in text
    assert f"warning: {src}:2: field 'params': param 'unused' is not used by any rule" in text
    syntax = next(p for p in problems if p.rule == "syntax")
    assert syntax.column == 16 and syntax.to_dict()["column"] == 16
    assert len([p for p in problems if p.severity == "error"]) == 3


def test_lint_yaml_error_and_waivers(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nrules: [\n")
    (problem,) = lint_file(broken)
    assert "not valid YAML" in problem.message and problem.line >= 2
    waivers = tmp_path / "w.yaml"
    waivers.write_text("waivers: [{rule: r, reason: x, owner: y, expires: 2030-01-01}]\n")
    (problem,) = lint_file(waivers)
    assert "give 'repository' or 'digest'" in problem.message


def test_shipped_policies_lint_clean() -> None:
    files = default_files(REPO)
    assert {p.name for p in files} >= {"baseline.yaml", "strict.yaml", "eu-ai-act.yaml",
                                       "waivers.yaml"}
    assert lint_files(files) == []


# --- CLI (real subprocess) ----------------------------------------------------------------

def test_cli_policy_test() -> None:
    r = kitaudit("policy", "test", "policies/tests")
    assert r.returncode == 0, r.stderr
    assert "cases passed in 3 suite(s)" in r.stdout
    r = kitaudit("policy", "test", "policies/tests", "--output", "json")
    assert json.loads(r.stdout)["passed"] is True


def test_cli_policy_test_failure_exit_code(tmp_path: Path) -> None:
    path = _suite(tmp_path, "  - name: wrong\n    input: c\n    decision: deny\n")
    r = kitaudit("policy", "test", str(path))
    assert r.returncode == 1
    assert "FAIL" in r.stdout and "decision: expected deny, got pass" in r.stdout
    assert "error: 1 of 1 policy test cases failed" in r.stderr


def test_cli_policy_lint(tmp_path: Path) -> None:
    r = kitaudit("policy", "lint")
    assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    r = kitaudit("policy", "lint", str(bad), "--output", "json")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert data["errors"] == 3
    assert {"file": str(bad), "line": 9, "rule": "syntax", "field": "expression",
            "column": 16, "severity": "error",
            "message": "CEL error at 1:16: Syntax error: token recognition error at: '& '"} \
        in data["problems"]


def test_cli_policy_eval() -> None:
    doc = "policies/tests/inputs/complete.json"
    r = kitaudit("policy", "eval", "--input", doc, "--policy", "policies/baseline.yaml",
                 "--now", "2026-11-27", "--output", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["decision"] == "pass"

    # strict: the base model is not allow-listed until the param says so
    args = ["policy", "eval", "--input", doc, "--policy", "policies/strict.yaml",
            "--param", "trusted_identities=https://github.com/acme/sentiment/.github/"
                       "workflows/release.yml@refs/heads/main", "--now", "2026-11-27"]
    r = kitaudit(*args)
    assert r.returncode == 1
    assert "FAIL\tstrict\tbase-model-allow-listed" in r.stdout
    assert "fix strict/base-model-allow-listed:" in r.stdout
    assert "error: policy denied: strict/base-model-allow-listed" in r.stderr
    r = kitaudit(*args, "--param", "allowed_base_models=registry.example.com/base/bert-base")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "decision: pass" in r.stdout

    # stdin, waivers, bad param
    d = json.loads((REPO / doc).read_text())
    d["signatures"] = []
    r = kitaudit("policy", "eval", "--input", "-", "--policy", "policies/baseline.yaml",
                 "--now", "2026-11-27", stdin=json.dumps(d))
    assert r.returncode == 1 and "FAIL\tbaseline\tmodelkit-signed" in r.stdout
    r = kitaudit("policy", "eval", "--input", doc, "--policy", "policies/baseline.yaml",
                 "--param", "nope=1")
    assert r.returncode == 2
    assert "error: --param nope: no loaded policy has this param" in r.stderr
    r = kitaudit("policy", "eval", "--input", doc, "--policy", "policies/strict.yaml",
                 "--waivers", "policies/waivers.yaml", "--now", "2026-11-27")
    assert r.returncode == 1
