"""The outcome of one verification and its stable JSON form (docs/verify.md).

``decision``: ``pass`` (exit 0), ``deny`` (exit 1: a signature, ML-BOM or policy check
failed), ``error`` (exit 2: could not decide — usage, network, registry, bad policy,
anything unexpected). Callers must treat ``error`` as ``deny``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
EXIT_CODES = {"pass": 0, "deny": 1, "error": 2}


@dataclass
class VerifyResult:
    reference: str
    digest: str = ""
    decision: str = "error"
    exit_code: int = 2
    signatures: list[dict[str, Any]] = field(default_factory=list)
    attestations: list[dict[str, Any]] = field(default_factory=list)
    sbom: dict[str, Any] = field(default_factory=dict)
    policy: Any = None                       # kitaudit.policy.PolicyReport or None
    input_document: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)   # why it was denied / not decided
    warnings: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)    # what was checked, one line each
    fix: str = ""
    location: str = ""                       # local | remote | fetched
    registry: str = ""
    fingerprint: str = ""                    # of the trust settings and policies used
    cached: bool = False
    seconds: float = 0.0

    def set_decision(self, decision: str) -> None:
        self.decision = decision
        self.exit_code = EXIT_CODES[decision]

    @property
    def passed(self) -> bool:
        return self.decision == "pass"

    def to_dict(self) -> dict[str, Any]:
        """The documented, stable JSON form (``schemaVersion`` 1; keys only ever added)."""
        from kitaudit.policy.inputdoc import to_json_document

        return {
            "schemaVersion": SCHEMA_VERSION,
            "reference": self.reference,
            "digest": self.digest,
            "decision": self.decision,
            "exitCode": self.exit_code,
            "location": self.location,
            "registry": self.registry,
            "checked": list(self.checked),
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "fix": self.fix,
            "signatures": list(self.signatures),
            "attestations": list(self.attestations),
            "sbom": dict(self.sbom),
            "policy": self.policy.to_dict() if self.policy is not None else None,
            "inputDocument": to_json_document(self.input_document)
            if self.input_document else None,
            "fingerprint": self.fingerprint,
            "cached": self.cached,
            "seconds": round(self.seconds, 6),
        }

    def summary_lines(self) -> list[str]:
        """A readable summary: decision, what was checked, who signed, rule results, fixes."""
        head = {"pass": "PASS", "deny": "DENIED", "error": "ERROR (could not decide)"}
        lines = [f"{head[self.decision]}: {self.reference}"
                 + (f" ({self.digest})" if self.digest else "")]
        for c in self.checked:
            lines.append(f"  checked: {c}")
        for s in self.signatures + self.attestations:
            if not s.get("verified") and s.get("error"):
                what = "signature" if s.get("role") == "signature" else \
                    f"attestation {s.get('predicateType') or ''}".rstrip()
                lines.append(f"  not accepted: {what} {s.get('referrer', '')[:19]}…: "
                             f"{s['error']}")
        if self.policy is not None:
            passed = [f"{r.policy}/{r.rule}" for r in self.policy.results if r.status == "pass"]
            if passed:
                lines.append("  rules passed: " + ", ".join(passed))
            for r in self.policy.results:
                if r.status == "pass":
                    continue
                lines.append(f"  rule {r.policy}/{r.rule}: {r.status.upper()} — {r.reason}")
                if r.status in ("fail", "warn", "error") and r.remediation:
                    lines.append(f"    fix: {' '.join(r.remediation.split())}")
            counts = self.policy.counts()
            lines.append("  rules: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
        shown = tuple(f"{r.policy}/{r.rule}:" for r in self.policy.results) \
            if self.policy is not None else ()
        for w in self.warnings:
            if not w.startswith(shown) or not shown:
                lines.append(f"  warning: {w}")
        for p in self.problems:
            lines.append(f"  problem: {p}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return lines
