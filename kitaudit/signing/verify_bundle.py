"""Verify one Sigstore bundle against the digest it is supposed to cover.

Two paths, chosen by the bundle's verification material:

* **key-based** (``publicKey``): done here with ``cryptography`` — the signature over the
  DSSE PAE (or over the artifact digest for message signatures) with one of the keys in
  the policy. Transparency-log entries and RFC 3161 timestamps a key bundle carries are
  verified against the trusted root when one is given (inclusion proof, checkpoint,
  inclusion promise, entry body consistency; TSA signature chain); without a trusted root
  they are reported as not checked (``tlog_verified=False``), as
  ``cosign verify --key --insecure-ignore-tlog`` does.
* **keyless** (``certificate`` / ``x509CertificateChain``): sigstore-python's ``Verifier``
  against the trusted root, with an identity policy that has cosign's semantics
  (``--certificate-identity[-regexp]``, ``--certificate-oidc-issuer[-regexp]``).

For DSSE bundles the in-toto statement's subject must contain ``expected_digest``; for
message-signature bundles (only accepted with ``allow_message_signature=True``, as
``cosign verify`` rejects them for images) the signature must be over that digest.
Every failure raises :class:`kitaudit.errors.VerificationError` with the reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from kitaudit.errors import KitauditError, UsageError, VerificationError
from kitaudit.signing.bundle import ParsedBundle, parse_bundle
from kitaudit.signing.dsse import Statement
from kitaudit.signing.keys import hash_for_curve, load_public_key, public_key_hint

OID_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"
OID_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"
OID_SAN_OTHERNAME = "1.3.6.1.4.1.57264.1.7"

_DATA_ROOT = Path(__file__).resolve().parent.parent / "data" / "trusted_root.json"


@dataclass(frozen=True)
class SignerPolicy:
    """Who is an acceptable signer.

    Key-based bundles need ``keys``; keyless bundles need one of ``identity`` /
    ``identity_regexp`` and one of ``issuer`` / ``issuer_regexp`` (cosign refuses to
    verify keyless signatures without both). Regexps are searched unanchored like Go's
    ``regexp.MatchString``, which is what cosign does; anchor them with ``^...$``.
    """

    keys: tuple[ec.EllipticCurvePublicKey, ...] = ()
    identity: str | None = None
    identity_regexp: str | None = None
    issuer: str | None = None
    issuer_regexp: str | None = None
    require_tlog: bool = False

    @classmethod
    def from_key_files(cls, *paths: str | Path, require_tlog: bool = False) -> SignerPolicy:
        keys = []
        for p in paths:
            try:
                data = Path(p).read_bytes()
            except OSError as err:
                raise UsageError(f"cannot read public key {p}: {err.strerror}")
            keys.append(load_public_key(data, source=str(p)))
        return cls(keys=tuple(keys), require_tlog=require_tlog)

    @property
    def keyless_configured(self) -> bool:
        return bool((self.identity or self.identity_regexp)
                    and (self.issuer or self.issuer_regexp))

    def check_identity(self, identities: list[str], issuer: str | None) -> tuple[str, str]:
        """Return (matched identity, issuer) or raise :class:`VerificationError`."""
        if not self.keyless_configured:
            raise VerificationError(
                "the bundle is signed keyless but no identity policy was given",
                fix="pass --certificate-identity[-regexp] and "
                    "--certificate-oidc-issuer[-regexp]")
        if issuer is None:
            raise VerificationError("signing certificate has no OIDC issuer extension")
        if self.issuer is not None and issuer != self.issuer:
            raise VerificationError(f"certificate issuer {issuer!r} is not the expected "
                                    f"{self.issuer!r}")
        if self.issuer_regexp is not None and not re.search(self.issuer_regexp, issuer):
            raise VerificationError(f"certificate issuer {issuer!r} does not match "
                                    f"{self.issuer_regexp!r}")
        for ident in identities:
            if self.identity is not None and ident != self.identity:
                continue
            if self.identity_regexp is not None and not re.search(self.identity_regexp, ident):
                continue
            return ident, issuer
        want = self.identity if self.identity is not None else self.identity_regexp
        raise VerificationError(f"certificate identity {', '.join(identities) or '(none)'} "
                                f"does not match {want!r}")


@dataclass(frozen=True)
class BundleVerification:
    """What a verified bundle proves."""

    kind: str  # "key" | "keyless"
    signer: str  # certificate identity, or "key:<hint>"
    issuer: str | None
    predicate_type: str | None
    statement: Statement | None
    content: str  # "dsse-envelope" | "message-signature"
    tlog_verified: bool
    timestamps: tuple[datetime, ...] = field(default_factory=tuple)
    key_hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "signer": self.signer, "issuer": self.issuer,
            "predicateType": self.predicate_type, "content": self.content,
            "subjects": list(self.statement.subject_digests) if self.statement else [],
            "tlogVerified": self.tlog_verified,
            "timestamps": [t.isoformat() for t in self.timestamps],
            "keyHint": self.key_hint,
        }


# ---------------------------------------------------------------------------
# trust material

def load_trusted_root(source: str | Path | None = None, *, staging: bool = False,
                      offline: bool = False) -> Any:
    """A sigstore-python ``TrustedRoot``: from ``source`` (a trusted_root.json, or a
    ClientTrustConfig JSON), else with ``offline`` the production root shipped in
    ``kitaudit/data`` (no network), else the production/staging TUF repository
    (cached by sigstore-python)."""
    from sigstore.models import ClientTrustConfig, TrustedRoot

    try:
        if source is not None:
            text = Path(source).read_text()
            doc = json.loads(text)
            if isinstance(doc, dict) and "trustedRoot" in doc:
                return ClientTrustConfig.from_json(text).trusted_root
            return TrustedRoot.from_file(str(source))
        if offline:
            if staging:
                return ClientTrustConfig.staging(offline=True).trusted_root
            return TrustedRoot.from_file(str(_DATA_ROOT))
        if staging:
            return ClientTrustConfig.staging().trusted_root
        return ClientTrustConfig.production().trusted_root
    except FileNotFoundError:
        raise UsageError(f"trusted root {source} does not exist")
    except (ValueError, OSError) as err:
        raise KitauditError(f"cannot load the trusted root: {err}",
                            fix="pass --trusted-root FILE or use --offline")
    except Exception as err:  # sigstore's TUF / metadata errors
        raise KitauditError(f"cannot load the Sigstore trusted root: {err}",
                            fix="check network access to the Sigstore TUF repository, or "
                                "use --offline / --trusted-root FILE")


def _as_trusted_root(trusted_root: Any) -> Any:
    if trusted_root is None or not isinstance(trusted_root, str | Path):
        return trusted_root
    return load_trusted_root(trusted_root)


# ---------------------------------------------------------------------------
# entry point

def _hex_digest(expected_digest: str) -> str:
    algo, _, hexpart = expected_digest.partition(":")
    if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexpart):
        raise UsageError(f"expected digest {expected_digest!r} is not sha256:<64 hex>")
    return hexpart


def verify_bundle(bundle: bytes | str | dict[str, Any], *, expected_digest: str,
                  policy: SignerPolicy, trusted_root: Any = None,
                  allow_message_signature: bool = False) -> BundleVerification:
    """Verify ``bundle`` and that it covers ``expected_digest`` (``sha256:<hex>``).

    ``trusted_root`` is a sigstore-python ``TrustedRoot`` (see
    :func:`load_trusted_root`) or a path to one; it is required for keyless bundles and
    for checking the log entries / timestamps of key bundles.
    """
    hexpart = _hex_digest(expected_digest)
    parsed = parse_bundle(bundle)
    if parsed.envelope is None and not allow_message_signature:
        raise VerificationError("bundle holds a message signature, not a DSSE statement; "
                                "cosign rejects those for images")
    if parsed.material == "publicKey":
        return _verify_key_bundle(parsed, hexpart, policy, _as_trusted_root(trusted_root))
    root = _as_trusted_root(trusted_root)
    if root is None:
        raise KitauditError("a keyless bundle needs a trusted root to verify",
                            fix="pass --trusted-root FILE, --offline, or allow TUF access")
    return _verify_keyless(parsed, hexpart, policy, root)


# ---------------------------------------------------------------------------
# key-based

def _verify_ecdsa(key: ec.EllipticCurvePublicKey, sig: bytes, data: bytes, *,
                  prehashed: bool = False) -> bool:
    try:
        if prehashed:  # message signatures: data is a SHA-256 digest
            key.verify(sig, data, ec.ECDSA(Prehashed(hashes.SHA256())))
        else:
            key.verify(sig, data, ec.ECDSA(hash_for_curve(key.curve)))
    except InvalidSignature:
        return False
    return True


def _verify_key_bundle(parsed: ParsedBundle, hexpart: str, policy: SignerPolicy,
                       trusted_root: Any) -> BundleVerification:
    if not policy.keys:
        raise VerificationError("the bundle is signed with a key but no public key was given",
                                fix="pass --key cosign.pub")
    candidates = list(policy.keys)
    if parsed.public_key_hint:
        hinted = [k for k in candidates if public_key_hint(k) == parsed.public_key_hint]
        candidates = hinted + [k for k in candidates if k not in hinted]

    statement = None
    signature: bytes
    key: ec.EllipticCurvePublicKey | None = None
    if parsed.envelope is not None:
        env = parsed.envelope
        pae_bytes = env.pae()
        for k in candidates:
            for sig in env.signatures:
                if _verify_ecdsa(k, sig, pae_bytes):
                    key, signature = k, sig
                    break
            if key is not None:
                break
        if key is None:
            raise VerificationError("DSSE signature does not verify with the given key(s)")
        statement = Statement.parse(env.payload_type, env.payload)
        if not statement.covers(f"sha256:{hexpart}"):
            raise VerificationError(
                f"statement subject {', '.join(statement.subject_digests) or '(none)'} "
                f"does not match the expected digest sha256:{hexpart}")
    else:
        ms = parsed.message_signature
        assert ms is not None
        if ms.digest is not None and ms.digest.hex() != hexpart:
            raise VerificationError("bundle message digest does not match the expected digest")
        digest = bytes.fromhex(hexpart)
        for k in candidates:
            if _verify_ecdsa(k, ms.signature, digest, prehashed=True):
                key = k
                break
        if key is None:
            raise VerificationError("message signature does not verify with the given key(s)")
        signature = ms.signature

    tlog_ok = False
    stamps: tuple[datetime, ...] = ()
    if parsed.tlog_entries or parsed.rfc3161_timestamps:
        if trusted_root is not None:
            if parsed.tlog_entries:
                _verify_key_tlog(parsed, key, signature, hexpart, trusted_root)
                tlog_ok = True
            if parsed.rfc3161_timestamps:
                stamps = _verify_timestamps(parsed.rfc3161_timestamps, signature, trusted_root)
    if policy.require_tlog and not tlog_ok:
        raise VerificationError("the bundle has no verified transparency-log entry",
                                fix="sign with Rekor upload, or drop the tlog requirement")
    hint = public_key_hint(key)
    return BundleVerification(
        kind="key", signer=f"key:{hint}", issuer=None,
        predicate_type=statement.predicate_type if statement else None,
        statement=statement, content=parsed.content_kind, tlog_verified=tlog_ok,
        timestamps=stamps, key_hint=hint)


def _key_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _pem_key_matches(b64_pem: Any, key: ec.EllipticCurvePublicKey) -> bool:
    try:
        other = serialization.load_pem_public_key(base64.b64decode(b64_pem))
    except (ValueError, TypeError, binascii.Error):
        return False
    return other.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo) == _key_der(key)


def _verify_key_tlog(parsed: ParsedBundle, key: ec.EllipticCurvePublicKey, signature: bytes,
                     hexpart: str, trusted_root: Any) -> None:
    """Inclusion proof + checkpoint + inclusion promise (sigstore-python's log-entry
    verifier, fed the trusted root's Rekor keys) and consistency of the logged body with
    this bundle's key, signature and content."""
    from sigstore._internal.trust import KeyringPurpose
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import TransparencyLogEntry
    from sigstore_models.rekor.v1 import TransparencyLogEntry as _Entry

    entry_doc = parsed.tlog_entries[0]
    try:
        entry = TransparencyLogEntry(_Entry.from_dict(entry_doc))
        entry._verify(trusted_root.rekor_keyring(KeyringPurpose.VERIFY))
    except (SigstoreError, ValueError, KeyError) as err:
        raise VerificationError(f"invalid transparency log entry: {err}")
    try:
        body = json.loads(base64.b64decode(entry_doc["canonicalizedBody"]))
        kind, version = body["kind"], body["apiVersion"]
        spec = body["spec"]
    except (KeyError, ValueError, TypeError, binascii.Error):
        raise VerificationError("transparency log entry body is malformed")
    sig_b64 = base64.b64encode(signature).decode()
    env = parsed.envelope
    ok = False
    if kind == "hashedrekord" and version == "0.0.1":
        data_hash = (spec.get("data") or {}).get("hash") or {}
        sig_spec = spec.get("signature") or {}
        if env is not None:
            want_hash = hashlib.sha256(env.pae()).hexdigest()
        else:
            want_hash = hexpart
        ok = (data_hash.get("algorithm") == "sha256" and data_hash.get("value") == want_hash
              and sig_spec.get("content") == sig_b64
              and _pem_key_matches((sig_spec.get("publicKey") or {}).get("content"), key))
    elif kind == "dsse" and version == "0.0.1" and env is not None:
        ph = spec.get("payloadHash") or {}
        sigs = spec.get("signatures") or []
        ok = (ph.get("algorithm") == "sha256"
              and ph.get("value") == hashlib.sha256(env.payload).hexdigest()
              and len(sigs) == len(env.signatures)
              and all(s.get("signature") == base64.b64encode(es).decode()
                      and _pem_key_matches(s.get("verifier"), key)
                      for s, es in zip(sigs, env.signatures, strict=False)))
    else:
        raise VerificationError(f"unsupported transparency log entry kind {kind}/{version} "
                                "for a key-based bundle")
    if not ok:
        raise VerificationError("transparency log entry is inconsistent with the bundle")


def _verify_timestamps(stamps: list[bytes], signature: bytes, trusted_root: Any
                       ) -> tuple[datetime, ...]:
    """Every RFC 3161 timestamp must verify against a TSA of the trusted root (message
    imprint over the signature bytes) and lie within that TSA's validity period."""
    from rfc3161_client import VerificationError as TsaError
    from rfc3161_client import VerifierBuilder, decode_timestamp_response

    authorities = trusted_root.get_timestamp_authorities()
    if not authorities:
        raise VerificationError("the bundle has a signed timestamp but the trusted root has "
                                "no timestamp authority")
    out = []
    for raw in stamps:
        try:
            tsr = decode_timestamp_response(raw)
        except ValueError:
            raise VerificationError("malformed RFC 3161 timestamp in bundle")
        when = None
        for ca in authorities:
            certs = ca.certificates(allow_expired=True)
            if len(certs) < 2:
                continue
            builder = VerifierBuilder().tsa_certificate(certs[0]).add_root_certificate(certs[-1])
            for c in certs[1:-1]:
                builder = builder.add_intermediate_certificate(c)
            try:
                builder.build().verify_message(tsr, signature)
            except TsaError:
                continue
            gen = tsr.tst_info.gen_time
            end = ca.validity_period_end
            if ca.validity_period_start <= gen and (end is None or gen < end):
                when = gen
                break
        if when is None:
            raise VerificationError("signed timestamp does not verify against any trusted "
                                    "timestamp authority")
        out.append(when)
    return tuple(out)


# ---------------------------------------------------------------------------
# keyless

def _cert_facts(cert: Any) -> tuple[list[str], str | None]:
    from cryptography import x509

    idents: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        idents += san.get_values_for_type(x509.RFC822Name)
        idents += san.get_values_for_type(x509.UniformResourceIdentifier)
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id.dotted_string == OID_SAN_OTHERNAME:
                idents.append(_der_utf8(other.value))
    issuer = None
    for oid, der in ((OID_ISSUER_V2, True), (OID_ISSUER_V1, False)):
        try:
            ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
        except x509.ExtensionNotFound:
            continue
        raw = ext.value.value
        issuer = _der_utf8(raw) if der else raw.decode("utf-8", "replace")
        break
    return idents, issuer


def _der_utf8(raw: bytes) -> str:
    """Decode a DER UTF8String (tag 0x0c, short or long length)."""
    if len(raw) >= 2 and raw[0] == 0x0C:
        n = raw[1]
        start = 2
        if n & 0x80:
            nbytes = n & 0x7F
            n = int.from_bytes(raw[2:2 + nbytes], "big")
            start = 2 + nbytes
        return raw[start:start + n].decode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


_VERIFIERS: dict[int, tuple[Any, Any]] = {}


def _verifier_for(trusted_root: Any) -> Any:
    hit = _VERIFIERS.get(id(trusted_root))
    if hit is not None and hit[0] is trusted_root:
        return hit[1]
    from sigstore.verify import Verifier

    verifier = Verifier(trusted_root=trusted_root)
    if len(_VERIFIERS) > 8:
        _VERIFIERS.clear()
    _VERIFIERS[id(trusted_root)] = (trusted_root, verifier)
    return verifier


def _verify_keyless(parsed: ParsedBundle, hexpart: str, policy: SignerPolicy,
                    trusted_root: Any) -> BundleVerification:
    from sigstore.errors import Error as SigstoreError
    from sigstore.hashes import Hashed
    from sigstore.models import Bundle
    from sigstore.verify.policy import VerificationPolicy
    from sigstore_models.common.v1 import HashAlgorithm

    if not policy.keyless_configured:
        policy.check_identity([], None)  # raises with the fix

    matched: dict[str, str] = {}

    class _Policy(VerificationPolicy):
        def verify(self, cert: Any) -> None:
            idents, issuer = _cert_facts(cert)
            try:
                ident, iss = policy.check_identity(idents, issuer)
            except VerificationError as err:
                raise _PolicyFailure(err)
            matched["identity"], matched["issuer"] = ident, iss

    try:
        sbundle = Bundle.from_json(json.dumps(parsed.raw))
    except SigstoreError as err:
        raise VerificationError(f"invalid Sigstore bundle: {err}")
    verifier = _verifier_for(trusted_root)
    statement = None
    try:
        if parsed.envelope is not None:
            ptype, payload = verifier.verify_dsse(sbundle, _Policy())
            statement = Statement.parse(ptype, payload)
        else:
            verifier.verify_artifact(Hashed(algorithm=HashAlgorithm.SHA2_256,
                                            digest=bytes.fromhex(hexpart)), sbundle, _Policy())
    except _PolicyFailure as err:
        raise err.inner
    except SigstoreError as err:
        raise VerificationError(f"Sigstore bundle did not verify: {err}")
    if statement is not None and not statement.covers(f"sha256:{hexpart}"):
        raise VerificationError(
            f"statement subject {', '.join(statement.subject_digests) or '(none)'} "
            f"does not match the expected digest sha256:{hexpart}")
    times: list[datetime] = []
    tvd = sbundle.verification_material.timestamp_verification_data
    if tvd is not None:
        times = [t.tst_info.gen_time for t in tvd.rfc3161_timestamps]
    return BundleVerification(
        kind="keyless", signer=matched["identity"], issuer=matched["issuer"],
        predicate_type=statement.predicate_type if statement else None,
        statement=statement, content=parsed.content_kind, tlog_verified=True,
        timestamps=tuple(times))


class _PolicyFailure(Exception):
    """Carries our VerificationError through sigstore-python's verifier."""

    def __init__(self, inner: VerificationError) -> None:
        super().__init__(inner.message)
        self.inner = inner
