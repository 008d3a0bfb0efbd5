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

        try:
            result = kv.verify_fetched(reference=reference, digest=digest, manifest=manifest,
                                       config_bytes=config_bytes, referrers=referrers,
                                       options=self.compiled, referrers_api=referrers_api,
                                       check_base=self.check_base if self.base_lookup
                                       is not None else None)
        except KitauditError as err:
            return Outcome(error=str(err))
        return outcome_from_result(result)


    def check_base(self, target: str) -> tuple[str, Any]:
        """(digest, signature findings) of a base model, looked up once."""
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
