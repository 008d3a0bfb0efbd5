"""Policies, rules, waivers and evaluation results (plain dataclasses)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

FRAMEWORKS = ("eu-ai-act", "nist-ai-rmf", "iso-42001")
SEVERITIES = ("deny", "warn")
STATUSES = ("pass", "fail", "warn", "waived", "error")

Severity = Literal["deny", "warn"]
Status = Literal["pass", "fail", "warn", "waived", "error"]
Decision = Literal["pass", "warn", "deny"]

#: Control numbering comes from secondary sources (see docs/policy.md).
CONTROL_NUMBERING_NOTE = "control numbering from secondary sources"


@dataclass(frozen=True)
class Control:
    """A reference to a control of a compliance framework."""

    framework: str
    ref: str

    def to_dict(self) -> dict[str, str]:
        return {"framework": self.framework, "ref": self.ref}


@dataclass(frozen=True)
class Rule:
    """One check: ``expression`` (CEL, bool) must hold for the subject."""

    id: str
    description: str
    severity: Severity
    expression: str
    remediation: str = ""
    controls: tuple[Control, ...] = ()
    #: Optional CEL expression (string) giving the reason when the rule does not hold.
    message: str | None = None
    #: 1-based line of the rule in its policy file (0 if unknown).
    line: int = 0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "description": self.description,
                               "severity": self.severity, "expression": self.expression}
        if self.message is not None:
            out["message"] = self.message
        out["controls"] = [c.to_dict() for c in self.controls]
        out["remediation"] = self.remediation
        return out


@dataclass(frozen=True)
class Policy:
    """A named set of rules with parameters (``params`` in expressions)."""

    name: str
    rules: tuple[Rule, ...]
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    def with_params(self, overrides: dict[str, Any]) -> Policy:
        """A copy with some params replaced (keys must already exist)."""
        return replace(self, params={**self.params, **overrides})

    def fingerprint(self) -> str:
        """``sha256:<hex>`` of the rules and params: changes whenever a decision could."""
        cached = self.__dict__.get("_fingerprint")
        if cached is not None:
            return cached
        canon = json.dumps({"name": self.name, "params": self.params,
                            "rules": [r.to_dict() for r in self.rules]},
                           sort_keys=True, separators=(",", ":"), default=str)
        value = "sha256:" + hashlib.sha256(canon.encode()).hexdigest()
        object.__setattr__(self, "_fingerprint", value)  # frozen: cache once
        return value

    def rule(self, rule_id: str) -> Rule | None:
        for r in self.rules:
            if r.id == rule_id:
                return r
        return None


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``**`` matches anything, ``*`` anything but ``/``, ``?`` one non-``/`` character."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class Waiver:
    """An accepted failure of one rule for matching subjects, until ``expires``.

    ``repository`` is a glob over ``registry/repository`` (``*`` stays within one path
    segment, ``**`` crosses segments); ``digest`` a glob over ``sha256:<hex>``. Both given
    means both must match. ``expires`` is the last day (UTC) on which the waiver applies.
    """

    rule: str
    reason: str
    owner: str
    expires: _dt.date
    repository: str | None = None
    digest: str | None = None
    policy: str | None = None
    source: str | None = None

    def matches(self, *, policy: str, rule: str, repository: str, digest: str) -> bool:
        if rule != self.rule or (self.policy is not None and self.policy != policy):
            return False
        if self.repository is not None and not _glob_regex(self.repository).match(repository):
            return False
        return not (self.digest is not None and not _glob_regex(self.digest).match(digest))

    def expired(self, now: _dt.datetime) -> bool:
        """True from 00:00 UTC of the day after ``expires``."""
        end = _dt.datetime(self.expires.year, self.expires.month, self.expires.day,
                           tzinfo=_dt.UTC) + _dt.timedelta(days=1)
        if now.tzinfo is None:
            now = now.replace(tzinfo=_dt.UTC)
        return now >= end

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule}
        if self.policy is not None:
            out["policy"] = self.policy
        if self.repository is not None:
            out["repository"] = self.repository
        if self.digest is not None:
            out["digest"] = self.digest
        out.update({"reason": self.reason, "owner": self.owner,
                    "expires": self.expires.isoformat()})
        return out


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule for one subject.

    ``status``: ``pass``; ``fail`` (deny rule does not hold); ``warn`` (warn rule does not
    hold); ``waived`` (a failure covered by a valid waiver); ``error`` (the expression
    failed at run time or did not return a bool: a deny rule then denies — fail closed).
    """

    policy: str
    rule: str
    severity: Severity
    status: Status
    reason: str
    description: str
    remediation: str
    controls: tuple[Control, ...] = ()
    waiver: Waiver | None = None
    expired_waivers: tuple[Waiver, ...] = ()

    @property
    def denies(self) -> bool:
        return self.status == "fail" or (self.status == "error" and self.severity == "deny")

    @property
    def warns(self) -> bool:
        return self.status == "warn" or (self.status == "error" and self.severity == "warn")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "policy": self.policy, "rule": self.rule, "severity": self.severity,
            "status": self.status, "reason": self.reason, "description": self.description,
            "remediation": self.remediation,
            "controls": [c.to_dict() for c in self.controls],
        }
        out["waiver"] = self.waiver.to_dict() if self.waiver else None
        out["expired_waivers"] = [w.to_dict() for w in self.expired_waivers]
        return out


@dataclass(frozen=True)
class PolicyReport:
    """Every rule's result for one subject, and the overall decision."""

    subject: dict[str, str]
    policies: tuple[dict[str, str], ...]
    results: tuple[RuleResult, ...]
    evaluated_at: _dt.datetime

    @property
    def decision(self) -> Decision:
        if any(r.denies for r in self.results):
            return "deny"
        if any(r.warns for r in self.results):
            return "warn"
        return "pass"

    @property
    def denied(self) -> bool:
        return self.decision == "deny"

    def by_status(self, status: Status) -> list[RuleResult]:
        return [r for r in self.results if r.status == status]

    def result(self, rule: str, policy: str | None = None) -> RuleResult:
        """The result of ``rule`` (``policy/rule`` or a rule id unique in the report)."""
        if policy is None and "/" in rule:
            policy, rule = rule.split("/", 1)
        found = [r for r in self.results
                 if r.rule == rule and (policy is None or r.policy == policy)]
        if len(found) != 1:
            raise KeyError(f"{policy + '/' if policy else ''}{rule}: "
                           f"{'no such rule' if not found else 'ambiguous, name the policy'}")
        return found[0]

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for r in self.results if r.status == s) for s in STATUSES}

    def to_dict(self) -> dict[str, Any]:
        """The documented, stable JSON form (see docs/policy.md)."""
        when = self.evaluated_at.astimezone(_dt.UTC).isoformat().replace("+00:00", "Z")
        return {
            "decision": self.decision,
            "subject": dict(self.subject),
            "policies": [dict(p) for p in self.policies],
            "evaluated_at": when,
            "counts": self.counts(),
            "results": [r.to_dict() for r in self.results],
            "controls_note": CONTROL_NUMBERING_NOTE,
        }
