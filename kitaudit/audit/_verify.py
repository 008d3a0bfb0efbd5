"""The one place where the crawler talks to :mod:`kitaudit.verify`.

The crawler fetches a ModelKit's manifest, config and referrers itself (it must see them
all anyway) and hands them to ``kitaudit.verify.verify_fetched``, which decides trust:
signatures, the ML-BOM attestation and the policies. This adapter turns its result into
plain rows for the database (:class:`Outcome`). Without trust options nothing is
verified: every signature found is recorded as unverified and no policy is evaluated.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from kitaudit.errors import KitauditError


@dataclass
class _Signer:
    identity: str
    issuer: str


@dataclass
class RecordedFindings:
    """A base model's signature findings as recorded in the audit database: what
    ``kitaudit.verify.document.base_models`` reads from ``check_referrers``' Findings."""

    signatures: list[Any] = field(default_factory=list)            # any signature found
    verified_signatures: list[_Signer] = field(default_factory=list)


@dataclass
class Outcome:
    """What verification said about one ModelKit, in database terms."""

    decision: str | None = None
    signatures: list[dict[str, Any]] = field(default_factory=list)   # verified or not
    sbom: dict[str, Any] | None = None        # verify's ML-BOM findings
    lineage: dict[str, Any] | None = None     # the input document's ``lineage`` section
    results: list[dict[str, Any]] = field(default_factory=list)      # RuleResult.to_dict()
    policies: list[dict[str, Any]] = field(default_factory=list)     # name, fingerprint
    evaluated_at: str | None = None
    error: str | None = None
    # base-model lookups: True when every one was current (looked up live, or recorded
    # earlier in this crawl); False when one used an earlier crawl's record or failed
    bases_current: bool = True


