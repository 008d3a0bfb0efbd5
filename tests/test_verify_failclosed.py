"""Fail closed, by property: whatever referrers an attacker can push next to a ModelKit
— arbitrary JSON, bundle-shaped documents with statements over the right digest but
made-up signatures and key hints, legacy ``.sig``/``.att`` layers with made-up
signatures — ``verify_fetched`` never raises and never passes, and nothing unverified
reaches the input document. The ModelKit is a real pack (with its ML-BOM); the key is
real; only the referrers are generated (hypothesis).
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kitaudit.mediatypes import (
    COSIGN_SIMPLESIGNING,
    CYCLONEDX_JSON,
    DSSE_ENVELOPE,
    OCI_MANIFEST,
    SIGSTORE_BUNDLE_V03,
)
from kitaudit.store import Store
from kitaudit.verify import FetchedReferrer, VerifyOptions, compile_options, verify_fetched
from tests.test_verify import make_kit

PREDICATES = ["https://sigstore.dev/cosign/sign/v1", "https://cyclonedx.org/bom",
              "https://slsa.dev/provenance/v1", ""]


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    work = tmp_path_factory.mktemp("failclosed")
    store = Store(work / "store")
    ref = "localhost/verify/failclosed:v1"
    digest = make_kit(work, store, ref, seed="fc")
    _, manifest, raw = store.get_manifest(ref)
    config = store.read_blob(manifest["config"]["digest"])
    bom = json.loads(store.read_blob(json.loads(store.read_blob(
        store.referrers(digest, CYCLONEDX_JSON)[0]["digest"]))["layers"][0]["digest"]))
    priv = ec.generate_private_key(ec.SECP256R1())
    pub = work / "k.pub"
    pub.write_bytes(priv.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    compiled = compile_options(VerifyOptions(keys=[str(pub)], require_sbom=False))
    from kitaudit.signing import keys
    from kitaudit.signing.signer import KeySigner, sign_modelkit

    [real] = sign_modelkit(digest, {"mediaType": OCI_MANIFEST, "size": len(raw),
                                    "digest": digest}, sbom=None,
                           signer=KeySigner(keys.LoadedKey(priv, "k.key")))
    genuine = FetchedReferrer({"digest": real.manifest_digest,
                               "artifactType": SIGSTORE_BUNDLE_V03}, real.manifest,
                              dict(real.blobs))
    return ref, digest, raw, config, bom, compiled, genuine


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _desc(media_type: str, data: bytes, **extra) -> dict:
    return {"mediaType": media_type, "size": len(data),
            "digest": "sha256:" + hashlib.sha256(data).hexdigest(), **extra}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8)


@st.composite
def referrers(draw, digest: str, bom: dict) -> FetchedReferrer:
    kind = draw(st.sampled_from(["random", "bundle", "legacy-sig", "legacy-att", "bom"]))
    subject = {"mediaType": OCI_MANIFEST, "size": 10,
               "digest": draw(st.sampled_from([digest, "sha256:" + "0" * 64]))}
    predicate_type = draw(st.sampled_from(PREDICATES))
    statement = json.dumps({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": subject["digest"].split(":")[1]}}],
        "predicateType": predicate_type,
        "predicate": bom if "cyclonedx" in predicate_type else {}}).encode()
    sig = draw(st.binary(min_size=0, max_size=72))
    if kind == "random":
        manifest = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
        blob = draw(st.binary(max_size=64))
        return FetchedReferrer({"digest": "sha256:" + "1" * 64}, manifest,
                               {"sha256:" + hashlib.sha256(blob).hexdigest(): blob},
                               legacy=draw(st.booleans()))
    if kind in ("bundle", "bom"):
        material = draw(st.sampled_from([
            {"publicKey": {"hint": _b64(draw(st.binary(min_size=32, max_size=32)))}},
            {"publicKey": {}}, {"certificate": {"rawBytes": _b64(sig)}}, {}]))
        bundle = json.dumps({"mediaType": SIGSTORE_BUNDLE_V03,
                             "verificationMaterial": material,
                             "dsseEnvelope": {"payload": _b64(statement),
                                              "payloadType": "application/vnd.in-toto+json",
                                              "signatures": [{"sig": _b64(sig)}]}}).encode()
        media = SIGSTORE_BUNDLE_V03 if kind == "bundle" else CYCLONEDX_JSON
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": media,
                    "layers": [_desc(media, bundle)], "subject": subject,
                    "annotations": {"dev.sigstore.bundle.predicateType": predicate_type}}
        return FetchedReferrer({"digest": "sha256:" + "2" * 64, "artifactType": media},
                               manifest, {manifest["layers"][0]["digest"]: bundle})
    if kind == "legacy-sig":
        payload = json.dumps({"critical": {"identity": {"docker-reference": "localhost/x"},
                                           "image": {"docker-manifest-digest":
                                                     subject["digest"]},
                                           "type": "cosign container image signature"},
                              "optional": None}).encode()
        layer = _desc(COSIGN_SIMPLESIGNING, payload,
                      annotations={"dev.cosignproject.cosign/signature": _b64(sig)})
        return FetchedReferrer({"digest": "sha256:" + "3" * 64},
                               {"schemaVersion": 2, "layers": [layer]},
                               {layer["digest"]: payload}, legacy=True, source="legacy-tag")
    env = json.dumps({"payload": _b64(statement), "payloadType": "application/vnd.in-toto+json",
                      "signatures": [{"sig": _b64(sig)}]}).encode()
    layer = _desc(DSSE_ENVELOPE, env, annotations={"predicateType": predicate_type})
    return FetchedReferrer({"digest": "sha256:" + "4" * 64},
                           {"schemaVersion": 2, "layers": [layer]}, {layer["digest"]: env},
                           legacy=True, source="legacy-tag")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_forged_referrers_never_pass(kit, data):
    ref, digest, raw, config, bom, compiled, _ = kit
    refs = data.draw(st.lists(referrers(digest, bom), max_size=4))
    res = verify_fetched(reference=ref, digest=digest, manifest=raw, config_bytes=config,
                         referrers=refs, compiled=compiled)
    # deny, not error: a bad referrer is recorded, it does not stop the verification
    assert (res.decision, res.exit_code) == ("deny", 1), res.problems
    assert res.input_document["signatures"] == []
    assert res.input_document["attestations"] == []
    assert res.input_document["sbom"]["verified"] is False
    assert res.input_document["sbom"]["licenses"] == []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_genuine_signature_among_forged_ones_passes(kit, data):
    """The counterpart: the same noise does not hide a real signature."""
    ref, digest, raw, config, bom, compiled, genuine = kit
    refs = data.draw(st.lists(referrers(digest, bom), max_size=3))
    refs.insert(data.draw(st.integers(0, len(refs))), genuine)
    res = verify_fetched(reference=ref, digest=digest, manifest=raw, config_bytes=config,
                         referrers=refs, compiled=compiled)
    assert res.decision == "pass", res.problems
    assert len(res.input_document["signatures"]) == 1
