"""Verify cosign's legacy signature layers (``sha256-<hex>.sig`` / ``.att`` tags).

* ``.sig`` layer (``application/vnd.dev.cosign.simplesigning.v1+json``): the blob is the
  simplesigning payload, whose ``critical.image.docker-manifest-digest`` must equal the
  expected digest; the signature (annotation ``dev.cosignproject.cosign/signature``) is
  ECDSA over the payload bytes.
* ``.att`` layer (``application/vnd.dsse.envelope.v1+json``): the blob is a DSSE envelope
  whose in-toto statement must cover the expected digest.

Key-based: the signature is checked with one of the policy's keys (``cosign verify --key
--insecure-ignore-tlog``; a Rekor bundle annotation, when present and a trusted root is
given, is checked too). Keyless: the certificate annotation must chain to a Fulcio CA of
the trusted root at the log's integrated time, carry a valid SCT, be a code-signing
certificate that matches the identity policy, and the Rekor bundle annotation's signed
entry timestamp (SET) must verify with the trusted root's Rekor key and its body must
match this signature, key and content. Legacy Rekor bundles carry no inclusion proof, so
as in cosign the SET is the log evidence.

Some checks use sigstore-python internals (Rekor/CT keyrings, ``verify_sct``); they are
pinned by the keyless tests against the loopback Sigstore.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kitaudit.errors import KitauditError, VerificationError
from kitaudit.mediatypes import COSIGN_SIMPLESIGNING, DSSE_ENVELOPE
from kitaudit.signing.cosign import (
    ANN_LEGACY_BUNDLE,
    ANN_LEGACY_CERTIFICATE,
    ANN_LEGACY_PREDICATE,
    ANN_LEGACY_SIGNATURE,
)
from kitaudit.signing.dsse import Envelope, Statement
from kitaudit.signing.keys import hash_for_curve, public_key_hint
from kitaudit.signing.verify_bundle import (
    BundleVerification,
    SignerPolicy,
    _cert_facts,
    _hex_digest,
    _verify_ecdsa,
)


def verify_legacy_layer(layer: dict[str, Any], blob: bytes, *, expected_digest: str,
                        policy: SignerPolicy, trusted_root: Any = None
                        ) -> BundleVerification:
    """Verify one legacy ``.sig`` or ``.att`` layer (its descriptor with annotations and
    its blob). Raises :class:`VerificationError` with the reason."""
    hexpart = _hex_digest(expected_digest)
    digest = f"sha256:{hexpart}"
    if "sha256:" + hashlib.sha256(blob).hexdigest() != layer.get("digest"):
        raise VerificationError("legacy signature layer does not match its digest")
    ann = layer.get("annotations") or {}
    media_type = layer.get("mediaType")
    statement: Statement | None = None
    if media_type == COSIGN_SIMPLESIGNING:
        try:
            payload = json.loads(blob)
            signed_digest = payload["critical"]["image"]["docker-manifest-digest"]
            kind = payload["critical"]["type"]
        except (ValueError, KeyError, TypeError):
            raise VerificationError("malformed simplesigning payload")
        if kind != "cosign container image signature":
            raise VerificationError(f"unexpected simplesigning type {kind!r}")
        if signed_digest != digest:
            raise VerificationError(f"signed digest {signed_digest} does not match the "
                                    f"expected digest {digest}")
        try:
            signature = base64.b64decode(ann[ANN_LEGACY_SIGNATURE], validate=True)
        except (KeyError, binascii.Error):
            raise VerificationError("legacy signature layer has no valid signature annotation")
        signed_data, content, envelope = blob, "simplesigning", None
    elif media_type == DSSE_ENVELOPE:
        try:
            envelope = Envelope.from_dict(json.loads(blob))
        except ValueError:
            raise VerificationError("legacy attestation layer is not JSON")
        statement = Statement.parse(envelope.payload_type, envelope.payload)
        if not statement.covers(digest):
            raise VerificationError(
                f"statement subject {', '.join(statement.subject_digests) or '(none)'} "
                f"does not match the expected digest {digest}")
        if ANN_LEGACY_PREDICATE in ann and ann[ANN_LEGACY_PREDICATE] != statement.predicate_type:
            raise VerificationError("layer predicateType annotation differs from the statement")
        signature, signed_data, content = envelope.signatures[0], envelope.pae(), "dsse-envelope"
    else:
        raise VerificationError(f"not a cosign legacy signature layer: {media_type!r}")

    cert_pem = ann.get(ANN_LEGACY_CERTIFICATE)
    rekor = ann.get(ANN_LEGACY_BUNDLE)
    if cert_pem:
        return _verify_keyless(cert_pem, rekor, signature, signed_data, blob, envelope,
                               statement, content, policy, trusted_root)
    return _verify_key(signature, signed_data, blob, envelope, statement, content, rekor,
                       policy, trusted_root)


def _verify_key(signature: bytes, signed_data: bytes, blob: bytes, envelope: Envelope | None,
                statement: Statement | None, content: str, rekor: str | None,
                policy: SignerPolicy, trusted_root: Any) -> BundleVerification:
    if not policy.keys:
        raise VerificationError("the legacy signature is key-based but no public key was given",
                                fix="pass --key cosign.pub")
    key = None
    sigs = envelope.signatures if envelope is not None else (signature,)
    for k in policy.keys:
        if any(_verify_ecdsa(k, s, signed_data) for s in sigs):
            key = k
            break
    if key is None:
        raise VerificationError("legacy signature does not verify with the given key(s)")
    tlog_ok = False
    if rekor and trusted_root is not None:
        when = _verify_rekor_bundle(rekor, trusted_root)
        _check_body(when[1], signature, blob, envelope, key_pem=_pem_of_key(key))
        tlog_ok = True
    if policy.require_tlog and not tlog_ok:
        raise VerificationError("the legacy signature has no verified transparency-log entry")
    hint = public_key_hint(key)
    return BundleVerification(
        kind="key", signer=f"key:{hint}", issuer=None,
        predicate_type=statement.predicate_type if statement else None, statement=statement,
        content=content, tlog_verified=tlog_ok, key_hint=hint)


def _pem_of_key(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _verify_rekor_bundle(rekor: str, trusted_root: Any) -> tuple[datetime, dict[str, Any]]:
    """Check the SET of cosign's legacy Rekor bundle; return (integrated time, body)."""
    import rfc8785
    from sigstore._internal.trust import KeyringPurpose
    from sigstore._utils import KeyID
    from sigstore.errors import Error as SigstoreError

    try:
        doc = json.loads(rekor)
        pl = doc["Payload"]
        set_sig = base64.b64decode(doc["SignedEntryTimestamp"], validate=True)
        canonical = rfc8785.dumps({"body": pl["body"], "integratedTime": int(pl["integratedTime"]),
                                   "logID": pl["logID"], "logIndex": int(pl["logIndex"])})
        key_id = KeyID(bytes.fromhex(pl["logID"]))
        body = json.loads(base64.b64decode(pl["body"], validate=True))
        when = datetime.fromtimestamp(int(pl["integratedTime"]), tz=UTC)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise VerificationError("malformed Rekor bundle annotation")
    try:
        trusted_root.rekor_keyring(KeyringPurpose.VERIFY).verify(
            key_id=key_id, signature=set_sig, data=canonical)
    except SigstoreError as err:
        raise VerificationError(f"Rekor signed entry timestamp does not verify: {err}")
    return when, body


