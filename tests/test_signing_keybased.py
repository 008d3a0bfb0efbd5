"""Key-based signing of a ModelKit: bundles and referrer manifests exactly as cosign v3
writes them, signatures checked with ``cryptography``, and verification through
``verify_bundle`` (good, wrong key, wrong digest, tampered)."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from kitaudit.errors import SigningError, UsageError, VerificationError
from kitaudit.mediatypes import OCI_EMPTY_DIGEST
from kitaudit.signing import keys
from kitaudit.signing.bundle import parse_bundle
from kitaudit.signing.dsse import Statement, pae
from kitaudit.signing.signer import KeySigner, sign_modelkit
from kitaudit.signing.verify_bundle import SignerPolicy, verify_bundle

MANIFEST = json.dumps({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "artifactType": "application/vnd.kitops.modelkit.manifest.v1+json",
                       "config": {}, "layers": []}).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
SUBJECT = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(MANIFEST),
           "digest": DIGEST, "annotations": {"x": "dropped"}}
BOM = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
                  "components": [{"type": "machine-learning-model", "name": "m"}]},
                 indent=2).encode()
CREATED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def signer() -> KeySigner:
    priv = ec.generate_private_key(ec.SECP256R1())
    return KeySigner(keys.LoadedKey(priv, "test.key"))


@pytest.fixture(scope="module")
def signed(signer):
    return sign_modelkit(DIGEST, SUBJECT, sbom=BOM, signer=signer, created=CREATED)


def test_two_referrers(signed):
    assert [r.predicate_type for r in signed] == ["https://sigstore.dev/cosign/sign/v1",
                                                  "https://cyclonedx.org/bom"]
    assert all(r.format == "bundle" and r.tag is None for r in signed)


def test_referrer_manifest_exactly_as_cosign(signed):
    for ref in signed:
        m = json.loads(ref.manifest_bytes)
        assert list(m) == ["schemaVersion", "mediaType", "artifactType", "config", "layers",
                           "annotations", "subject"]
        assert m["schemaVersion"] == 2
        assert m["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert m["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
        assert m["config"] == {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2,
                               "digest": OCI_EMPTY_DIGEST}
        assert m["layers"] == [{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                                "size": len(ref.bundle_bytes),
                                "digest": "sha256:" + hashlib.sha256(ref.bundle_bytes).hexdigest()}]
        assert m["annotations"] == {"dev.sigstore.bundle.content": "dsse-envelope",
                                    "dev.sigstore.bundle.predicateType": ref.predicate_type,
                                    "org.opencontainers.image.created": "2026-01-02T03:04:05Z"}
        assert m["subject"] == {"mediaType": SUBJECT["mediaType"], "size": SUBJECT["size"],
                                "digest": DIGEST}
        assert ref.blobs == {OCI_EMPTY_DIGEST: b"{}",
                             m["layers"][0]["digest"]: ref.bundle_bytes}


def test_bundle_json_exactly_as_cosign(signed, signer):
    for ref in signed:
        b = json.loads(ref.bundle_bytes)
        assert list(b) == ["mediaType", "verificationMaterial", "dsseEnvelope"]
        assert b["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
        der = signer.key.public_key.public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)
        assert b["verificationMaterial"] == {
            "publicKey": {"hint": base64.b64encode(hashlib.sha256(der).digest()).decode()}}
        env = b["dsseEnvelope"]
        assert list(env) == ["payload", "payloadType", "signatures"]
        assert env["payloadType"] == "application/vnd.in-toto+json"
        assert len(env["signatures"]) == 1 and list(env["signatures"][0]) == ["sig"]


def test_statements(signed):
    sign_stmt = json.loads(base64.b64decode(json.loads(signed[0].bundle_bytes)
                                            ["dsseEnvelope"]["payload"]))
    assert sign_stmt == {"_type": "https://in-toto.io/Statement/v1",
                         "subject": [{"digest": {"sha256": DIGEST[7:]}}],
                         "predicateType": "https://sigstore.dev/cosign/sign/v1",
                         "predicate": {}}
    bom_stmt = json.loads(base64.b64decode(json.loads(signed[1].bundle_bytes)
                                           ["dsseEnvelope"]["payload"]))
    assert list(bom_stmt) == ["_type", "subject", "predicateType", "predicate"]
    assert bom_stmt["subject"] == [{"digest": {"sha256": DIGEST[7:]}}]  # no "name"
    assert bom_stmt["predicateType"] == "https://cyclonedx.org/bom"
    assert bom_stmt["predicate"] == json.loads(BOM)


def test_signature_checks_out_with_cryptography_over_pae(signed, signer):
    """Independent check: rebuild the PAE by hand and verify the ECDSA-SHA256 signature."""
    for ref in signed:
        env = json.loads(ref.bundle_bytes)["dsseEnvelope"]
        payload = base64.b64decode(env["payload"])
        ptype = env["payloadType"].encode()
        manual_pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype, len(payload), payload)
        assert manual_pae == pae(env["payloadType"], payload)
        sig = base64.b64decode(env["signatures"][0]["sig"])
        signer.key.public_key.verify(sig, manual_pae, ec.ECDSA(hashes.SHA256()))


def test_verify_bundle_key_based(signed, signer):
    policy = SignerPolicy(keys=(signer.key.public_key,))
    for ref in signed:
        res = verify_bundle(ref.bundle_bytes, expected_digest=DIGEST, policy=policy)
        assert res.kind == "key" and res.signer == f"key:{signer.key.hint}"
        assert res.predicate_type == ref.predicate_type
        assert res.statement is not None and res.statement.covers(DIGEST)
        assert res.tlog_verified is False  # no Rekor: air-gapped signature


def test_verify_rejects_wrong_key(signed, signer):
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(VerificationError, match="does not verify"):
        verify_bundle(signed[0].bundle_bytes, expected_digest=DIGEST,
                      policy=SignerPolicy(keys=(other,)))
    # several keys: the right one is found (by hint) among others
    res = verify_bundle(signed[0].bundle_bytes, expected_digest=DIGEST,
                        policy=SignerPolicy(keys=(other, signer.key.public_key)))
    assert res.key_hint == signer.key.hint


def test_subject_must_equal_expected_digest(signed, signer):
    policy = SignerPolicy(keys=(signer.key.public_key,))
    with pytest.raises(VerificationError, match="does not match the expected digest"):
        verify_bundle(signed[0].bundle_bytes, expected_digest="sha256:" + "a" * 64,
                      policy=policy)
    bundle = json.loads(signed[0].bundle_bytes)
    stmt = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    stmt["subject"][0]["digest"]["sha256"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    with pytest.raises(VerificationError, match="DSSE signature does not verify"):
        verify_bundle(bundle, expected_digest=DIGEST, policy=policy)
    with pytest.raises(VerificationError, match="no public key"):
        verify_bundle(signed[0].bundle_bytes, expected_digest=DIGEST, policy=SignerPolicy())
    with pytest.raises(UsageError):
        verify_bundle(signed[0].bundle_bytes, expected_digest="sha256:xyz", policy=policy)


def test_keyless_bundle_needs_identity_policy(signed, signer):
    """A policy without identity/issuer never accepts a certificate bundle."""
    from kitaudit.signing.verify_bundle import SignerPolicy as P

    with pytest.raises(VerificationError, match="no identity policy"):
        P(keys=(signer.key.public_key,)).check_identity(["a@b"], "https://x")


def test_no_sbom_one_referrer(signer):
    out = sign_modelkit(DIGEST, SUBJECT, sbom=None, signer=signer)
    assert len(out) == 1
    assert out[0].predicate_type == "https://sigstore.dev/cosign/sign/v1"
    created = json.loads(out[0].manifest_bytes)["annotations"]["org.opencontainers.image.created"]
    datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ")


def test_bad_input_signs_nothing(signer):
    calls = []

    class Counting(KeySigner):
        def sign_dsse(self, statement):
            calls.append(statement)
            return super().sign_dsse(statement)

    s = Counting(signer.key)
    with pytest.raises(SigningError, match="not valid JSON"):
        sign_modelkit(DIGEST, SUBJECT, sbom=b"{nope", signer=s)
    with pytest.raises(SigningError, match="does not match"):
        sign_modelkit(DIGEST, {**SUBJECT, "digest": "sha256:" + "b" * 64}, sbom=None, signer=s)
    with pytest.raises(SigningError, match="needs the image reference"):
        sign_modelkit(DIGEST, SUBJECT, sbom=None, signer=s, signature_format="legacy")
    assert calls == []
    with pytest.raises(SigningError, match="unknown signature format"):
        sign_modelkit(DIGEST, SUBJECT, sbom=None, signer=s, signature_format="x")


def test_legacy_format(signer):
    out = sign_modelkit(DIGEST, SUBJECT, sbom=BOM, signer=signer, signature_format="legacy",
                        docker_reference="registry.example/team/model")
    assert [r.format for r in out] == ["bundle", "bundle", "legacy", "legacy"]
    sig, att = out[2], out[3]
    assert sig.tag == f"sha256-{DIGEST[7:]}.sig" and att.tag == f"sha256-{DIGEST[7:]}.att"
    m = json.loads(sig.manifest_bytes)
    assert "subject" not in m and m["config"]["mediaType"] == \
        "application/vnd.oci.image.config.v1+json"
    (layer,) = m["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    payload = sig.blobs[layer["digest"]]
    assert json.loads(payload) == {
        "critical": {"identity": {"docker-reference": "registry.example/team/model"},
                     "image": {"docker-manifest-digest": DIGEST},
                     "type": "cosign container image signature"},
        "optional": None}
    sig_bytes = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    signer.key.public_key.verify(sig_bytes, payload, ec.ECDSA(hashes.SHA256()))
    assert m["config"]["digest"] in sig.blobs
    am = json.loads(att.manifest_bytes)
    (alayer,) = am["layers"]
    assert alayer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    assert alayer["annotations"] == {"predicateType": "https://cyclonedx.org/bom"}
    env = json.loads(att.blobs[alayer["digest"]])
    assert env == json.loads(out[1].bundle_bytes)["dsseEnvelope"]


def test_parse_bundle_errors():
    for bad in (b"", b"[]", b'{"mediaType":"x"}',
                b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}',
                b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json",'
                b'"verificationMaterial":{"publicKey":{"hint":"x"}}}'):
        with pytest.raises(VerificationError):
            parse_bundle(bad)


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4)
                     | st.dictionaries(st.sampled_from(["mediaType", "verificationMaterial",
                                                        "publicKey", "hint", "dsseEnvelope",
                                                        "payload", "payloadType", "signatures",
                                                        "sig", "certificate", "rawBytes",
                                                        "messageSignature", "tlogEntries",
                                                        "_type", "subject", "digest",
                                                        "predicateType", "sha256"]),
                                       c, max_size=5), max_leaves=20)


@settings(max_examples=120, deadline=None)
@given(_json)
def test_parsers_fail_cleanly(doc):
    """Arbitrary JSON: bundle and statement parsers raise VerificationError or succeed."""
    for candidate in (doc, {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
                            "verificationMaterial": {"publicKey": {"hint": "h"}},
                            "dsseEnvelope": doc}):
        try:
            parse_bundle(json.dumps(candidate))
        except VerificationError:
            pass
    try:
        Statement.parse("application/vnd.in-toto+json", json.dumps(doc).encode())
    except VerificationError:
        pass


def test_verify_legacy_layers_key_based(signer):
    from kitaudit.signing.verify_legacy import verify_legacy_layer

    out = sign_modelkit(DIGEST, SUBJECT, sbom=BOM, signer=signer, signature_format="legacy",
                        docker_reference="registry.example/team/model")
    policy = SignerPolicy(keys=(signer.key.public_key,))
    for ref, content in ((out[2], "simplesigning"), (out[3], "dsse-envelope")):
        (layer,) = ref.manifest["layers"]
        blob = ref.blobs[layer["digest"]]
        res = verify_legacy_layer(layer, blob, expected_digest=DIGEST, policy=policy)
        assert res.kind == "key" and res.content == content
        with pytest.raises(VerificationError, match="expected digest"):
            verify_legacy_layer(layer, blob, expected_digest="sha256:" + "c" * 64,
                                policy=policy)
        other = ec.generate_private_key(ec.SECP256R1()).public_key()
        with pytest.raises(VerificationError, match="does not verify"):
            verify_legacy_layer(layer, blob, expected_digest=DIGEST,
                                policy=SignerPolicy(keys=(other,)))
        with pytest.raises(VerificationError, match="does not match its digest"):
            verify_legacy_layer(layer, blob + b" ", expected_digest=DIGEST, policy=policy)
    # a signature annotation from another payload does not verify
    (sig_layer,) = out[2].manifest["layers"]
    forged = dict(sig_layer, annotations={
        "dev.cosignproject.cosign/signature": base64.b64encode(b"0" * 70).decode()})
    with pytest.raises(VerificationError):
        verify_legacy_layer(forged, out[2].blobs[sig_layer["digest"]], expected_digest=DIGEST,
                            policy=policy)


@pytest.mark.parametrize("curve,hash_cls", [(ec.SECP384R1(), hashes.SHA384),
                                            (ec.SECP521R1(), hashes.SHA512)])
def test_other_curves_use_their_hash(curve, hash_cls):
    s = KeySigner(keys.LoadedKey(ec.generate_private_key(curve), "k.pem"))
    (ref,) = sign_modelkit(DIGEST, SUBJECT, sbom=None, signer=s)
    env = json.loads(ref.bundle_bytes)["dsseEnvelope"]
    payload = base64.b64decode(env["payload"])
    s.key.public_key.verify(base64.b64decode(env["signatures"][0]["sig"]),
                            pae(env["payloadType"], payload), ec.ECDSA(hash_cls()))
    assert verify_bundle(ref.bundle_bytes, expected_digest=DIGEST,
                         policy=SignerPolicy(keys=(s.key.public_key,))).kind == "key"
