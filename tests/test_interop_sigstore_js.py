"""Interoperability: kitaudit's Sigstore bundles verified by sigstore-js.

An independent client reads and verifies what kitaudit writes: ``tests/interop_js/verify.mjs``
runs the verification pipeline of the npm package ``sigstore`` (``bundleFromJSON`` from
``@sigstore/bundle``, then ``toSignedEntity`` / ``toTrustMaterial`` / ``Verifier`` from
``@sigstore/verify`` 3.1.1, the verifier ``sigstore`` 4.1.1 wraps) with the trust material
given offline, and also compares the in-toto statement subject with the manifest digest
(sigstore-js does not look inside a DSSE payload). Install it with
``npm ci --prefix tests/interop_js``; the tests skip when node or the packages are missing.

Each test runs at most one node process (a batch of verification jobs).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kitaudit.mediatypes import SIGSTORE_BUNDLE_V03
from kitaudit.pack import pack
from kitaudit.signing import keys
from kitaudit.signing.attach import sign_local
from kitaudit.signing.signer import KeySigner
from kitaudit.store import Store
from tests.test_signing_keyless import ISSUER, SUB, _token, sigstore_mock  # noqa: F401

JS_DIR = Path(__file__).resolve().parent / "interop_js"
NODE = shutil.which("node")
REPO = Path(__file__).resolve().parents[1]
PROD_ROOT = REPO / "kitaudit" / "data" / "trusted_root.json"
SHARED = REPO.parent / "shared" / "conformance" / "sigstore"
if not SHARED.is_dir():  # CI clones the repo beside a copy of shared/
    SHARED = Path("/work/shared/conformance/sigstore")
CASES = SHARED / "sigstore-conformance" / "test" / "assets" / "bundle-verify"
CONF_IDENTITY = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
                 ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
CONF_ISSUER = "https://token.actions.githubusercontent.com"
SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"
BOM_PREDICATE = "https://cyclonedx.org/bom"
# Key-based air-gapped bundles carry no transparency-log entry, no RFC 3161 timestamp and
# no certificate (so no SCT) by design: those three checks are switched off for them.
NO_LOG = {"tlogThreshold": 0, "ctlogThreshold": 0, "timestampThreshold": 0}

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed: sigstore-js interop "
                       "tests need Node 20 (scripts/setup --test-tools)"),
    pytest.mark.skipif(not (JS_DIR / "node_modules" / "@sigstore" / "verify").is_dir(),
                       reason="npm packages for sigstore-js missing: run "
                       "`npm ci --prefix tests/interop_js`"),
]


def run_js(jobs: list[dict[str, Any]], tmp: Path) -> list[dict[str, Any]]:
    """Verify a batch of bundles with sigstore-js (one node process); one verdict per job."""
    batch = tmp / f"jobs-{len(list(tmp.glob('jobs-*.json')))}.json"
    batch.write_text(json.dumps([{k: str(v) for k, v in j.items()} for j in jobs]))
    proc = subprocess.run([NODE, str(JS_DIR / "verify.mjs"), "--batch", str(batch)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    verdicts = json.loads(proc.stdout)
    assert len(verdicts) == len(jobs)
    assert proc.returncode == (0 if all(v["verified"] for v in verdicts) else 1)
    return verdicts


def _project(root: Path) -> Path:
    ctx = root / "project"
    (ctx / "model").mkdir(parents=True)
    (ctx / "model" / "weights.bin").write_bytes(b"\x00\x01weights" * 64)
    (ctx / "data.csv").write_text("x,y\n1,2\n")
    (ctx / "Kitfile").write_text(
        "manifestVersion: 1.0.0\n"
        "package:\n  name: interop\n  version: 1.0.0\n  license: Apache-2.0\n"
        "model:\n  name: interop-model\n  path: model\n  license: Apache-2.0\n"
        "datasets:\n  - name: tiny\n    path: data.csv\n")
    return ctx


def _signed_kit(root: Path, signer: Any) -> tuple[str, dict[str, bytes]]:
    """Pack a small ModelKit (with its ML-BOM) into a fresh store, sign it there, and
    return (manifest digest, {predicateType: bundle bytes}) read back from the referrers."""
    store = Store(root / "store")
    result = pack(_project(root), tags=["interop/model:v1"], store=store)
    assert result.sbom_digest, "pack attached no ML-BOM"
    signed = sign_local(store, "interop/model:v1", signer)
    assert signed.subject == result.digest and signed.sbom_signed
    bundles: dict[str, bytes] = {}
    for desc in store.referrers(result.digest, SIGSTORE_BUNDLE_V03):
        _, manifest, _ = store.get_manifest(desc["digest"])
        assert manifest["subject"]["digest"] == result.digest
        assert len(manifest["layers"]) == 1
        ptype = manifest["annotations"]["dev.sigstore.bundle.predicateType"]
        bundles[ptype] = store.read_blob(manifest["layers"][0]["digest"])
    assert set(bundles) == {SIGN_PREDICATE, BOM_PREDICATE}
    return result.digest, bundles


_GENTIME = re.compile(rb"\x18[\x0f-\x13](\d{14}(?:\.\d+)?Z)")


def _gentimes(bundle: bytes) -> list[bytes]:
    """The GeneralizedTime values inside a bundle's RFC 3161 timestamps."""
    doc = json.loads(bundle)
    stamps = doc["verificationMaterial"].get("timestampVerificationData", {}).get(
        "rfc3161Timestamps", [])
    out: list[bytes] = []
    for stamp in stamps:
        out += _GENTIME.findall(base64.b64decode(stamp["signedTimestamp"]))
    return out