class Verifier:
    """Compiled trust options (keys, trusted root, policies, waivers), shared by threads.

    ``base_lookup``: how base models are found for the lineage rules, as
    :func:`kitaudit.verify.discover` takes it (``{"remote": True, "net": {...}}`` for a
    registry, ``{"store": Store, "remote": False}`` for the local store), or None (base
    models stay unverified). Each base is looked up once per crawl.
    """

    def __init__(self, options: Any = None, *, base_lookup: dict[str, Any] | None = None
                 ) -> None:
        self.options = options
        self.compiled: Any = None
        self.fingerprint = "none"
        self.base_lookup = base_lookup
        self._bases: dict[str, tuple[str, Any] | BaseException] = {}
        self._bases_lock = threading.Lock()
        # what the crawl has recorded: digest -> (findings, recorded in this crawl), and
        # "registry/repository:tag" -> digest; filled by the writer thread
        self._recorded: dict[str, tuple[RecordedFindings, bool]] = {}
        self._tags: dict[str, str] = {}
        self._local = threading.local()
        if options is None:
            return
        from kitaudit.verify.options import CompiledOptions, compile_options

        self.compiled = options if isinstance(options, CompiledOptions) else \
            compile_options(options)
        self.fingerprint = str(self.compiled.fingerprint)

    @property
    def enabled(self) -> bool:
        return self.compiled is not None

    def trust_record(self) -> dict[str, Any] | None:
        """The trust material by identity, for ``crawls.options`` (no file paths): each
        public key's id (hex SHA-256 of its DER) and cosign hint, the keyless identity and
        issuer constraints, the trusted root (where from, and the file's digest), the
        policies' names and fingerprints, the waivers file's digest and count."""
        if self.compiled is None:
            return None
        import hashlib
        from pathlib import Path

        from cryptography.hazmat.primitives import serialization

        from kitaudit.signing.keys import public_key_hint

        c = self.compiled
        o = c.options
        keys = []
        for i, key in enumerate(c.signer_policy.keys):
            der = key.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
            name = Path(o.keys[i]).name if i < len(o.keys) else None
            keys.append({"key_id": hashlib.sha256(der).hexdigest(),
                         "hint": public_key_hint(key), "name": name})
        root: dict[str, Any] | None = None
        source = str(c.trust_source)
        if source.startswith("file:"):
            digest = source.rpartition("#")[2]
            root = {"source": "file", "name": Path(o.trusted_root or "").name,
                    "digest": f"sha256:{digest}" if digest else None}
        elif source != "none":
            root = {"source": source, "name": None, "digest": None}
        waivers: dict[str, Any] | None = None
        if o.waivers:
            try:
                wdigest: str | None = "sha256:" + hashlib.sha256(
                    Path(o.waivers).read_bytes()).hexdigest()
            except OSError:
                wdigest = None
            waivers = {"name": Path(o.waivers).name, "digest": wdigest,
                       "count": len(c.waivers)}
        return {
            "format": 2,
            "keys": keys,
            "certificate_identity": o.certificate_identity,
            "certificate_identity_regexp": o.certificate_identity_regexp,
            "certificate_oidc_issuer": o.certificate_oidc_issuer,
            "certificate_oidc_issuer_regexp": o.certificate_oidc_issuer_regexp,
            "trusted_root": root, "offline": bool(o.offline), "staging": bool(o.staging),
            "policies": [{"name": p.name, "fingerprint": p.fingerprint()}
                         for p in c.policies],
            "params": dict(o.params or {}), "waivers": waivers,
            "require_sbom": bool(o.require_sbom),
        }

    def fetched_referrer(self, descriptor: dict[str, Any], manifest: dict[str, Any],
                         blobs: dict[str, bytes], *, legacy: bool, source: str) -> Any:
        from kitaudit.verify.discover import FetchedReferrer

        return FetchedReferrer(descriptor, manifest, blobs, legacy, source)

    def verify(self, *, reference: str, digest: str, manifest: dict[str, Any],
               config_bytes: bytes, referrers: list[Any],
               referrers_api: bool = True) -> Outcome:
        if self.compiled is None:
            return Outcome()
        import kitaudit.verify as kv

        self._local.current = True
        try:
            result = kv.verify_fetched(reference=reference, digest=digest, manifest=manifest,
                                       config_bytes=config_bytes, referrers=referrers,
                                       options=self.compiled, referrers_api=referrers_api,
                                       check_base=self.check_base)
        except KitauditError as err:
            return Outcome(error=str(err))
        out = outcome_from_result(result)
        out.bases_current = bool(self._local.current)
        return out

    # ------------------------------------------------------------ base models
    def seed(self, conn: Any) -> None:
        """Load what earlier crawls recorded with the same trust options: every complete
        ModelKit's signatures, and the tags."""
        if self.compiled is None:
            return
        found: dict[str, RecordedFindings] = {}
        for (digest,) in conn.execute(
                "SELECT digest FROM manifests WHERE kind = 'modelkit' AND complete = 1 AND "
                "verify_fingerprint = ?", (self.fingerprint,)):
            found[digest] = RecordedFindings()
        for digest, verified, identity, issuer in conn.execute(
                "SELECT s.subject_digest, s.verified, s.identity, s.issuer FROM signatures s "
                "JOIN manifests m ON m.digest = s.subject_digest WHERE s.attestation = 0 "
                "AND m.kind = 'modelkit' AND m.complete = 1 AND m.verify_fingerprint = ?",
                (self.fingerprint,)):
            f = found.get(digest)
            if f is not None:
                f.signatures.append(True)
                if verified:
                    f.verified_signatures.append(_Signer(identity or "", issuer or ""))
        tags = {f"{r}:{t}": d for r, t, d in conn.execute(
            "SELECT repository, tag, digest FROM tags")}
        with self._bases_lock:
            self._recorded.update({d: (f, False) for d, f in found.items()})
            self._tags.update(tags)

    def note_tag(self, reference: str, digest: str) -> None:
        """This crawl saw ``registry/repository:tag`` point at ``digest``."""
        with self._bases_lock:
            self._tags[reference] = digest

    def note_record(self, digest: str, outcome: Outcome) -> None:
        """This crawl recorded (verified) the ModelKit ``digest``."""
        f = RecordedFindings()
        for s in outcome.signatures:
            if s.get("attestation"):
                continue
            f.signatures.append(True)
            if s.get("verified"):
                f.verified_signatures.append(_Signer(s.get("identity") or "",
                                                     s.get("issuer") or ""))
        with self._bases_lock:
            self._recorded[digest] = (f, True)

    def _from_record(self, target: str) -> tuple[str, RecordedFindings, bool] | None:
        from kitaudit import reference as refmod

        try:
            ref = refmod.parse_for_command(target)
        except KitauditError:
            return None
        with self._bases_lock:
            digest = ref.digest or self._tags.get(f"{ref.name}:{ref.tag}")
            hit = self._recorded.get(digest) if digest else None
        if digest is None or hit is None:
            return None
        return digest, hit[0], hit[1]

    def check_base(self, target: str) -> tuple[str, Any]:
        """(digest, signature findings) of a base model: from what the crawl recorded
        (its verified signatures), else looked up once as ``kitaudit verify`` does."""
        recorded = self._from_record(target)
        if recorded is not None:
            digest, findings, current = recorded
            if not current:
                self._local.current = False
            return digest, findings
        if self.base_lookup is None:
            self._local.current = False
            raise KitauditError(f"base model {target} is not (yet) recorded by this crawl")
        with self._bases_lock:
            hit = self._bases.get(target)
        if hit is None:
            from kitaudit.verify.discover import discover
            from kitaudit.verify.signatures import check_referrers

            try:
                base = discover(target, compiled=self.compiled, **(self.base_lookup or {}))
                hit = (base.digest, check_referrers(base.referrers, base.digest,
                                                    self.compiled.signer_policy,
                                                    self.compiled.trusted_root))
            except Exception as err:
                hit = err
            with self._bases_lock:
                self._bases[target] = hit
        if isinstance(hit, BaseException):
            self._local.current = False
            raise hit
        return hit


