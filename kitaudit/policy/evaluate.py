"""Evaluating policies over one subject's input document.

Per rule: ``pass`` when the expression gives ``true``; when it gives ``false`` the rule
``fail``\\ s (deny) or ``warn``\\ s (warn) unless a valid waiver matches, then it is
``waived``. When the expression fails at run time (missing key, wrong type, bad regex) or
does not give a bool, the status is ``error`` and a deny rule denies: fail closed.
Errors are never waived (a waiver accepts a known failure, not a broken rule or input).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

from kitaudit.policy.cel import Activation, CelCompileError, CelEvalError, engine
from kitaudit.policy.inputdoc import normalize_input
from kitaudit.policy.model import Policy, PolicyReport, Rule, RuleResult, Waiver


def _reason_on_failure(rule: Rule, activation: Activation) -> str:
    if rule.message:
        try:
            text = engine().compile(rule.message).evaluate(activation)
        except (CelEvalError, CelCompileError) as err:
            return f"{rule.description} (message expression failed: {err})"
        if isinstance(text, str) and text.strip():
            return text
    return rule.description


def _evaluate_rule(policy: Policy, rule: Rule, activation: Activation, *,
                   waivers: Sequence[Waiver], repository: str, digest: str,
                   now: _dt.datetime) -> RuleResult:
    common: dict[str, Any] = {"policy": policy.name, "rule": rule.id,
                              "severity": rule.severity, "description": rule.description,
                              "remediation": rule.remediation, "controls": rule.controls}
    try:
        value = engine().compile(rule.expression).evaluate(activation)
    except CelCompileError as err:  # only for rules built in code, not loaded from files
        return RuleResult(status="error", reason=f"expression does not compile: {err}",
                          **common)
    except CelEvalError as err:
        closed = " (fails closed)" if rule.severity == "deny" else ""
        return RuleResult(status="error", reason=f"evaluation error: {err}{closed}", **common)
    if not isinstance(value, bool):
        closed = " (fails closed)" if rule.severity == "deny" else ""
        return RuleResult(status="error", reason=f"expression gave {type(value).__name__} "
                          f"{value!r:.60}, expected bool{closed}", **common)
    if value:
        return RuleResult(status="pass", reason="", **common)
    reason = _reason_on_failure(rule, activation)
    matching = [w for w in waivers
                if w.matches(policy=policy.name, rule=rule.id, repository=repository,
                             digest=digest)]
    valid = [w for w in matching if not w.expired(now)]
    expired = tuple(w for w in matching if w.expired(now))
    if valid:
        w = valid[0]
        return RuleResult(status="waived", reason=f"{reason} — waived until "
                          f"{w.expires.isoformat()} by {w.owner}: {w.reason}", waiver=w,
                          expired_waivers=expired, **common)
    if expired:
        reason += "; waiver " + ", ".join(
            f"by {w.owner} expired {w.expires.isoformat()}" for w in expired)
    status = "fail" if rule.severity == "deny" else "warn"
    return RuleResult(status=status, reason=reason, expired_waivers=expired, **common)


def evaluate(policies: Policy | Sequence[Policy], input_doc: Mapping[str, Any], *,
             waivers: Sequence[Waiver] = (), now: _dt.datetime | None = None) -> PolicyReport:
    """Evaluate every rule of ``policies`` over ``input_doc`` (see docs/policy.md).

    ``now`` (default: the document's ``now``, else the current time) is both the CEL
    ``now`` and the time against which waiver expiry is checked. The document is
    normalised and bound once per distinct set of params (normally once per subject).
    """
    return evaluate_normalized(policies, normalize_input(input_doc, now=now),
                               waivers=waivers)


def evaluate_normalized(policies: Policy | Sequence[Policy], base: Mapping[str, Any], *,
                        waivers: Sequence[Waiver] = ()) -> PolicyReport:
    """:func:`evaluate` over a document already returned by
    :func:`~kitaudit.policy.inputdoc.normalize_input` (for callers that keep the
    normalised document, e.g. ``kitaudit verify``'s ``inputDocument``). Its ``now`` is
    the evaluation time."""
    if isinstance(policies, Policy):
        policies = [policies]
    when: _dt.datetime = base["now"]
    ref = base["reference"]
    repository = "/".join(p for p in (ref["registry"], ref["repository"]) if p)
    digest = base["digest"]
    activations: dict[str, Activation] = {}
    results: list[RuleResult] = []
    for policy in policies:
        key = repr(sorted(policy.params.items()))
        activation = activations.get(key)
        if activation is None:
            doc = dict(base)
            doc["params"] = policy.params
            activation = engine().bind(doc)
            activations[key] = activation
        for rule in policy.rules:
            results.append(_evaluate_rule(policy, rule, activation, waivers=waivers,
                                          repository=repository, digest=digest, now=when))
    subject = {"reference": ref["text"] or (repository + (":" + ref["tag"] if ref["tag"]
                                                           else "")),
               "repository": repository, "digest": digest}
    meta = tuple({"name": p.name, "fingerprint": p.fingerprint(), "source": p.source or ""}
                 for p in policies)
    return PolicyReport(subject=subject, policies=meta, results=tuple(results),
                        evaluated_at=when)
