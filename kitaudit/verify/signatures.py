"""Verify every signature and attestation found for a digest.

Each fetched referrer is classified and verified with the signing package:

* a cosign v3 bundle referrer (single layer ``application/vnd.dev.sigstore.bundle.v0.3+json``)
  → :func:`kitaudit.signing.verify_bundle` (DSSE only, statement subject = the digest);
  predicate ``https://sigstore.dev/cosign/sign/v1`` is a *signature*, anything else an
  *attestation*;
* a legacy ``.sig`` tag → every layer through :func:`verify_legacy_layer` (signatures);
  a legacy ``.att`` tag → every layer (attestations);
* a plain CycloneDX referrer (``application/vnd.cyclonedx+json``) is an unsigned ML-BOM:
  it only tells that an ML-BOM is *present*.

A referrer whose manifest names another subject, whose blob is missing or does not hash
to its digest, or whose signature does not verify with the accepted signers is recorded
with ``verified: false`` and the reason — and never feeds a policy.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kitaudit import mediatypes as mt
from kitaudit.errors import KitauditError
from kitaudit.verify.discover import FetchedReferrer

CYCLONEDX_PREDICATES = (mt.PREDICATE_CYCLONEDX, mt.PREDICATE_CYCLONEDX_OLD)


@dataclass
class Checked:
    """One signature or attestation, verified or not."""

    role: str                      # signature | attestation
    source: str                    # referrer | fallback-tag | legacy-tag
    format: str                    # bundle | legacy
    referrer: str                  # manifest digest of the referrer (or legacy tag manifest)
    verified: bool
    predicate_type: str = ""
    kind: str = ""                 # key | keyless
    identity: str = ""
    issuer: str = ""
    key_id: str = ""
    created: str = ""
    tlog_verified: bool = False
    error: str = ""
    predicate: Any = None          # the statement's predicate (attestations; not exported)

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "verified": self.verified, "kind": self.kind,
                "identity": self.identity, "issuer": self.issuer, "keyId": self.key_id,
                "predicateType": self.predicate_type, "created": self.created,
                "source": self.source, "format": self.format, "referrer": self.referrer,
                "tlogVerified": self.tlog_verified, "error": self.error}

    def signer(self) -> dict[str, str]:
        return {"kind": self.kind, "identity": self.identity, "issuer": self.issuer,
                "key_id": self.key_id}

    def describe(self) -> str:
        if self.kind == "keyless":
            return f"{self.identity} (issuer {self.issuer})"
        if self.kind == "key":
            return f"key sha256:{self.key_id[:16]}…"
        return "unknown signer"


@dataclass
class Findings:
    """Everything :func:`check_referrers` found."""

    signatures: list[Checked] = field(default_factory=list)
    attestations: list[Checked] = field(default_factory=list)
    #: plain (unsigned) CycloneDX referrers: (referrer digest, BOM bytes)
    unsigned_boms: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def verified_signatures(self) -> list[Checked]:
        return [s for s in self.signatures if s.verified]

    def bom_attestations(self) -> list[Checked]:
        return [a for a in self.attestations if a.predicate_type in CYCLONEDX_PREDICATES]


def _rfc3339(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_id_from_hint(hint: str | None) -> str:
    """The hex SHA-256 of the public key's DER (what policies list) from cosign's hint
    (base64 of the same hash)."""
    if not hint:
        return ""
    try:
        return base64.b64decode(hint, validate=True).hex()
    except (binascii.Error, ValueError):
        return ""


def _integrated_time(bundle: dict[str, Any]) -> datetime | None:
    entries = (bundle.get("verificationMaterial") or {}).get("tlogEntries") or []
    try:
        return datetime.fromtimestamp(int(entries[0]["integratedTime"]), tz=UTC)
    except (IndexError, KeyError, TypeError, ValueError):
        return None


def _fill(chk: Checked, res: Any, bundle: dict[str, Any] | None = None) -> None:
    chk.verified = True
    chk.kind = res.kind
    chk.predicate_type = res.predicate_type or ""
    chk.tlog_verified = bool(res.tlog_verified)
    if res.kind == "keyless":
        chk.identity = res.signer
        chk.issuer = res.issuer or ""
    else:
        chk.key_id = key_id_from_hint(res.key_hint)
    when = None
    if bundle is not None and res.tlog_verified:
        when = _integrated_time(bundle)
    if when is None and res.timestamps:
        when = min(res.timestamps)
    chk.created = _rfc3339(when) if when else ""
    if res.statement is not None and chk.role == "attestation":
        chk.predicate = res.statement.predicate


def _blob(ref: FetchedReferrer, layer: dict[str, Any]) -> bytes:
    digest = layer.get("digest")
    data = ref.blobs.get(digest) if isinstance(digest, str) else None
    if data is None:
        raise KitauditError(f"layer {digest} of referrer {ref.digest} was not fetched")
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise KitauditError(f"layer {digest} of referrer {ref.digest} does not match its "
                            "digest")
    return data


def _subject_ok(ref: FetchedReferrer, digest: str) -> str:
    subject = (ref.manifest.get("subject") or {}).get("digest")
    if subject != digest:
        return f"referrer manifest names subject {subject or '(none)'}, not {digest}"
    return ""


def check_referrers(referrers: list[FetchedReferrer], digest: str, signer_policy: Any,
                    trusted_root: Any) -> Findings:
    """Verify every referrer of ``digest`` (see the module doc). Never raises for a bad
    signature (it is recorded); raises only for programming errors."""
    from kitaudit.errors import VerificationError
    from kitaudit.signing.cosign import is_cosign_bundle_referrer
    from kitaudit.signing.verify_bundle import verify_bundle

    out = Findings()

    def reason(err: KitauditError) -> str:
        if "needs a trusted root" in err.message and not signer_policy.keyless_configured:
            return ("signed keyless, but no keyless signer is accepted (give "
                    "--certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp])")
        return err.message

    for ref in referrers:
        if ref.legacy:
            for layer in ref.manifest.get("layers") or []:
                if not isinstance(layer, dict):
                    continue
                att = layer.get("mediaType") == mt.DSSE_ENVELOPE
                chk = Checked(role="attestation" if att else "signature",
                              source="legacy-tag", format="legacy", referrer=ref.digest,
                              verified=False,
                              predicate_type=str((layer.get("annotations") or {})
                                                 .get("predicateType", "")) if att else "")
                try:
                    from kitaudit.signing.verify_legacy import verify_legacy_layer

                    res = verify_legacy_layer(layer, _blob(ref, layer), expected_digest=digest,
                                              policy=signer_policy, trusted_root=trusted_root)
                    _fill(chk, res)
                    if not att:
                        chk.predicate_type = ""
                except (VerificationError, KitauditError) as err:
                    chk.error = reason(err)
                except Exception as err:  # malformed input: recorded, never trusted
                    chk.error = f"cannot verify: {type(err).__name__}: {err}"
                (out.attestations if att else out.signatures).append(chk)
            continue

        manifest = ref.manifest
        artifact = manifest.get("artifactType") or ref.descriptor.get("artifactType")
        if artifact == mt.CYCLONEDX_JSON and not is_cosign_bundle_referrer(manifest):
            if _subject_ok(ref, digest):
                continue
            for layer in manifest.get("layers") or []:
                if isinstance(layer, dict) and layer.get("mediaType") == mt.CYCLONEDX_JSON:
                    try:
                        out.unsigned_boms.append((ref.digest, _blob(ref, layer)))
                    except KitauditError:
                        pass
                    break
            continue
        if not is_cosign_bundle_referrer(manifest):
            continue  # cosign's rule: only single-layer bundle referrers count
        ann = manifest.get("annotations") or {}
        declared = str(ann.get(mt.ANN_BUNDLE_PREDICATE) or "")
        chk = Checked(role="signature" if declared == mt.PREDICATE_COSIGN_SIGN else
                      "attestation", source=ref.source, format="bundle",
                      referrer=ref.digest, verified=False, predicate_type=declared)
        try:
            problem = _subject_ok(ref, digest)
            if problem:
                raise VerificationError(problem)
            data = _blob(ref, manifest["layers"][0])
            bundle = json.loads(data)
            res = verify_bundle(bundle, expected_digest=digest, policy=signer_policy,
                                trusted_root=trusted_root)
            # the signed predicate type decides, never the unsigned annotation
            chk.role = "signature" if res.predicate_type == mt.PREDICATE_COSIGN_SIGN \
                else "attestation"
            _fill(chk, res, bundle if isinstance(bundle, dict) else None)
        except (VerificationError, KitauditError) as err:
            chk.error = reason(err)
        except ValueError:
            chk.error = "bundle is not JSON"
        except Exception as err:  # malformed input: recorded, never trusted
            chk.error = f"cannot verify: {type(err).__name__}: {err}"
        (out.signatures if chk.role == "signature" else out.attestations).append(chk)
    return out
