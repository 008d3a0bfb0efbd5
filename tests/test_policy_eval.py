"""Policy evaluation over input documents: statuses, fail-closed errors, waivers, verified
facts only, the compile cache and the report JSON."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pytest

from kitaudit.errors import PolicyError
from kitaudit.policy import (
    INPUT_SCHEMA_VERSION,
    empty_input,
    evaluate,
    load_policies,
    loads_policy,
    loads_waivers,
    normalize_input,
)
from kitaudit.policy.cel import CelCompileError, engine

REPO = Path(__file__).resolve().parent.parent
COMPLETE = json.loads((REPO / "policies/tests/inputs/complete.json").read_text())
NOW = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)

POLICY = """\
name: t
params:
  allowed_licenses: [Apache-2.0, CC-BY-4.0]
rules:
  - id: signed
    description: signed
    severity: deny
    expression: signatures.exists(s, s.verified)
    remediation: kitaudit sign REF
  - id: licences
    description: licences allowed
    severity: warn
    expression: sbom.licenses.all(l, l in params.allowed_licenses)
    message: "'not allowed: ' + sbom.licenses.filter(l, !(l in params.allowed_licenses)).join(', ')"
  - id: typo
    description: reads a key that does not exist
    severity: deny
    expression: sbom.model.licence == 'MIT'
  - id: typo-warn
    description: reads a key that does not exist, warn only
    severity: warn
    expression: sbom.model.licence == 'MIT'
  - id: not-bool
    description: gives a list
    severity: deny
    expression: sbom.licenses
"""


def doc(**patch: object) -> dict:
    d = copy.deepcopy(COMPLETE)
    d.update(patch)
    return d


def test_statuses_and_fail_closed() -> None:
    report = evaluate(loads_policy(POLICY), COMPLETE, now=NOW)
    by = {r.rule: r for r in report.results}
    assert by["signed"].status == "pass"
    assert by["licences"].status == "pass"
    assert by["typo"].status == "error"
    assert by["typo"].denies
    assert "Key not found" in by["typo"].reason and "fails closed" in by["typo"].reason
    assert by["typo-warn"].status == "error" and by["typo-warn"].warns
    assert not by["typo-warn"].denies
    assert by["not-bool"].status == "error" and "expected bool" in by["not-bool"].reason
    assert report.decision == "deny"


def test_fail_and_warn_with_messages() -> None:
    policy = loads_policy(POLICY)
    policy = policy.__class__(name=policy.name, rules=policy.rules[:2], params=policy.params)
    d = doc(signatures=[])
    d["sbom"] = {**d["sbom"], "licenses": ["Apache-2.0", "GPL-3.0-only"]}
    report = evaluate(policy, d, now=NOW)
    assert report.result("signed").status == "fail"
    assert report.result("signed").reason == "signed"  # no message: the description
    assert report.result("licences").status == "warn"
    assert report.result("licences").reason == "not allowed: GPL-3.0-only"
    assert report.decision == "deny"
    report = evaluate(policy, doc(sbom={**d["sbom"]}), now=NOW)
    assert report.decision == "warn"
    assert report.counts() == {"pass": 1, "fail": 0, "warn": 1, "waived": 0, "error": 0}


def test_message_expression_failure_falls_back_to_description() -> None:
    policy = loads_policy("""\
name: m
rules:
  - id: r
    description: the description
    severity: deny
    expression: "false"
    message: "'x' + sbom.nope"
""")
    result = evaluate(policy, COMPLETE, now=NOW).result("r")
    assert result.status == "fail"
    assert result.reason.startswith("the description (message expression failed")


WAIVERS = """\
waivers:
  - rule: signed
    repository: "registry.example.com/acme/*"
    reason: signing lands next sprint
    owner: alice@example.com
    expires: 2026-12-31
  - rule: typo
    repository: "**"
    reason: trying to waive an error
    owner: bob@example.com
    expires: 2026-12-31
