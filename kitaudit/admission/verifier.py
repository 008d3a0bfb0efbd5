"""The one place where the webhook calls ``kitaudit.verify``.

The server sees a :class:`Verifier`: ``resolve(reference) -> digest`` and
``verify(reference, digest) -> Verdict``, plus the hashes of the policies and trust
material that key the cache. :class:`KitauditVerifier` implements it over
``kitaudit.verify`` (options compiled once per process); tests inject their own only
for timing behaviours.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
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


# --------------------------------------------------------------------------- hashing
_POLICY_FIELDS = ("policy", "policies", "param", "params", "waiver", "waivers")


def _hash_value(value: Any, h: Any) -> None:
    """Feed ``value`` into ``h``; a string naming an existing file adds its content."""
    if isinstance(value, os.PathLike) or (isinstance(value, str) and value
                                           and os.path.isfile(value)):
        path = os.fspath(value)
        h.update(f"file:{path}:".encode())
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 16), b""):
                    h.update(chunk)
        except OSError:
            h.update(b"<unreadable>")
        return
    if isinstance(value, dict):
        for k in sorted(value, key=str):
            h.update(f"k:{k}:".encode())
            _hash_value(value[k], h)
        return
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        for v in items:
            _hash_value(v, h)
            h.update(b",")
        return
    h.update(json.dumps(value, default=repr).encode())


def options_hashes(options: Any) -> tuple[str, str]:
    """(policy hash, trust hash) of verify options: policy files, params and waivers on
    one side, keys, identities, issuers, trusted root and everything else on the other;
    file contents are hashed, not just their names."""
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        items = {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}
    elif isinstance(options, dict):
        items = dict(options)
    else:
        items = dict(vars(options))
    policy, trust = hashlib.sha256(), hashlib.sha256()
    for name in sorted(items):
        h = policy if any(name.startswith(p) for p in _POLICY_FIELDS) else trust
        h.update(f"{name}=".encode())
        _hash_value(items[name], h)
        h.update(b";")
    return "sha256:" + policy.hexdigest(), "sha256:" + trust.hexdigest()


# --------------------------------------------------------------------------- adapter
@dataclass
class KitauditVerifier:
    """:class:`Verifier` over ``kitaudit.verify`` against registries (never the webhook's
    own local store). ``options``: a ``kitaudit.verify.VerifyOptions``; ``net``: the
    registry network options (``plain_http``, ``tls_verify``, ``tls_cert``...)."""

    options: Any
    net: dict[str, Any] = field(default_factory=dict)
    compiled: Any = None
    policy_hash: str = ""
    trust_hash: str = ""

    def __post_init__(self) -> None:
        from kitaudit.verify import compile_options

        if self.compiled is None:
            self.compiled = compile_options(self.options)
        if not self.policy_hash or not self.trust_hash:
            p, t = options_hashes(self.options)
            self.policy_hash = self.policy_hash or p
            self.trust_hash = self.trust_hash or t

    def resolve(self, reference: str) -> str:
        from kitaudit.reference import parse_for_command
        from kitaudit.registry.transfer import resolve_remote

        parsed = parse_for_command(reference)
        if parsed.digest:
            return parsed.digest
        return str(resolve_remote(parsed, **self.net)["digest"])

    def verify(self, reference: str, digest: str) -> Verdict:
        from kitaudit.errors import KitauditError
        from kitaudit.reference import parse_for_command
        from kitaudit.verify import verify

        pinned = str(parse_for_command(reference).with_digest(digest))
        try:
            result = verify(pinned, self.options, remote=True, net=self.net,
                            compiled=self.compiled)
        except KitauditError as err:
            return Verdict(reference, "error", digest, problems=(_one_line(err),))
        return verdict_from_result(reference, digest, result)


def _one_line(err: Any) -> str:
    text = str(getattr(err, "message", None) or err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _problem_text(p: Any) -> str:
    if isinstance(p, str):
        return p
    if isinstance(p, dict):
        for k in ("message", "problem", "text", "reason"):
            if isinstance(p.get(k), str):
                return p[k]
        return json.dumps(p, sort_keys=True, default=str)
    for k in ("message", "problem", "text", "reason"):
        v = getattr(p, k, None)
        if isinstance(v, str):
            return v
    return str(p)


def verdict_from_result(reference: str, digest: str, result: Any) -> Verdict:
    """Map a ``kitaudit.verify.VerifyResult`` onto a :class:`Verdict`."""
    import calendar

    decision = getattr(result, "decision", "error")
    if decision not in ("pass", "deny", "error"):
        decision = "error"
    got = getattr(result, "digest", None)
    problems = tuple(_problem_text(p) for p in (getattr(result, "problems", None) or ()))
    failures: list[str] = []
    warnings: list[str] = []
    waiver_expiry: float | None = None
    policy_clean = False
    report = getattr(result, "policy", None)
    if report is not None:
        for r in report.results:
            line = f"{r.policy}/{r.rule}"
            if r.reason:
                line += f": {r.reason}"
            if r.denies:
                failures.append(line)
            elif r.warns:
                warnings.append(line)
            if r.status == "waived" and r.waiver is not None:
                # the waiver's last day ends at 24:00 UTC
                end = calendar.timegm(r.waiver.expires.timetuple()) + 86400
                waiver_expiry = end if waiver_expiry is None else min(waiver_expiry, end)
        policy_clean = report.decision == "pass"
    if got is not None and got != digest:
        return Verdict(reference, "error", got,
                       problems=(f"verified {got}, expected {digest}", *problems))
    if decision == "deny" and not failures and not problems:
        problems = ("denied",)
    if decision == "pass" and failures:
        decision = "deny"  # fail closed if the two ever disagree
    fully = (decision == "pass" and report is not None and policy_clean
             and not warnings and not problems)
    return Verdict(reference, decision, got or digest, tuple(failures), tuple(warnings),
                   problems, fully, waiver_expiry)
