"""Offline verification of real production Sigstore bundles (sigstore-conformance
``bundle-verify`` cases) through ``verify_bundle`` — the code path ``kitaudit verify``
uses — with the pinned production trusted root.

For message-signature bundles the "expected digest" is sha256 of the artifact
(``a.txt``), as upstream's runner does with ``sha256:<hex>``. The managed-key cases
are key-based bundles that also carry a Rekor entry (and, for the happy path, an RFC 3161
timestamp): their log entry (inclusion proof, checkpoint, inclusion promise, body
consistency) and timestamp are verified against the trusted root, not just the key
signature.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kitaudit.errors import KitauditError, VerificationError
from kitaudit.signing.keys import load_public_key
from kitaudit.signing.verify_bundle import SignerPolicy, load_trusted_root, verify_bundle

SHARED = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "sigstore"
if not SHARED.is_dir():  # CI clones the repo beside a copy of shared/
    SHARED = Path("/work/shared/conformance/sigstore")
CASES = SHARED / "sigstore-conformance" / "test" / "assets" / "bundle-verify"
PROD_ROOT = SHARED / "sigstore-python" / "trust" / "production" / "trusted_root.json"
IDENTITY = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
            ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
ISSUER = "https://token.actions.githubusercontent.com"

pytestmark = pytest.mark.skipif(not CASES.is_dir(), reason=f"conformance data missing: {CASES}")


def _case_names() -> list[str]:
    if not CASES.is_dir():
        return []
    return sorted(p.name for p in CASES.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def prod_root():
    return load_trusted_root(PROD_ROOT)


@pytest.fixture(scope="module")
def digest() -> str:
    return "sha256:" + hashlib.sha256((CASES / "a.txt").read_bytes()).hexdigest()


def _verify(case: Path, digest: str, prod_root, **policy_overrides):
    root = load_trusted_root(case / "trusted_root.json") \
        if (case / "trusted_root.json").exists() else prod_root
    if (case / "key.pub").exists():
        policy = SignerPolicy(keys=(load_public_key((case / "key.pub").read_bytes(),
                                                    source="key.pub"),), **policy_overrides)
    else:
        policy = SignerPolicy(identity=IDENTITY, issuer=ISSUER, **policy_overrides)
    return verify_bundle((case / "bundle.sigstore.json").read_bytes(), expected_digest=digest,
                         policy=policy, trusted_root=root, allow_message_signature=True)


def test_all_cases_present():
    assert len(_case_names()) == 10


@pytest.mark.parametrize("name", _case_names())
def test_case(name, digest, prod_root):
    case = CASES / name
    if name.endswith("_fail"):
        with pytest.raises(VerificationError) as exc:
            _verify(case, digest, prod_root)
        assert str(exc.value)
        return
    res = _verify(case, digest, prod_root)
    if (case / "key.pub").exists():
        assert res.kind == "key"
        assert res.tlog_verified is True
    else:
        assert res.kind == "keyless"
        assert (res.signer, res.issuer) == (IDENTITY, ISSUER)


def test_expected_failure_reasons(digest, prod_root):
    reasons = {}
    for name in _case_names():
        if name.endswith("_fail"):
            try:
                _verify(CASES / name, digest, prod_root)
            except VerificationError as err:
                reasons[name] = str(err)
    assert "invalid signature" in reasons["dsse-invalid-sig_fail"]
    assert "payload hash" in reasons["dsse-mismatch-envelope_fail"]
    assert "signatures do not match" in reasons["dsse-mismatch-sig_fail"]
    assert "Signature is invalid" in reasons["signature-mismatch_fail"]
    assert "SET" in reasons["set-invalid-signature_fail"]
    assert "not a valid PEM public key" in reasons["managed-key-wrong-key_fail"]


def test_dsse_statement_and_subject(digest, prod_root):
    res = _verify(CASES / "happy-path-intoto-in-dsse-v3", digest, prod_root)
    assert res.predicate_type == "https://slsa.dev/provenance/v1"
    assert res.statement is not None and res.statement.subject_digests == (digest,)
    with pytest.raises(VerificationError, match="does not match the expected digest"):
        _verify(CASES / "happy-path-intoto-in-dsse-v3", "sha256:" + "0" * 64, prod_root)


def test_message_signature_wrong_digest(prod_root):
    with pytest.raises(VerificationError):
        _verify(CASES / "happy-path-v0.3", "sha256:" + "0" * 64, prod_root)


def test_message_signature_rejected_for_images(digest, prod_root):
    """cosign rejects message-signature bundles for images; so does the default."""
    with pytest.raises(VerificationError, match="message signature"):
        verify_bundle((CASES / "happy-path-v0.3" / "bundle.sigstore.json").read_bytes(),
                      expected_digest=digest, trusted_root=prod_root,
                      policy=SignerPolicy(identity=IDENTITY, issuer=ISSUER))


@pytest.mark.parametrize("kw", [
    {"identity": "https://github.com/someone/else"},
    {"issuer": "https://accounts.google.com"},
    {"identity": None, "identity_regexp": r"^https://github\.com/attacker/"},
    {"issuer": None, "issuer_regexp": r"gitlab"},
])
def test_identity_policy_denies(kw, digest, prod_root):
    pol = {"identity": IDENTITY, "issuer": ISSUER, **kw}
    with pytest.raises(VerificationError, match=r"identity|issuer"):
        verify_bundle((CASES / "happy-path-intoto-in-dsse-v3" / "bundle.sigstore.json")
                      .read_bytes(), expected_digest=digest, trusted_root=prod_root,
                      policy=SignerPolicy(**pol))


def test_identity_regexps_accept(digest, prod_root):
    res = verify_bundle((CASES / "happy-path-intoto-in-dsse-v3" / "bundle.sigstore.json")
                        .read_bytes(), expected_digest=digest, trusted_root=prod_root,
                        policy=SignerPolicy(identity_regexp=r"^https://github\.com/sigstore-",
                                            issuer_regexp=r"token\.actions"))
    assert res.signer == IDENTITY


def test_keyless_without_trusted_root(digest):
    with pytest.raises(KitauditError, match="trusted root") as exc:
        verify_bundle((CASES / "happy-path-intoto-in-dsse-v3" / "bundle.sigstore.json")
                      .read_bytes(), expected_digest=digest,
                      policy=SignerPolicy(identity=IDENTITY, issuer=ISSUER))
    assert exc.value.exit_code == 2


def test_managed_key_timestamp_verified(digest, prod_root):
    res = _verify(CASES / "managed-key-happy-path", digest, prod_root)
    assert res.tlog_verified and len(res.timestamps) == 1
    assert res.timestamps[0].year == 2025


def test_managed_key_log_checked_against_root(digest, prod_root, tmp_path):
    """The production Rekor entry does not verify against the staging trusted root, and a
    tampered log body is caught: the tlog check is real, not just the key signature."""
    case = CASES / "managed-key-happy-path"
    key = load_public_key((case / "key.pub").read_bytes())
    bundle = (case / "bundle.sigstore.json").read_bytes()
    staging = load_trusted_root(CASES / "managed-key-and-trusted-root" / "trusted_root.json")
    doc = json.loads(bundle)
    doc["verificationMaterial"].pop("timestampVerificationData")
    with pytest.raises(VerificationError, match="transparency log"):
        verify_bundle(doc, expected_digest=digest, policy=SignerPolicy(keys=(key,)),
                      trusted_root=staging, allow_message_signature=True)
    doc = json.loads(bundle)
    doc["verificationMaterial"]["tlogEntries"][0]["integratedTime"] = "1766077480"
    with pytest.raises(VerificationError, match="transparency log"):
        verify_bundle(doc, expected_digest=digest, policy=SignerPolicy(keys=(key,)),
                      trusted_root=prod_root, allow_message_signature=True)
    # Without a trusted root the key signature still verifies, but the log is reported
    # as not checked, and require_tlog turns that into a failure.
    res = verify_bundle(bundle, expected_digest=digest, policy=SignerPolicy(keys=(key,)),
                        allow_message_signature=True)
    assert res.tlog_verified is False
    with pytest.raises(VerificationError, match="transparency-log"):
        verify_bundle(bundle, expected_digest=digest,
                      policy=SignerPolicy(keys=(key,), require_tlog=True),
                      allow_message_signature=True)


def test_packaged_root_is_the_pinned_one():
    from kitaudit.signing import verify_bundle as vb

    assert vb._DATA_ROOT.read_bytes() == PROD_ROOT.read_bytes()
    load_trusted_root(offline=True)  # loads without network