def _js_parsable_gentime(bundle: bytes) -> bool:
    return all(re.fullmatch(rb"\d{14}(\.\d{3})?Z", t) for t in _gentimes(bundle))


def _tamper_payload(bundle: bytes) -> bytes:
    """The same bundle with one character of the signed statement changed."""
    doc = json.loads(bundle)
    stmt = base64.b64decode(doc["dsseEnvelope"]["payload"]).decode()
    i = stmt.index('"sha256":"') + len('"sha256":"')
    stmt = stmt[:i] + ("1" if stmt[i] != "1" else "2") + stmt[i + 1:]
    doc["dsseEnvelope"]["payload"] = base64.b64encode(stmt.encode()).decode()
    return json.dumps(doc).encode()


def _bundle_files(root: Path, bundles: dict[str, bytes]) -> dict[str, Path]:
    """The two bundles and a tampered copy of the signature bundle, as files."""
    contents = {"sign": bundles[SIGN_PREDICATE], "bom": bundles[BOM_PREDICATE],
                "tampered": _tamper_payload(bundles[SIGN_PREDICATE])}
    files = {}
    for name, data in contents.items():
        files[name] = root / f"{name}.sigstore.json"
        files[name].write_bytes(data)
    return files


@pytest.fixture(scope="module")
def key_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("interop-key")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KITAUDIT_HOME", str(root / "home"))
        priv, pub = keys.generate_key_pair("interop-pw")
        signer = KeySigner(keys.load_private_key(priv, password="interop-pw"))
        digest, bundles = _signed_kit(root, signer)
    (root / "cosign.pub").write_bytes(pub)
    _, other_pub = keys.generate_key_pair("other")
    (root / "other.pub").write_bytes(other_pub)
    files = _bundle_files(root, bundles)
    return {"root": root, "digest": digest, "bundles": bundles, "files": files,
            "pub": root / "cosign.pub", "other_pub": root / "other.pub",
            "hint": keys.public_key_hint(keys.load_public_key(pub))}


