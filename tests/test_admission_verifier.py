"""Mapping ``kitaudit.verify`` results onto webhook verdicts, with real policy reports
(``policies/baseline.yaml`` evaluated over ``policies/tests/inputs/complete.json``)."""

from __future__ import annotations

import calendar
import datetime as dt
import json
from pathlib import Path

from kitaudit.admission.cache import CacheKey, ResultCache
from kitaudit.admission.verifier import verdict_from_result
from kitaudit.policy import evaluate, load_policies, loads_waivers
from kitaudit.verify import VerifyResult

ROOT = Path(__file__).resolve().parents[1]
DOC = json.loads((ROOT / "policies" / "tests" / "inputs" / "complete.json").read_text())
DIGEST = DOC["digest"]
REF = DOC["reference"]["text"]
NOW = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)


def _result(doc: dict, *, decision: str, problems=(), warnings=(), waivers=()) -> VerifyResult:
    report = evaluate(load_policies([str(ROOT / "policies" / "baseline.yaml")]), doc,
                      waivers=list(waivers), now=NOW)
    res = VerifyResult(reference=REF, digest=DIGEST, policy=report,
                       problems=list(problems), warnings=list(warnings))
    res.set_decision(decision)
    return res


def test_clean_pass_is_fully_verified_and_cacheable():
    v = verdict_from_result(REF, DIGEST, _result(DOC, decision="pass"))
    assert (v.decision, v.digest, v.fully_verified) == ("pass", DIGEST, True)
    assert v.failures == () and v.warnings == () and v.waiver_expiry is None
    assert ResultCache().put(CacheKey(REF, DIGEST, "p", "t"), v)


def test_policy_denial_names_rules_first():
    doc = {**DOC, "signatures": []}
    res = _result(doc, decision="deny", problems=[
        "no signature over sha256:… verified with the accepted signers (none found)",
        "policy denied: baseline/modelkit-signed"])
    v = verdict_from_result(REF, DIGEST, res)
    assert v.decision == "deny" and not v.fully_verified
    assert v.failures[0].startswith("baseline/modelkit-signed: no verified signature")
    assert v.failures[1].startswith("no signature over")
    assert not any(f.startswith("policy denied:") for f in v.failures)
    assert not ResultCache().put(CacheKey(REF, DIGEST, "p", "t"), v)


def test_pass_with_warnings_is_not_fully_verified():
    res = _result(DOC, decision="pass", warnings=["base model registry.example.com/base:1 "
                                                  "is not signed by an accepted signer"])
    v = verdict_from_result(REF, DIGEST, res)
    assert v.decision == "pass" and not v.fully_verified and v.warnings


def test_error_and_digest_mismatch():
    res = VerifyResult(reference=REF, problems=["registry.example.com: connection refused"])
    v = verdict_from_result(REF, DIGEST, res)
    assert v.decision == "error" and v.problems == ("registry.example.com: connection refused",)
    other = "sha256:" + "0" * 64
    res = _result(DOC, decision="pass")
    res.digest = other
    v = verdict_from_result(REF, DIGEST, res)
    assert v.decision == "error" and f"verified {other}, expected {DIGEST}" in v.problems[0]


def test_pass_contradicting_the_report_is_denied():
    """Fail closed if verify ever said pass while a rule denied."""
    res = _result({**DOC, "signatures": []}, decision="pass")
    v = verdict_from_result(REF, DIGEST, res)
    assert v.decision == "deny" and v.failures[0].startswith("baseline/modelkit-signed")


def test_waived_pass_carries_the_waiver_expiry():
    waivers = loads_waivers(
        "waivers:\n"
        "  - rule: modelkit-signed\n"
        "    repository: registry.example.com/acme/*\n"
        "    reason: signed out of band (TICKET-1)\n"
        "    owner: ml@example.com\n"
        "    expires: 2026-12-31\n")
    res = _result({**DOC, "signatures": []}, decision="pass", waivers=waivers)
    assert res.policy.result("modelkit-signed").status == "waived"
    v = verdict_from_result(REF, DIGEST, res)
    assert v.decision == "pass" and v.fully_verified
    assert v.waiver_expiry == calendar.timegm((2027, 1, 1, 0, 0, 0, 0, 0, 0))
    # the cache keeps it no longer than the waiver
    now = [1000.0]
    cache = ResultCache(ttl=300, clock=lambda: now[0])
    key = CacheKey(REF, DIGEST, "p", "t")
    assert cache.put(key, v, expires_at=now[0] + 10)
    now[0] += 11
    assert cache.get(key) is None