def _check_body(body: dict[str, Any], signature: bytes, blob: bytes, envelope: Envelope | None,
                *, key_pem: bytes | None = None, cert: x509.Certificate | None = None) -> None:
    """The logged entry must be about this signature, this key/certificate and this
    content (hashedrekord for .sig; dsse — or cosign's older intoto — for .att)."""
    def verifier_matches(b64: Any) -> bool:
        try:
            pem = base64.b64decode(b64)
        except (TypeError, binascii.Error):
            return False
        if cert is not None:
            try:
                return x509.load_pem_x509_certificate(pem) == cert
            except ValueError:
                return False
        try:
            other = serialization.load_pem_public_key(pem)
        except ValueError:
            return False
        return _pem_of_key(other) == key_pem  # type: ignore[arg-type]

    sig_b64 = base64.b64encode(signature).decode()
    kind, spec = body.get("kind"), body.get("spec") or {}
    ok = False
    if kind == "hashedrekord" and envelope is None:
        h = (spec.get("data") or {}).get("hash") or {}
        s = spec.get("signature") or {}
        ok = (h.get("algorithm") == "sha256" and h.get("value") == hashlib.sha256(blob).hexdigest()
              and s.get("content") == sig_b64
              and verifier_matches((s.get("publicKey") or {}).get("content")))
    elif kind == "dsse" and envelope is not None:
        ph = spec.get("payloadHash") or {}
        sigs = spec.get("signatures") or []
        ok = (ph.get("value") == hashlib.sha256(envelope.payload).hexdigest()
              and any(s.get("signature") == sig_b64 and verifier_matches(s.get("verifier"))
                      for s in sigs))
    elif kind == "intoto" and envelope is not None:
        content = spec.get("content") or {}
        ph = content.get("payloadHash") or {}
        ok = (ph.get("value") == hashlib.sha256(envelope.payload).hexdigest()
              and verifier_matches(spec.get("publicKey")))
    else:
        raise VerificationError(f"unsupported Rekor entry kind {kind!r} in legacy bundle")
    if not ok:
        raise VerificationError("Rekor entry is inconsistent with the legacy signature")