"""


def test_waived_and_expired() -> None:
    policy = loads_policy(POLICY)
    waivers = loads_waivers(WAIVERS)
    d = doc(signatures=[])
    report = evaluate(policy, d, waivers=waivers, now=NOW)
    signed = report.result("signed")
    assert signed.status == "waived"
    assert signed.waiver is waivers[0]
    assert "alice@example.com" in signed.reason and "2026-12-31" in signed.reason
    assert not signed.denies
    # an error is never waived (fail closed)
    assert report.result("typo").status == "error"

    later = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    report = evaluate(policy, d, waivers=waivers, now=later)
    signed = report.result("signed")
    assert signed.status == "fail"
    assert signed.expired_waivers == (waivers[0],)
    assert "expired 2026-12-31" in signed.reason

    # last day still valid
    last = dt.datetime(2026, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
    assert evaluate(policy, d, waivers=waivers, now=last).result("signed").status == "waived"


def test_waiver_scoped_to_policy_and_digest() -> None:
    policy = loads_policy(POLICY)
    d = doc(signatures=[])
    other_policy = loads_waivers("waivers: [{rule: signed, policy: other, repository: '**', "
                                 "reason: x, owner: y, expires: 2030-01-01}]")
    assert evaluate(policy, d, waivers=other_policy, now=NOW).result("signed").status == "fail"
    by_digest = loads_waivers("waivers: [{rule: signed, digest: 'sha256:3f1c*', "
                              "reason: x, owner: y, expires: 2030-01-01}]")
    assert evaluate(policy, d, waivers=by_digest, now=NOW).result("signed").status == "waived"
    wrong_digest = loads_waivers("waivers: [{rule: signed, digest: 'sha256:00*', "
                                 "repository: '**', reason: x, owner: y, "
                                 "expires: 2030-01-01}]")
    assert evaluate(policy, d, waivers=wrong_digest, now=NOW).result("signed").status == "fail"


def test_unverified_facts_never_reach_a_policy() -> None:
    policy = loads_policy("""\
name: v
rules:
  - id: has-licences
    description: d
    severity: deny
    expression: size(sbom.licenses) > 0
  - id: any-signature
    description: d
    severity: deny
    expression: size(signatures) > 0
  - id: any-attestation
    description: d
    severity: deny
    expression: size(attestations) > 0
""")
    d = doc()
    d["sbom"] = {**d["sbom"], "verified": False}
    d["signatures"] = [{**s, "verified": False} for s in d["signatures"]]
    d["attestations"] = [{**a, "verified": "yes"} for a in d["attestations"]]
    with pytest.raises(PolicyError, match=r"attestations\[\]\.verified: expected bool"):
        evaluate(policy, d, now=NOW)
    d["attestations"] = [{**a, "verified": False} for a in d["attestations"]]
    report = evaluate(policy, d, now=NOW)
    assert [r.status for r in report.results] == ["fail", "fail", "fail"]
    normal = normalize_input(d, now=NOW)
    assert normal["sbom"]["present"] is True and normal["sbom"]["model"]["name"] == ""


def test_normalize_fills_defaults_and_checks_types() -> None:
    n = normalize_input({"digest": "sha256:00"}, now="2026-01-01T00:00:00Z")
    assert n["schema_version"] == INPUT_SCHEMA_VERSION
    assert n["sbom"]["model"]["card"]["metrics"] == []
    assert n["lineage"] == {"base_models": [], "depth": 0}
    assert n["now"] == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    n = normalize_input({"signatures": [{"verified": True, "key_id": None}],
                         "sbom": {"verified": True, "completeness": {"score": 1}}})
    assert n["signatures"][0]["identity"] == "" and n["signatures"][0]["key_id"] == ""
    assert n["sbom"]["completeness"]["score"] == 1.0
    assert isinstance(n["sbom"]["completeness"]["score"], float)
    assert n["now"].tzinfo is not None
    for bad, message in [({"signatures": {}}, "signatures: expected list"),
                         ({"sbom": {"present": "yes"}}, "sbom.present: expected bool"),
                         ({"manifest": {"layers": [{"size": "1"}]}}, "size: expected int"),
                         ({"schema_version": 2}, "schema_version 2 is not supported"),
                         ({"now": "yesterday"}, "not an RFC 3339"),
                         ({"kitfile": {1: 2}}, "map key 1 is not a string"),
                         ({"digest": object()}, "digest: expected string"),
                         ({"kitfile": {"x": {1, 2}}}, "unsupported value")]:
        with pytest.raises(PolicyError, match=message):
            normalize_input(bad)
    with pytest.raises(PolicyError, match="expected a JSON object"):
        normalize_input([])  # type: ignore[arg-type]
    assert empty_input()["sbom"]["present"] is False
    # unknown keys are kept and never hide a missing documented key (found by hypothesis)
    n = normalize_input({"reference": {"a": 1, "b": 2, "c": 3, "d": 4}})
    assert n["reference"]["registry"] == "" and n["reference"]["a"] == 1


def test_now_is_a_cel_timestamp() -> None:
    policy = loads_policy("""\
name: n
rules:
  - id: fresh
    description: signed within 90 days
    severity: warn
    expression: >
      signatures.exists(s, now - timestamp(s.created) < duration('2160h'))