def test_key_bundles_verify_with_sigstore_js(key_world, tmp_path):
    """Both key-based bundles (cosign-sign statement and CycloneDX attestation) verify with
    sigstore-js against the public key, and their statement subject is the manifest.

    Checks switched off, and why: ``tlogThreshold=0``, ``timestampThreshold=0`` and
    ``ctlogThreshold=0`` — an air-gapped key-based bundle carries no Rekor entry, no RFC
    3161 timestamp and no certificate (hence no SCT) by design (cosign verifies the same
    bundles with ``--insecure-ignore-tlog``). What sigstore-js still checks: the bundle
    parses and validates as v0.3, the key is looked up by the bundle's hint, and the ECDSA
    signature over the DSSE PAE verifies. The last job shows the thresholds are what
    decides: with sigstore-js's defaults (1 each) the same bundle is refused for lacking
    a timestamp, so nothing here passes by accident.
    """
    w = key_world
    jobs = [{"bundle": w["files"][n], "key": w["pub"], "digest": w["digest"], **NO_LOG}
            for n in ("sign", "bom")]
    jobs.append({"bundle": w["files"]["sign"], "key": w["pub"], "digest": w["digest"]})
    sign, bom, defaults = run_js(jobs, tmp_path)
    for v, ptype in ((sign, SIGN_PREDICATE), (bom, BOM_PREDICATE)):
        assert v["verified"] and v["error"] is None, v
        assert v["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
        assert (v["content"], v["verificationMaterial"]) == ("dsseEnvelope", "publicKey")
        assert (v["tlogEntries"], v["rfc3161Timestamps"]) == (0, 0)
        assert v["bundleHint"] == v["keyHint"] == w["hint"] and v["hintMatchesKey"]
        st = v["statement"]
        assert st["type"] == "https://in-toto.io/Statement/v1"
        assert st["predicateType"] == ptype
        assert st["subjectDigests"] == [w["digest"].removeprefix("sha256:")]
        assert v["subjectMatches"] is True
    # The BOM in the attestation is the one stored with the ModelKit: Python's reading
    # of the same bytes agrees with what sigstore-js verified.
    payload = json.loads(base64.b64decode(
        json.loads(w["bundles"][BOM_PREDICATE])["dsseEnvelope"]["payload"]))
    assert payload["predicate"]["bomFormat"] == "CycloneDX"
    assert not defaults["verified"]
    assert defaults["error"]["code"] == "TIMESTAMP_ERROR", defaults["error"]


def test_key_bundles_rejected_when_tampered_or_wrong_key(key_world, tmp_path):
    """sigstore-js refuses: a bundle whose signed payload was changed (one character of
    the statement), the right bundle with another key, and (the subject check of
    verify.mjs) the right bundle for another manifest digest. Same thresholds as above
    (no tlog/timestamp/SCT: key-based bundles carry none)."""
    w = key_world
    other_digest = "sha256:" + hashlib.sha256(b"another manifest").hexdigest()
    tampered, wrong_key, wrong_subject = run_js([
        {"bundle": w["files"]["tampered"], "key": w["pub"], "digest": w["digest"], **NO_LOG},
        {"bundle": w["files"]["sign"], "key": w["other_pub"], "digest": w["digest"], **NO_LOG},
        {"bundle": w["files"]["sign"], "key": w["pub"], "digest": other_digest, **NO_LOG},
    ], tmp_path)
    for v in (tampered, wrong_key):
        assert not v["verified"] and not v["signatureVerified"]
        assert v["error"]["code"] == "SIGNATURE_ERROR", v["error"]
    assert wrong_key["hintMatchesKey"] is False
    assert wrong_subject["signatureVerified"] and not wrong_subject["verified"]
    assert wrong_subject["subjectMatches"] is False
    assert wrong_subject["error"]["code"] == "SUBJECT_ERROR"


@pytest.fixture(scope="module")
def keyless_world(tmp_path_factory, sigstore_mock):  # noqa: F811 - fixture
    from kitaudit.signing.keyless import KeylessSigner

    # @sigstore/core 3.2.1 parses GeneralizedTime only with exactly three fractional
    # digits (RE_TIME_LONG_YEAR, `(\.\d{3})?`), but DER drops trailing zeros
    # (X.690 11.7.3), so the mock TSA's "...29.71Z" (one timestamp in ten) is valid DER
    # that sigstore-js refuses with "invalid time". That is a limitation of the JS
    # verifier, not of the bundle: sign again (a new timestamp) until both timestamps
    # have a form it parses; test_sigstore_js_time_parser_limitation pins the cause.
    for attempt in range(8):
        root = tmp_path_factory.mktemp("interop-keyless")
        signer = KeylessSigner(_token(), trust_config=sigstore_mock)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KITAUDIT_HOME", str(root / "home"))
            try:
                digest, bundles = _signed_kit(root, signer)
            finally:
                signer.close()
        if all(_js_parsable_gentime(b) for b in bundles.values()):
            break
    else:
        pytest.fail(f"{attempt + 1} signings in a row had timestamps sigstore-js cannot parse")
    files = _bundle_files(root, bundles)
    return {"digest": digest, "files": files, "trust": sigstore_mock}


def test_keyless_bundles_verify_with_sigstore_js(keyless_world, tmp_path):
    """Bundles signed by KeylessSigner against the loopback ``@sigstore/mock`` Fulcio,
    Rekor and TSA (the one mock: the real services cannot run here) verify with
    sigstore-js using the trusted root the mock describes (the ClientTrustConfig the
    fixture writes) and the test token's identity and issuer, with sigstore-js's default
    thresholds: one Rekor entry (inclusion proof/SET and body), one embedded SCT, one
    verified timestamp. Refused: another identity, another issuer, a changed payload, and
    the production root (its TSA does not sign the mock's timestamps) and the mock's root
with production's Fulcio CAs in place of the mock's (the certificate does not chain)."""
    w = keyless_world
    mixed = json.loads(Path(w["trust"]).read_text())["trustedRoot"]
    mixed["certificateAuthorities"] = json.loads(PROD_ROOT.read_text())["certificateAuthorities"]
    other_ca_root = tmp_path / "mock-with-production-fulcio.json"
    other_ca_root.write_text(json.dumps(mixed))
    ok = [{"bundle": w["files"][n], "trustedRoot": w["trust"], "identity": SUB,
           "issuer": ISSUER, "digest": w["digest"]} for n in ("sign", "bom")]
    bad = [
        {**ok[0], "identity": "someone@else.example"},
        {**ok[0], "issuer": "https://other.example"},
        {**ok[0], "identity": SUB[:-1]},  # a prefix: the identity is matched exactly
        {**ok[0], "bundle": w["files"]["tampered"]},
        {**ok[0], "trustedRoot": PROD_ROOT},
        {**ok[0], "trustedRoot": other_ca_root},
    ]
    verdicts = run_js(ok + bad, tmp_path)
    for v, ptype in zip(verdicts[:2], (SIGN_PREDICATE, BOM_PREDICATE), strict=True):
        assert v["verified"] and v["error"] is None, json.dumps(v)[:2000]
        assert v["thresholds"] == {"tlogThreshold": 1, "ctlogThreshold": 1,
                                   "timestampThreshold": 1}
        assert (v["content"], v["verificationMaterial"]) == ("dsseEnvelope", "certificate")
        assert v["tlogEntries"] == 1 and v["rfc3161Timestamps"] == 1
        assert v["signer"] == {"subjectAlternativeName": SUB, "issuer": ISSUER}
        assert v["statement"]["predicateType"] == ptype
        assert v["statement"]["subjectDigests"] == [w["digest"].removeprefix("sha256:")]
    wrong_id, wrong_iss, prefix_id, tampered, prod, other_ca = verdicts[2:]
    for v in (wrong_id, wrong_iss, prefix_id):
        assert not v["verified"] and v["error"]["code"] == "UNTRUSTED_SIGNER_ERROR", v
    assert not tampered["verified"] and tampered["error"]["name"] == "VerificationError"
    # The first check to fail under the production root is the mock TSA's timestamp;
    # with the mock's TSA and logs but production's Fulcio, the certificate chain.
    assert not prod["verified"] and prod["error"]["code"] == "TIMESTAMP_ERROR", prod
    assert not other_ca["verified"] and other_ca["error"]["code"] == "CERTIFICATE_ERROR"
    assert not tampered["verified"] and tampered["error"]["code"] == "TLOG_BODY_ERROR"


@pytest.mark.skipif(not CASES.is_dir(), reason=f"conformance data missing: {CASES}")
def test_conformance_bundles_control(tmp_path):
    """Control that the JS side is set up right: production bundles from
    sigstore-conformance verify with sigstore-js and kitaudit's pinned production trusted
    root (default thresholds), and a corrupted one is refused. ``managed-key-happy-path``
    is a key-based bundle that does carry a Rekor entry and a timestamp: with the
    thresholds at 1 sigstore-js verifies those too, so the key path is not only
    exercised with the log checks off."""
    art = CASES / "a.txt"
    cert = {"trustedRoot": PROD_ROOT, "identity": CONF_IDENTITY, "issuer": CONF_ISSUER,
            "artifact": art}
    msg, dsse, managed, broken = run_js([
        {"bundle": CASES / "happy-path-v0.3" / "bundle.sigstore.json", **cert},
        {"bundle": CASES / "happy-path-intoto-in-dsse-v3" / "bundle.sigstore.json", **cert},
        {"bundle": CASES / "managed-key-happy-path" / "bundle.sigstore.json",
         "trustedRoot": PROD_ROOT, "key": CASES / "managed-key-happy-path" / "key.pub",
         "artifact": art},
        {"bundle": CASES / "dsse-invalid-sig_fail" / "bundle.sigstore.json", **cert},
    ], tmp_path)
    for v in (msg, dsse, managed):
        assert v["verified"] and v["error"] is None, v
    assert msg["content"] == "messageSignature"
    assert dsse["content"] == "dsseEnvelope" and dsse["subjectMatches"] is True
    assert dsse["statement"]["subjectDigests"] == [hashlib.sha256(art.read_bytes()).hexdigest()]
    assert managed["verificationMaterial"] == "publicKey" and managed["hintMatchesKey"]
    assert managed["tlogEntries"] == 1 and managed["rfc3161Timestamps"] == 1
    assert msg["signer"]["issuer"] == CONF_ISSUER
    assert not broken["verified"]


def test_sigstore_js_time_parser_limitation():
    """Pins why the keyless fixture may sign again: @sigstore/core's GeneralizedTime
    pattern takes exactly three fractional digits, while DER omits trailing zeros."""
    parse_js = (Path(__file__).parent / "interop_js" / "node_modules" / "@sigstore" / "core" /
                "dist" / "asn1" / "parse.js")
    if not parse_js.is_file():
        pytest.skip("npm packages missing: npm ci --prefix tests/interop_js")
    assert r"(\.\d{3})?Z$/" in parse_js.read_text()