def outcome_from_result(result: Any) -> Outcome:
    """Read a :class:`kitaudit.verify.VerifyResult` into an :class:`Outcome`."""
    out = Outcome(decision=result.decision)
    for entry in [*result.signatures, *result.attestations]:
        out.signatures.append({
            "attestation": entry.get("role") == "attestation",
            "verified": bool(entry.get("verified")), "kind": entry.get("kind") or None,
            "identity": entry.get("identity") or None, "issuer": entry.get("issuer") or None,
            "key_id": entry.get("keyId") or None,
            "predicate_type": entry.get("predicateType") or None,
            "created": entry.get("created") or None, "source": entry.get("source"),
            "referrer": entry.get("referrer") or None, "error": entry.get("error") or None})
    doc_sbom = (result.input_document or {}).get("sbom") or {}
    sbom = dict(result.sbom or {})
    if sbom:
        out.sbom = {"present": bool(sbom.get("present")), "verified": bool(sbom.get("verified")),
                    "digest": sbom.get("digest") or None,
                    "spec_version": sbom.get("specVersion") or None,
                    "signed_by": sbom.get("signedBy") or [],
                    "matches_manifest": bool(sbom.get("matchesManifest")),
                    "mismatches": sbom.get("mismatches") or [],
                    "licenses": doc_sbom.get("licenses") or [],
                    "completeness": (doc_sbom.get("completeness") or {}).get("score")}
    lineage = (result.input_document or {}).get("lineage")
    out.lineage = lineage if isinstance(lineage, dict) else None
    if result.policy is not None:
        report = result.policy.to_dict()
        out.results = list(report.get("results") or [])
        out.policies = list(report.get("policies") or [])
        out.evaluated_at = report.get("evaluated_at")
    if result.decision == "error":
        out.error = "; ".join(result.problems)[:1000] or "could not decide"
    return out


def dumps(value: Any) -> str | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
