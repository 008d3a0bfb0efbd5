"""Keyless ``kitaudit verify``: identities and issuers, offline trust roots.

* ModelKits packed with ``kitaudit.pack.pack`` and signed keyless by sigstore-python
  against the loopback Sigstore of ``tests/sigstore_mock`` (the one mock: Fulcio, Rekor
  and a TSA cannot run here for real; see test_signing_keyless.py), then verified by
  ``kitaudit.verify.verify`` against the trusted root that server describes, with no
  other network access.
* Real production bundles (sigstore-conformance, made by Sigstore's public-good
  instance) wrapped in cosign v3 referrer manifests and verified through the same
  referrer path ``verify`` uses (``check_referrers``) with the pinned production trusted
  root, offline. They are over a text file, not a ModelKit manifest, so they go through
  signature verification, not the ModelKit checks.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kitaudit.mediatypes import SIGSTORE_BUNDLE_V03
from kitaudit.signing.attach import sign_local
from kitaudit.signing.cosign import referrer_manifest
from kitaudit.signing.keyless import KeylessSigner
from kitaudit.store import Store
from kitaudit.verify import FetchedReferrer, VerifyOptions, compile_options, verify
from kitaudit.verify.signatures import check_referrers
from tests.test_signing_keyless import ISSUER, SUB, _token, sigstore_mock  # noqa: F401
from tests.test_verify import BASELINE, make_kit

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SHARED = Path("/work/shared/conformance/sigstore")
_near = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "sigstore"
if _near.is_dir():
    SHARED = _near
CASES = SHARED / "sigstore-conformance" / "test" / "assets" / "bundle-verify"
PROD_ROOT = SHARED / "sigstore-python" / "trust" / "production" / "trusted_root.json"
PROD_IDENTITY = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-"
                 "beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
PROD_ISSUER = "https://token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def keyless_kit(tmp_path_factory, sigstore_mock):  # noqa: F811
    work = tmp_path_factory.mktemp("verify-keyless")
    store = Store(work / "store")
    ref = "localhost/verify/keyless:v1"
    digest = make_kit(work, store, ref, seed="keyless")
    signer = KeylessSigner(_token(), trust_config=sigstore_mock)
    try:
        sign_local(store, ref, signer, signature_format="legacy")
    finally:
        signer.close()
    return store, ref, digest, str(sigstore_mock)


def kopts(root: str, **kw) -> VerifyOptions:
    base = {"certificate_identity": SUB, "certificate_oidc_issuer": ISSUER,
            "trusted_root": root, "offline": True, "now": NOW}
    base.update(kw)
    return VerifyOptions(**base)


def test_keyless_pass(keyless_kit):
    store, ref, digest, root = keyless_kit
    res = verify(ref, kopts(root, policies=[BASELINE]), store=store)
    assert res.decision == "pass", res.problems
    assert res.digest == digest
    sigs = res.input_document["signatures"]
    assert {(s["kind"], s["identity"], s["issuer"]) for s in sigs} == {("keyless", SUB, ISSUER)}
    assert {s["source"] for s in sigs} == {"referrer", "legacy-tag"}  # bundle + .sig
    assert all(s["created"].endswith("Z") for s in sigs)
    assert res.input_document["sbom"]["signed_by"] == [
        {"kind": "keyless", "identity": SUB, "issuer": ISSUER, "key_id": ""}]
    assert all(s["tlogVerified"] for s in res.signatures)


@pytest.mark.parametrize("kw", [
    {"certificate_identity": None, "certificate_identity_regexp": r"^ci-bot@test\.example$"},
    {"certificate_oidc_issuer": None, "certificate_oidc_issuer_regexp": r"^https://issuer\."},
])
def test_keyless_regexp_pass(keyless_kit, kw):
    store, ref, _, root = keyless_kit
    assert verify(ref, kopts(root, **kw), store=store).decision == "pass"


@pytest.mark.parametrize("kw, needle", [
    ({"certificate_identity": "someone-else@test.example"}, "does not match"),
    ({"certificate_identity": None, "certificate_identity_regexp": "^ci-bot@other"},
     "does not match"),
    ({"certificate_oidc_issuer": "https://accounts.google.com"}, "issuer"),
    ({"certificate_oidc_issuer": None, "certificate_oidc_issuer_regexp": "google"}, "issuer"),
])
def test_keyless_wrong_identity_or_issuer_denied(keyless_kit, kw, needle):
    store, ref, _, root = keyless_kit
    res = verify(ref, kopts(root, **kw), store=store)
    assert (res.decision, res.exit_code) == ("deny", 1)
    assert res.input_document["signatures"] == []
    assert all(needle in s["error"] for s in res.signatures)
    assert not res.sbom["verified"]


def test_keyless_needs_both_constraints(keyless_kit):
    store, ref, _, root = keyless_kit
    res = verify(ref, kopts(root, certificate_oidc_issuer=None), store=store)
    assert res.exit_code == 2 and "issuer constraint" in res.problems[0]


def test_keyless_other_trust_root_denied(keyless_kit):
    """Offline with kitaudit's pinned production root: the mock's certificates do not
    chain to it, so nothing verifies."""
    store, ref, _, _root = keyless_kit
    res = verify(ref, kopts(None, trusted_root=None), store=store)
    assert res.decision == "deny"
    assert all(not s["verified"] for s in res.signatures)


def test_key_only_ignores_keyless(keyless_kit, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    store, ref, _, _root = keyless_kit
    pub = tmp_path / "k.pub"
    pub.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    res = verify(ref, VerifyOptions(keys=[str(pub)]), store=store)
    assert res.decision == "deny"
    assert all("no keyless signer is accepted" in s["error"] for s in res.signatures)


# ---------------------------------------------------------------------- production bundles
def _wrap(case: str, digest: str) -> FetchedReferrer:
    bundle = (CASES / case / "bundle.sigstore.json").read_bytes()
    subject = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 1,
               "digest": digest}
    raw = referrer_manifest(bundle, subject, "https://slsa.dev/provenance/v1")
    man = json.loads(raw)
    desc = {"mediaType": man["mediaType"], "artifactType": SIGSTORE_BUNDLE_V03,
            "digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "size": len(raw)}
    return FetchedReferrer(desc, man, {man["layers"][0]["digest"]: bundle})


@pytest.mark.skipif(not CASES.is_dir(), reason="conformance data missing")
def test_production_bundles_offline_through_verify_path():
    digest = "sha256:" + hashlib.sha256((CASES / "a.txt").read_bytes()).hexdigest()
    # --offline without --trusted-root: kitaudit's pinned production root (no network)
    comp = compile_options(VerifyOptions(certificate_identity=PROD_IDENTITY,
                                         certificate_oidc_issuer=PROD_ISSUER, offline=True))
    assert "pinned" in comp.trust_source
    ok = check_referrers([_wrap("happy-path-intoto-in-dsse-v3", digest)], digest,
                         comp.signer_policy, comp.trusted_root)
    [att] = ok.attestations
    assert att.verified, att.error
    assert (att.kind, att.identity, att.issuer) == ("keyless", PROD_IDENTITY, PROD_ISSUER)
    assert att.predicate_type == "https://slsa.dev/provenance/v1"
    assert att.created.startswith("2024-12-16")
    for case in ("dsse-invalid-sig_fail", "dsse-mismatch-envelope_fail",
                 "dsse-mismatch-sig_fail", "happy-path-v0.3"):  # last: message signature
        bad = check_referrers([_wrap(case, digest)], digest, comp.signer_policy,
                              comp.trusted_root)
        assert not (bad.attestations + bad.signatures)[0].verified, case
    # the same valid bundle over another digest, or with another identity, is refused
    other = "sha256:" + "0" * 64
    assert not check_referrers([_wrap("happy-path-intoto-in-dsse-v3", digest)], other,
                               comp.signer_policy, comp.trusted_root).attestations[0].verified
    wrong = compile_options(VerifyOptions(certificate_identity="x@example.com",
                                          certificate_oidc_issuer=PROD_ISSUER,
                                          trusted_root=str(PROD_ROOT)))
    res = check_referrers([_wrap("happy-path-intoto-in-dsse-v3", digest)], digest,
                          wrong.signer_policy, wrong.trusted_root).attestations[0]
    assert not res.verified and "does not match" in res.error


def test_keyless_on_registry(tmp_path, sigstore_mock, registry):  # noqa: F811
    """Signed keyless locally (bundles + legacy tags), pushed (push carries the
    referrers, not the legacy tags), verified from the registry."""
    from kitaudit.registry.transfer import push

    store = Store(tmp_path / "store")
    ref = f"{registry.host}/verify/keyless:v1"
    digest = make_kit(tmp_path, store, ref, seed="keyless-remote")
    signer = KeylessSigner(_token(), trust_config=sigstore_mock)
    try:
        sign_local(store, ref, signer)
    finally:
        signer.close()
    push(ref, store=store, progress="none", **registry.net)
    res = verify(ref, kopts(str(sigstore_mock)), remote=True, net=registry.net)
    assert (res.decision, res.digest, res.location) == ("pass", digest, "remote"), res.problems
    assert [(s["identity"], s["source"]) for s in res.signatures] == [(SUB, "fallback-tag")]
    res = verify(ref, kopts(str(sigstore_mock), certificate_identity="other@test.example"),
                 remote=True, net=registry.net)
    assert res.decision == "deny"
