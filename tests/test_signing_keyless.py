"""Keyless signing without the public Sigstore.

Fulcio, Rekor and a timestamp authority run as a loopback Node server built from the npm
package ``@sigstore/mock`` (``tests/sigstore_mock/server.js``; install it with
``npm ci --prefix tests/sigstore_mock``). This is the one mock in these tests: the real
Sigstore services cannot run here. sigstore-python signs for real against it (CSR,
certificate with embedded SCT, Rekor dsse entry with inclusion proof and SET, RFC 3161
timestamp) and verifies for real against the trusted root the server describes.
The identity token is a test JWT (Fulcio mocks do not check its signature; the
certificate SAN is its ``sub``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from kitaudit.errors import SigningError, VerificationError
from kitaudit.signing.keyless import KeylessSigner
from kitaudit.signing.signer import sign_modelkit
from kitaudit.signing.verify_bundle import SignerPolicy, load_trusted_root, verify_bundle

MOCK_DIR = Path(__file__).resolve().parent / "sigstore_mock"
ISSUER = "https://issuer.test.example"
SUB = "ci-bot@test.example"
MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}'
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
SUBJECT = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(MANIFEST),
           "digest": DIGEST}
BOM = b'{"bomFormat":"CycloneDX","specVersion":"1.6","version":1}'


def _token(sub: str = SUB, iss: str = ISSUER, lifetime: int = 600, **extra) -> str:
    now = int(time.time())
    claims = {"iss": iss, "sub": sub, "aud": "sigstore", "iat": now, "exp": now + lifetime,
              **extra}
    return jwt.encode(claims, "test-secret-key-of-32-bytes-min!", algorithm="HS256")


@pytest.fixture(scope="module")
def sigstore_mock(tmp_path_factory):
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: keyless tests need the @sigstore/mock server")
    if not (MOCK_DIR / "node_modules" / "@sigstore" / "mock").is_dir():
        pytest.skip("npm package @sigstore/mock missing: run "
                    "`npm ci --prefix tests/sigstore_mock`")
    proc = subprocess.Popen([node, str(MOCK_DIR / "server.js")], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(30)
    if not line or not line[0]:
        proc.kill()
        err = proc.stderr.read().decode(errors="replace")
        pytest.fail(f"sigstore mock did not start: {err}")
    info = json.loads(line[0])
    path = tmp_path_factory.mktemp("sigstore") / "trust_config.json"
    path.write_text(json.dumps(info["trustConfig"]))
    yield path
    proc.stdin.close()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def root(sigstore_mock):
    return load_trusted_root(sigstore_mock)


@pytest.fixture(scope="module")
def signed(sigstore_mock):
    signer = KeylessSigner(_token(), trust_config=sigstore_mock)
    out = sign_modelkit(DIGEST, SUBJECT, sbom=BOM, signer=signer,
                        signature_format="legacy", docker_reference="localhost/team/model")
    signer.close()
    return out, signer


def _policy(**kw) -> SignerPolicy:
    return SignerPolicy(**{"identity": SUB, "issuer": ISSUER, **kw})


def test_bundles_verify_with_sigstore_python(signed, root):
    out, signer = signed
    assert signer.identity == SUB and signer.issuer == ISSUER
    for ref, ptype in zip(out[:2], ["https://sigstore.dev/cosign/sign/v1",
                                    "https://cyclonedx.org/bom"], strict=True):
        res = verify_bundle(ref.bundle_bytes, expected_digest=DIGEST, policy=_policy(),
                            trusted_root=root)
        assert (res.kind, res.signer, res.issuer) == ("keyless", SUB, ISSUER)
        assert res.predicate_type == ptype and res.tlog_verified
        assert len(res.timestamps) == 1


def test_bundle_structure(signed):
    out, _ = signed
    certs = set()
    for ref in out[:2]:
        b = json.loads(ref.bundle_bytes)
        assert b["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
        vm = b["verificationMaterial"]
        assert "certificate" in vm and "x509CertificateChain" not in vm
        assert vm["timestampVerificationData"]["rfc3161Timestamps"]
        assert vm["tlogEntries"][0]["kindVersion"] == {"kind": "dsse", "version": "0.0.1"}
        assert b["dsseEnvelope"]["payloadType"] == "application/vnd.in-toto+json"
        stmt = json.loads(base64.b64decode(b["dsseEnvelope"]["payload"]))
        assert stmt["subject"] == [{"digest": {"sha256": DIGEST[7:]}}]
        certs.add(vm["certificate"]["rawBytes"])
        m = json.loads(ref.manifest_bytes)
        assert m["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
        assert m["annotations"]["dev.sigstore.bundle.predicateType"] == ref.predicate_type
    assert len(certs) == 1, "one token, one certificate for both statements"
    cert = x509.load_der_x509_certificate(base64.b64decode(certs.pop()))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert SUB in san.get_values_for_type(x509.RFC822Name) + \
        san.get_values_for_type(x509.UniformResourceIdentifier)


@pytest.mark.parametrize("kw", [{"identity": "someone@else.example"},
                                {"issuer": "https://other.example"},
                                {"identity": None, "identity_regexp": "^admin@"}])
def test_wrong_identity_or_issuer(signed, root, kw):
    out, _ = signed
    with pytest.raises(VerificationError, match=r"identity|issuer"):
        verify_bundle(out[0].bundle_bytes, expected_digest=DIGEST, policy=_policy(**kw),
                      trusted_root=root)


def test_tampered_and_wrong_root(signed, root):
    out, _ = signed
    doc = json.loads(out[0].bundle_bytes)
    stmt = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    stmt["predicateType"] = "https://example/other"
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    with pytest.raises(VerificationError):
        verify_bundle(doc, expected_digest=DIGEST, policy=_policy(), trusted_root=root)
    # the production root does not trust the mock's Fulcio
    with pytest.raises(VerificationError):
        verify_bundle(out[0].bundle_bytes, expected_digest=DIGEST, policy=_policy(),
                      trusted_root=load_trusted_root(offline=True))
    with pytest.raises(VerificationError, match="expected digest"):
        verify_bundle(out[0].bundle_bytes, expected_digest="sha256:" + "1" * 64,
                      policy=_policy(), trusted_root=root)


def test_legacy_sig_keyless(signed):
    out, _ = signed
    sig = out[2]
    assert sig.tag == f"sha256-{DIGEST[7:]}.sig"
    (layer,) = sig.manifest["layers"]
    ann = layer["annotations"]
    cert = x509.load_pem_x509_certificate(ann["dev.sigstore.cosign/certificate"].encode())
    payload = sig.blobs[layer["digest"]]
    cert.public_key().verify(base64.b64decode(ann["dev.cosignproject.cosign/signature"]),
                             payload, ec.ECDSA(hashes.SHA256()))
    rb = json.loads(ann["dev.sigstore.cosign/bundle"])
    body = json.loads(base64.b64decode(rb["Payload"]["body"]))
    assert body["kind"] == "hashedrekord"
    assert body["spec"]["data"]["hash"]["value"] == hashlib.sha256(payload).hexdigest()
    assert "dev.sigstore.cosign/rfc3161timestamp" in ann
    att = out[3]
    (alayer,) = att.manifest["layers"]
    assert "dev.sigstore.cosign/certificate" in alayer["annotations"]
    assert "dev.sigstore.cosign/bundle" in alayer["annotations"]


def test_token_from_env(sigstore_mock, root, monkeypatch):
    monkeypatch.setenv("SIGSTORE_ID_TOKEN", _token(sub="env@test.example"))
    signer = KeylessSigner(trust_config=sigstore_mock)
    out = sign_modelkit(DIGEST, SUBJECT, sbom=None, signer=signer)
    res = verify_bundle(out[0].bundle_bytes, expected_digest=DIGEST, trusted_root=root,
                        policy=_policy(identity="env@test.example"))
    assert res.signer == "env@test.example"


@pytest.mark.parametrize("token,match", [
    (lambda: _token(lifetime=-3600), "expired or malformed"),
    (lambda: "not-a-jwt", "expired or malformed"),
    (lambda: _token(aud="not-sigstore"), "expired or malformed"),
])
def test_bad_tokens_attach_nothing(sigstore_mock, token, match):
    signer = KeylessSigner(token(), trust_config=sigstore_mock)
    with pytest.raises(SigningError, match=match):
        sign_modelkit(DIGEST, SUBJECT, sbom=BOM, signer=signer)


def test_no_token_is_clear(sigstore_mock, monkeypatch):
    import sigstore.oidc

    monkeypatch.delenv("SIGSTORE_ID_TOKEN", raising=False)
    # isolate from whatever CI the suite runs in: no ambient credential here
    monkeypatch.setattr(sigstore.oidc, "detect_credential", lambda *a, **k: None)
    with pytest.raises(SigningError, match="no identity token"):
        sign_modelkit(DIGEST, SUBJECT, sbom=None,
                      signer=KeylessSigner(trust_config=sigstore_mock))


def test_missing_trust_config(tmp_path):
    with pytest.raises(SigningError, match="does not exist"):
        sign_modelkit(DIGEST, SUBJECT, sbom=None,
                      signer=KeylessSigner(_token(), trust_config=tmp_path / "nope.json"))


def test_verify_legacy_keyless(signed, root):
    from kitaudit.signing.verify_legacy import verify_legacy_layer

    out, _ = signed
    for ref, content in ((out[2], "simplesigning"), (out[3], "dsse-envelope")):
        (layer,) = ref.manifest["layers"]
        blob = ref.blobs[layer["digest"]]
        res = verify_legacy_layer(layer, blob, expected_digest=DIGEST, policy=_policy(),
                                  trusted_root=root)
        assert (res.kind, res.signer, res.issuer, res.content) == \
            ("keyless", SUB, ISSUER, content)
        assert res.tlog_verified
        with pytest.raises(VerificationError, match="identity"):
            verify_legacy_layer(layer, blob, expected_digest=DIGEST,
                                policy=_policy(identity="x@y.example"), trusted_root=root)
        with pytest.raises(VerificationError):  # production root: not our Fulcio/Rekor
            verify_legacy_layer(layer, blob, expected_digest=DIGEST, policy=_policy(),
                                trusted_root=load_trusted_root(offline=True))
        ann = dict(layer["annotations"])
        rb = json.loads(ann["dev.sigstore.cosign/bundle"])
        rb["Payload"]["integratedTime"] += 1
        ann["dev.sigstore.cosign/bundle"] = json.dumps(rb)
        with pytest.raises(VerificationError, match="signed entry timestamp"):
            verify_legacy_layer(dict(layer, annotations=ann), blob, expected_digest=DIGEST,
                                policy=_policy(), trusted_root=root)
    # the .sig Rekor entry does not vouch for the .att signature
    (sig_layer,) = out[2].manifest["layers"]
    (att_layer,) = out[3].manifest["layers"]
    ann = dict(att_layer["annotations"])
    ann["dev.sigstore.cosign/bundle"] = sig_layer["annotations"]["dev.sigstore.cosign/bundle"]
    with pytest.raises(VerificationError, match="Rekor entry"):
        verify_legacy_layer(dict(att_layer, annotations=ann), out[3].blobs[att_layer["digest"]],
                            expected_digest=DIGEST, policy=_policy(), trusted_root=root)


def test_cli_sign_keyless_local(sigstore_mock, root, kit_home):
    """`kitaudit sign REF --identity-token T --trust-config F` on a stored ModelKit with an
    ML-BOM: two keyless bundles attached locally, one certificate, both verify."""
    from click.testing import CliRunner

    from kitaudit import mlbom
    from kitaudit._cli import main
    from kitaudit.mediatypes import SIGSTORE_BUNDLE_V03
    from kitaudit.store import default_store
    from tests.registry_fixtures import build_modelkit

    store = default_store()
    kit = build_modelkit(store, "localhost/team/keyless:v1", seed="keyless")
    mlbom.store_mlbom(store, {"mediaType": kit.manifest["mediaType"], "size": len(kit.raw),
                              "digest": kit.digest}, BOM)
    res = CliRunner().invoke(main, ["sign", "team/keyless:v1", "--identity-token", _token(),
                                    "--trust-config", str(sigstore_mock), "--output", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["signer"] == f"keyless {SUB} ({ISSUER})" and out["sbomSigned"]
    refs = store.referrers(kit.digest, SIGSTORE_BUNDLE_V03)
    assert len(refs) == 2
    for r in refs:
        _, manifest, _ = store.get_manifest(r["digest"])
        bundle = store.read_blob(manifest["layers"][0]["digest"])
        v = verify_bundle(bundle, expected_digest=kit.digest, policy=_policy(),
                          trusted_root=root)
        assert v.predicate_type == manifest["annotations"]["dev.sigstore.bundle.predicateType"]
    res = CliRunner().invoke(main, ["sign", "team/keyless:v1", "--identity-token",
                                    _token(lifetime=-3600), "--trust-config", str(sigstore_mock)])
    assert res.exit_code == 2 and "expired or malformed" in res.output
    assert len(store.referrers(kit.digest, SIGSTORE_BUNDLE_V03)) == 2