""")
    assert evaluate(policy, COMPLETE, now=NOW).result("fresh").status == "pass"
    later = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)
    assert evaluate(policy, COMPLETE, now=later).result("fresh").status == "warn"
    # the document's own `now` is used when none is given
    assert evaluate(policy, doc(now="2027-06-01T00:00:00Z")).result("fresh").status == "warn"


def test_params_differ_per_policy() -> None:
    a = loads_policy("name: a\nparams: {want: x}\nrules: [{id: r, description: d, "
                     "severity: deny, expression: \"params.want == 'x'\"}]")
    b = loads_policy("name: b\nparams: {want: y}\nrules: [{id: r, description: d, "
                     "severity: deny, expression: \"params.want == 'y'\"}]")
    report = evaluate([a, b], COMPLETE, now=NOW)
    assert [r.status for r in report.results] == ["pass", "pass"]
    with pytest.raises(KeyError, match="ambiguous"):
        report.result("r")
    assert report.result("b/r").policy == "b"
    with pytest.raises(KeyError, match="no such rule"):
        report.result("zzz")


def test_compile_once_per_process() -> None:
    eng = engine()
    p1 = eng.compile("size(signatures) > 41")
    size = eng.cache_size()
    assert eng.compile("size(signatures) > 41") is p1
    assert eng.cache_size() == size
    with pytest.raises(CelCompileError) as first:
        eng.compile("size(signatures) >")
    with pytest.raises(CelCompileError) as second:
        eng.compile("size(signatures) >")
    assert first.value is second.value
    assert first.value.issues[0].line == 1 and first.value.issues[0].column == 19


def test_report_json_is_stable() -> None:
    policies = load_policies([REPO / "policies/baseline.yaml"])
    report = evaluate(policies, COMPLETE, now=NOW)
    data = json.loads(json.dumps(report.to_dict()))
    assert list(data) == ["decision", "subject", "policies", "evaluated_at", "counts",
                          "results", "controls_note"]
    assert data["decision"] == "pass"
    assert data["subject"] == {"reference": "registry.example.com/acme/sentiment:v1",
                               "repository": "registry.example.com/acme/sentiment",
                               "digest": COMPLETE["digest"]}
    assert data["evaluated_at"] == "2026-11-27T12:00:00Z"
    assert data["policies"][0]["name"] == "baseline"
    assert data["policies"][0]["fingerprint"].startswith("sha256:")
    first = data["results"][0]
    assert list(first) == ["policy", "rule", "severity", "status", "reason", "description",
                           "remediation", "controls", "waiver", "expired_waivers"]
    assert first["controls"][0] == {"framework": "eu-ai-act", "ref": "Annex IV 2(h); Art. 12, 15"}
    assert "secondary sources" in data["controls_note"]


def test_shipped_policies_deny_an_empty_document() -> None:
    """Nothing known (no signature, no BOM) must never pass any shipped policy."""
    policies = load_policies([REPO / "policies" / f"{n}.yaml"
                              for n in ("baseline", "strict", "eu-ai-act")])
    report = evaluate(policies, {"digest": "sha256:00"}, now=NOW)
    assert report.decision == "deny"
    for name in ("baseline", "strict", "eu-ai-act"):
        assert any(r.denies for r in report.results if r.policy == name), name
    assert not report.by_status("error")


# --- property test: any JSON document gives a report or a PolicyError ------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
              st.text(max_size=8),
              st.text(st.characters(codec=None, categories=["Cs", "Ll"]), max_size=3)),
    lambda c: st.one_of(st.lists(c, max_size=3),
                        st.dictionaries(st.sampled_from(
                            ["sbom", "present", "verified", "signatures", "licenses",
                             "model", "card", "metrics", "datasets", "lineage",
                             "base_models", "kitfile", "digest", "now", "x"]), c,
                            max_size=4)),
    max_leaves=15)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["sbom", "signatures", "attestations", "lineage",
                                        "kitfile", "manifest", "reference", "digest",
                                        "params", "registry", "schema_version", "extra"]),
                       _json, max_size=5))
def test_any_document_gives_report_or_policy_error(d: dict) -> None:
    policies = load_policies([REPO / "policies/baseline.yaml"])
    try:
        report = evaluate(policies, d, now=NOW)
    except PolicyError:
        return
    assert report.decision in ("pass", "warn", "deny")
    # a document with no verified signature never passes the baseline
    if not any(isinstance(s, dict) and s.get("verified") is True
               for s in (d.get("signatures") or []) if isinstance(d.get("signatures"), list)):
        assert report.denied