def _verify_keyless(cert_pem: str, rekor: str | None, signature: bytes, signed_data: bytes,
                    blob: bytes, envelope: Envelope | None, statement: Statement | None,
                    content: str, policy: SignerPolicy, trusted_root: Any
                    ) -> BundleVerification:
    from cryptography.x509 import ExtendedKeyUsage, KeyUsage
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from cryptography.x509.verification import (
        Criticality,
        ExtensionPolicy,
        PolicyBuilder,
        Store,
    )
    from cryptography.x509.verification import VerificationError as X509Error
    from sigstore._internal.sct import verify_sct
    from sigstore._internal.trust import KeyringPurpose
    from sigstore.errors import Error as SigstoreError

    if trusted_root is None:
        raise KitauditError("a keyless legacy signature needs a trusted root to verify",
                            fix="pass --trusted-root FILE, --offline, or allow TUF access")
    if not policy.keyless_configured:
        policy.check_identity([], None)
    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        raise VerificationError("legacy signature certificate is not a valid PEM certificate")
    if not rekor:
        raise VerificationError("keyless legacy signature without a Rekor bundle: no proof "
                                "of when it was signed")
    when, body = _verify_rekor_bundle(rekor, trusted_root)
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        ExtendedKeyUsage, Criticality.NON_CRITICAL, None)
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        ExtendedKeyUsage, Criticality.NON_CRITICAL, None)
    try:
        verifier = (PolicyBuilder().store(Store(trusted_root.get_fulcio_certs())).time(when)
                    .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
                    .build_client_verifier())
        chain = verifier.verify(cert, []).chain[1:]
    except (X509Error, x509.UnsupportedGeneralNameType) as err:
        raise VerificationError(f"certificate does not chain to a trusted Fulcio CA: {err}")
    try:
        verify_sct(cert, chain, trusted_root.ct_keyring(KeyringPurpose.VERIFY))
    except SigstoreError as err:
        raise VerificationError(f"certificate SCT does not verify: {err}")
    try:
        usage = cert.extensions.get_extension_for_class(KeyUsage).value
        eku = cert.extensions.get_extension_for_class(ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise VerificationError("certificate lacks key usage extensions")
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise VerificationError("certificate is not a code-signing certificate")
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise VerificationError("certificate was not valid when the signature was logged")
    idents, issuer = _cert_facts(cert)
    ident, iss = policy.check_identity(idents, issuer)
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerificationError("unsupported certificate key type")
    hash_for_curve(key.curve)
    try:
        key.verify(signature, signed_data, ec.ECDSA(hash_for_curve(key.curve)))
    except InvalidSignature:
        raise VerificationError("legacy signature does not verify with the certificate key")
    _check_body(body, signature, blob, envelope, cert=cert)
    return BundleVerification(
        kind="keyless", signer=ident, issuer=iss,
        predicate_type=statement.predicate_type if statement else None, statement=statement,
        content=content, tlog_verified=True, timestamps=(when,))
