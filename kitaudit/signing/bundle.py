"""Sigstore bundle JSON (protojson: camelCase keys, bytes base64, int64 as strings).

Writing: only the key-based form cosign writes with ``--key`` and no transparency log::

    {"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json",
     "verificationMaterial":{"publicKey":{"hint":"<b64 sha256 of PKIX DER>"}},
     "dsseEnvelope":{"payload":..,"payloadType":"application/vnd.in-toto+json",
                     "signatures":[{"sig":..}]}}

(keyless bundles are written by sigstore-python). Reading: any bundle version
(0.1/0.2/0.3), either content kind (``dsseEnvelope`` or ``messageSignature``), either
verification material (``certificate``, ``x509CertificateChain``, ``publicKey``).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from kitaudit.errors import VerificationError
from kitaudit.mediatypes import SIGSTORE_BUNDLE_V03
from kitaudit.signing.dsse import Envelope, json_object

BUNDLE_MEDIA_TYPES = (
    SIGSTORE_BUNDLE_V03,
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
)


def key_bundle(envelope: Envelope, hint: str) -> dict[str, Any]:
    """A v0.3 bundle for a key-based DSSE signature, exactly as cosign writes it."""
    return {
        "mediaType": SIGSTORE_BUNDLE_V03,
        "verificationMaterial": {"publicKey": {"hint": hint}},
        "dsseEnvelope": envelope.to_dict(),
    }


def dumps(bundle: dict[str, Any]) -> bytes:
    """Compact JSON bytes of a bundle (the blob stored as the referrer layer)."""
    return json.dumps(bundle, separators=(",", ":")).encode()


@dataclass(frozen=True)
class MessageSignature:
    digest_algorithm: str | None
    digest: bytes | None
    signature: bytes


@dataclass(frozen=True)
class ParsedBundle:
    """The parts of a bundle that matter for deciding which verifier applies."""

    media_type: str
    raw: dict[str, Any]
    material: str  # "certificate" | "x509CertificateChain" | "publicKey"
    public_key_hint: str | None
    certificate_der: bytes | None
    envelope: Envelope | None
    message_signature: MessageSignature | None
    tlog_entries: list[dict[str, Any]] = field(default_factory=list)
    rfc3161_timestamps: list[bytes] = field(default_factory=list)

    @property
    def content_kind(self) -> str:
        return "dsse-envelope" if self.envelope is not None else "message-signature"


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationError(f"malformed Sigstore bundle: {what} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise VerificationError(f"malformed Sigstore bundle: {what} is not valid base64")


def parse_bundle(data: bytes | str | dict[str, Any]) -> ParsedBundle:
    """Parse a bundle from JSON bytes/str or an already-decoded dict. Raises
    :class:`VerificationError` with the reason when it is not a well-formed bundle."""
    doc = data if isinstance(data, dict) else json_object(data, "Sigstore bundle")
    media_type = doc.get("mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        raise VerificationError(f"unsupported Sigstore bundle media type {media_type!r}")
    vm = doc.get("verificationMaterial")
    if not isinstance(vm, dict):
        raise VerificationError("malformed Sigstore bundle: no verificationMaterial")

    hint = cert = None
    if "certificate" in vm:
        material = "certificate"
        cert = _b64((vm["certificate"] or {}).get("rawBytes"), "certificate.rawBytes")
    elif "x509CertificateChain" in vm:
        material = "x509CertificateChain"
        chain = (vm["x509CertificateChain"] or {}).get("certificates") or []
        if not chain:
            raise VerificationError("malformed Sigstore bundle: empty certificate chain")
        cert = _b64(chain[0].get("rawBytes") if isinstance(chain[0], dict) else None,
                    "x509CertificateChain leaf")
    elif "publicKey" in vm:
        material = "publicKey"
        pk = vm["publicKey"]
        hint = pk.get("hint") if isinstance(pk, dict) else None
        if hint is not None and not isinstance(hint, str):
            raise VerificationError("malformed Sigstore bundle: publicKey.hint")
    else:
        raise VerificationError("malformed Sigstore bundle: no certificate or public key")

    envelope = msg = None
    if "dsseEnvelope" in doc:
        envelope = Envelope.from_dict(doc["dsseEnvelope"])
    elif "messageSignature" in doc:
        ms = doc["messageSignature"]
        if not isinstance(ms, dict):
            raise VerificationError("malformed Sigstore bundle: messageSignature")
        md = ms.get("messageDigest")
        algo = digest = None
        if isinstance(md, dict):
            algo = md.get("algorithm")
            digest = _b64(md.get("digest"), "messageDigest.digest")
        msg = MessageSignature(algo, digest, _b64(ms.get("signature"), "signature"))
    else:
        raise VerificationError("malformed Sigstore bundle: no dsseEnvelope or "
                                "messageSignature")

    tlog = vm.get("tlogEntries") or []
    if not isinstance(tlog, list):
        raise VerificationError("malformed Sigstore bundle: tlogEntries")
    tsv = vm.get("timestampVerificationData") or {}
    stamps = [_b64(t.get("signedTimestamp") if isinstance(t, dict) else None,
                   "rfc3161 signedTimestamp")
              for t in (tsv.get("rfc3161Timestamps") or [])] if isinstance(tsv, dict) else []
    return ParsedBundle(media_type, doc, material, hint, cert, envelope, msg, tlog, stamps)
