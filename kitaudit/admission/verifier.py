"""The one place where the webhook calls ``kitaudit.verify``.

The server sees a :class:`Verifier`: ``resolve(reference) -> digest`` and
``verify(reference, digest) -> Verdict``, plus the hashes of the policies and trust
material that key the cache. :class:`KitauditVerifier` implements it over
``kitaudit.verify`` (options compiled once per process); tests inject their own only
for timing behaviours.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Decision = Literal["pass", "deny", "error"]


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one reference.

    ``failures``: ``policy/rule: reason`` for each rule that denied (or the signature
    problem when no policy could run); ``warnings``: warn-rule failures;
    ``problems``: why it could not be decided (decision ``error``) or other findings.
    ``fully_verified``: a clean pass — every signature check and every policy rule ran
    and passed; the only kind of result the cache stores.
    """

    reference: str
    decision: Decision
    digest: str | None = None
    failures: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    fully_verified: bool = False
    waiver_expiry: float | None = None  # epoch seconds of the earliest waiver relied on


class Verifier(Protocol):
    policy_hash: str
    trust_hash: str

    def resolve(self, reference: str) -> str:
        """The manifest digest ``reference`` names now (no network for a digest)."""
        ...

    def verify(self, reference: str, digest: str) -> Verdict:
        """Verify ``reference`` pinned to ``digest``; never raises for a verification
        outcome (a definite no is ``deny``, could-not-decide is ``error``)."""
        ...


# --------------------------------------------------------------------------- adapter
@dataclass
class KitauditVerifier:
    """:class:`Verifier` over ``kitaudit.verify``, always against the registry (never the
    webhook's own local store). ``options``: ``kitaudit.verify.VerifyOptions``, compiled
    once here (keys, trust root, policies, waivers; pooled registry clients); ``net``:
    network keyword arguments (``plain_http``, ``tls_verify``, ``tls_cert``...).

    ``policy_hash`` covers the policies (rules and params) and waivers; ``trust_hash`` is
    verify's fingerprint of all trust settings and checks (keys, identities, issuers,
    trusted root, policies, ML-BOM requirement).
    """

    options: Any
    net: dict[str, Any] = field(default_factory=dict)
    compiled: Any = None
    policy_hash: str = ""
    trust_hash: str = ""

    def __post_init__(self) -> None:
        from kitaudit.verify import compile_options

        if self.compiled is None:
            # no result cache inside verify: the webhook's cache is keyed by reference too
            self.compiled = compile_options(self.options, cache_ttl=0)
        _preload()
        h = hashlib.sha256(json.dumps({
            "policies": [p.fingerprint() for p in self.compiled.policies],
            "waivers": [w.to_dict() for w in self.compiled.waivers],
        }, sort_keys=True, default=str).encode())
        self.policy_hash = self.policy_hash or "sha256:" + h.hexdigest()
        self.trust_hash = self.trust_hash or self.compiled.fingerprint

    def resolve(self, reference: str) -> str:
        """The digest of ``reference``: itself when pinned, else a HEAD on a pooled
        client."""
        from kitaudit.errors import NotFound
        from kitaudit.reference import parse_for_command
        from kitaudit.registry.transport import NetOptions

        parsed = parse_for_command(reference)
        if parsed.digest:
            return parsed.digest
        client = self.compiled.client(parsed.registry, NetOptions.from_kwargs(**self.net))
        desc = client.head_manifest(parsed.repository, parsed.tag)
        if desc is None:
            raise NotFound(f"{reference} not found on {parsed.registry}")
        return str(desc["digest"])

    def verify(self, reference: str, digest: str) -> Verdict:
        from kitaudit.reference import parse_for_command
        from kitaudit.verify import verify

        pinned = str(parse_for_command(reference).with_digest(digest))
        result = verify(pinned, remote=True, net=self.net, compiled=self.compiled)
        return verdict_from_result(reference, digest, result)

    def close(self) -> None:
        self.compiled.close()


# What a verification imports lazily: loaded at start so that the first review does not
# spend its deadline importing (about half a second on a busy node).
_PRELOAD = ("kitaudit.verify.core", "kitaudit.verify.discover", "kitaudit.verify.signatures",
            "kitaudit.verify.sbom", "kitaudit.verify.document", "kitaudit.modelkit",
            "kitaudit.mlbom", "kitaudit.referrers", "kitaudit.signing.cosign",
            "kitaudit.signing.verify_bundle", "kitaudit.signing.verify_legacy",
            "kitaudit.policy.evaluate", "kitaudit.registry.client")


def _preload() -> None:
    import importlib

    for name in _PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # a module renamed elsewhere: only the first review is slower
            continue


def verdict_from_result(reference: str, digest: str, result: Any) -> Verdict:
    """Map a ``kitaudit.verify.VerifyResult`` onto a :class:`Verdict`.

    Failures name the policy rules that denied (``policy/rule: reason``) and the
    built-in checks that failed (signature, ML-BOM); verify's summary line
    ``policy denied: ...`` is left out since the rules are listed one by one.
    Fully verified: decision ``pass``, for the digest asked, with no warning at all
    (a warn rule, an unverified base model, a truncated referrer list) and a policy
    report (when policies are configured) whose decision is ``pass``.
    """
    import calendar

    decision = result.decision if result.decision in ("pass", "deny", "error") else "error"
    got = result.digest or None
    report = result.policy
    failures: list[str] = []
    waiver_expiry: float | None = None
    if report is not None:
        for r in report.results:
            if r.denies:
                failures.append(f"{r.policy}/{r.rule}" + (f": {r.reason}" if r.reason else ""))
            if r.status == "waived" and r.waiver is not None:
                # the waiver's last day ends at 24:00 UTC
                end = calendar.timegm(r.waiver.expires.timetuple()) + 86400
                waiver_expiry = end if waiver_expiry is None else min(waiver_expiry, end)
    problems = [str(p) for p in result.problems]
    warnings = tuple(str(w) for w in result.warnings)
    if got is not None and got != digest:
        return Verdict(reference, "error", got,
                       problems=(f"verified {got}, expected {digest}", *problems))
    if decision == "deny":
        # the rules first (what the message must name), then verify's own checks
        failures += [p for p in problems if not p.startswith("policy denied:")]
        return Verdict(reference, "deny", got or digest, tuple(failures) or ("denied",),
                       warnings)
    if decision == "error":
        return Verdict(reference, "error", got or digest,
                       problems=tuple(problems) or ("could not decide",), warnings=warnings)
    if failures:  # fail closed should the two ever disagree
        return Verdict(reference, "deny", got or digest, tuple(failures), warnings)
    policy_clean = report is None or report.decision == "pass"
    fully = policy_clean and not warnings and not problems and got == digest
    return Verdict(reference, "pass", got or digest, (), warnings, tuple(problems), fully,
                   waiver_expiry)
