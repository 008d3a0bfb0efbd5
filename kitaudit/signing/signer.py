"""Signing a ModelKit: the Signer protocol, the key-based signer and ``sign_modelkit``.

``sign_modelkit`` makes, for one manifest digest, what ``cosign sign`` plus
``cosign attest --type cyclonedx`` attach (cosign v3 bundle format):

1. a bundle over the statement ``predicateType https://sigstore.dev/cosign/sign/v1``,
   ``predicate {}``;
2. if an ML-BOM is given, a bundle over the statement
   ``predicateType https://cyclonedx.org/bom`` with the BOM as predicate;

each wrapped in its referrer manifest. Signing happens completely before anything is
returned, so a failure attaches nothing.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric import ec

from kitaudit.errors import SigningError
from kitaudit.mediatypes import (
    IN_TOTO_PAYLOAD,
    PREDICATE_COSIGN_SIGN,
    PREDICATE_CYCLONEDX,
)
from kitaudit.signing import bundle as _bundle
from kitaudit.signing import cosign as _cosign
from kitaudit.signing import dsse as _dsse
from kitaudit.signing.keys import LoadedKey


@dataclass(frozen=True)
class LegacySignature:
    """What a ``.sig`` layer carries for one signature over a simplesigning payload."""

    signature: bytes
    certificate_pem: bytes | None = None
    chain_pem: bytes | None = None
    rekor_bundle: dict[str, Any] | None = None
    rfc3161_timestamp: bytes | None = None


@runtime_checkable
class Signer(Protocol):
    """Anything that can turn an in-toto statement into a Sigstore bundle."""

    @property
    def description(self) -> str:
        """Who signs, for messages (``key cosign.key``, ``keyless alice@example.com``)."""
        ...

    def sign_dsse(self, statement: bytes) -> dict[str, Any]:
        """Sign ``statement`` (in-toto JSON bytes) as a DSSE envelope; return the
        Sigstore bundle as a JSON-ready dict."""
        ...

    def sign_payload(self, payload: bytes) -> LegacySignature:
        """Sign raw bytes (the legacy simplesigning payload)."""
        ...


class KeySigner:
    """Key-based signing with a cosign or PEM EC key: no Fulcio, no Rekor (air-gapped),
    bundles with ``verificationMaterial.publicKey.hint`` exactly as ``cosign sign
    --key --tlog-upload=false`` writes them."""

    def __init__(self, key: LoadedKey) -> None:
        self.key = key

    @classmethod
    def from_file(cls, path: str, *, password: str | bytes | None = None,
                  prompt: Any = None) -> KeySigner:
        from kitaudit.signing.keys import load_private_key_file

        return cls(load_private_key_file(path, password=password, prompt=prompt))

    @property
    def description(self) -> str:
        return f"key {self.key.source}"

    def fingerprint(self) -> str:
        return f"key:{self.key.hint}"

    def _sign(self, data: bytes) -> bytes:
        return self.key.private_key.sign(data, ec.ECDSA(self.key.hash_algorithm))

    def sign_dsse(self, statement: bytes) -> dict[str, Any]:
        sig = self._sign(_dsse.pae(IN_TOTO_PAYLOAD, statement))
        env = _dsse.Envelope(IN_TOTO_PAYLOAD, statement, (sig,))
        return _bundle.key_bundle(env, self.key.hint)

    def sign_payload(self, payload: bytes) -> LegacySignature:
        return LegacySignature(signature=self._sign(payload))


def _bom_object(sbom: bytes) -> None:
    try:
        doc = json.loads(sbom)
    except (ValueError, UnicodeDecodeError):
        raise SigningError("the ML-BOM is not valid JSON; refusing to sign it",
                           fix="regenerate it with kitaudit sbom")
    if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
        raise SigningError("the ML-BOM is not a CycloneDX JSON document; refusing to sign it")


def sign_modelkit(manifest_digest: str, subject_descriptor: dict[str, Any], *,
                  sbom: bytes | None, signer: Signer, created: datetime | None = None,
                  signature_format: str = "bundle",
                  docker_reference: str | None = None) -> list[_cosign.SignedReferrer]:
    """Sign a ModelKit manifest (and its ML-BOM) and return what to attach.

    ``subject_descriptor`` is the manifest's descriptor (mediaType, size, digest);
    its digest must equal ``manifest_digest``. With ``signature_format="legacy"`` the
    cosign ``.sig`` (and, with an ML-BOM, ``.att``) tag manifests are returned as well,
    after the bundle referrers; ``docker_reference`` (``registry/repository``) then
    names the image in the simplesigning payload.
    """
    if signature_format not in ("bundle", "legacy"):
        raise SigningError(f"unknown signature format {signature_format!r}",
                           fix="use --signature-format bundle or legacy")
    if signature_format == "legacy" and not docker_reference:
        raise SigningError("the legacy signature format needs the image reference",
                           fix="sign a tagged reference (registry/repository:tag)")
    if subject_descriptor.get("digest") != manifest_digest:
        raise SigningError("subject descriptor digest does not match the manifest digest")
    try:
        sign_stmt = _dsse.statement(manifest_digest, PREDICATE_COSIGN_SIGN, {})
        bom_stmt = None
        if sbom is not None:
            _bom_object(sbom)
            bom_stmt = _dsse.statement_with_raw_predicate(manifest_digest, PREDICATE_CYCLONEDX,
                                                          sbom)
    except ValueError as err:
        raise SigningError(f"cannot build the statement: {err}")

    # Sign everything first; build manifests only once every signature exists.
    sign_bundle = signer.sign_dsse(sign_stmt)
    bom_bundle = signer.sign_dsse(bom_stmt) if bom_stmt is not None else None
    legacy_sig = None
    payload = b""
    if signature_format == "legacy":
        assert docker_reference
        payload = _cosign.simplesigning_payload(docker_reference, manifest_digest)
        legacy_sig = signer.sign_payload(payload)

    out: list[_cosign.SignedReferrer] = []
    sign_bytes = _bundle.dumps(sign_bundle)
    out.append(_cosign.bundle_referrer(sign_bytes, subject_descriptor, PREDICATE_COSIGN_SIGN,
                                       created=created))
    bom_bytes = None
    if bom_bundle is not None:
        bom_bytes = _bundle.dumps(bom_bundle)
        out.append(_cosign.bundle_referrer(bom_bytes, subject_descriptor, PREDICATE_CYCLONEDX,
                                           created=created))
    if legacy_sig is not None:
        layer = _cosign.legacy_signature_layer(
            payload, legacy_sig.signature, certificate_pem=legacy_sig.certificate_pem,
            chain_pem=legacy_sig.chain_pem, rekor_bundle=legacy_sig.rekor_bundle,
            rfc3161_timestamp=legacy_sig.rfc3161_timestamp)
        manifest, blobs = _cosign.legacy_manifest([(layer, payload)])
        out.append(_cosign.SignedReferrer(
            manifest_bytes=manifest, bundle_bytes=sign_bytes,
            predicate_type=PREDICATE_COSIGN_SIGN, artifact_type="", blobs=blobs,
            tag=_cosign.legacy_tag(manifest_digest, "sig"), format="legacy"))
        if bom_bundle is not None and bom_bytes is not None:
            env_json = json.dumps(bom_bundle["dsseEnvelope"], separators=(",", ":")).encode()
            att_layer = _cosign.legacy_attestation_layer(env_json, PREDICATE_CYCLONEDX)
            ann = att_layer["annotations"]
            material = bom_bundle["verificationMaterial"]
            if "certificate" in material:
                ann[_cosign.ANN_LEGACY_CERTIFICATE] = _pem_cert(
                    material["certificate"]["rawBytes"])
                ann[_cosign.ANN_LEGACY_CHAIN] = ""
            rb = rekor_bundle_from_entry((material.get("tlogEntries") or [None])[0])
            if rb is not None:
                ann[_cosign.ANN_LEGACY_BUNDLE] = json.dumps(rb, separators=(",", ":"))
            manifest, blobs = _cosign.legacy_manifest([(att_layer, env_json)])
            out.append(_cosign.SignedReferrer(
                manifest_bytes=manifest, bundle_bytes=bom_bytes,
                predicate_type=PREDICATE_CYCLONEDX, artifact_type="", blobs=blobs,
                tag=_cosign.legacy_tag(manifest_digest, "att"), format="legacy"))
    return out


def _pem_cert(raw_b64: str) -> str:
    body = raw_b64
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def rekor_bundle_from_entry(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """cosign's legacy ``dev.sigstore.cosign/bundle`` annotation from a bundle's
    transparency-log entry (None when there is no entry or no inclusion promise)."""
    if not entry or not entry.get("inclusionPromise"):
        return None
    return {
        "SignedEntryTimestamp": entry["inclusionPromise"]["signedEntryTimestamp"],
        "Payload": {
            "body": entry["canonicalizedBody"],
            "integratedTime": int(entry["integratedTime"]),
            "logIndex": int(entry["logIndex"]),
            "logID": base64.b64decode(entry["logId"]["keyId"]).hex(),
        },
    }


__all__ = ["KeySigner", "LegacySignature", "Signer",
           "rekor_bundle_from_entry", "sign_modelkit"]
