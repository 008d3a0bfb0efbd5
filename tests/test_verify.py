"""``kitaudit verify`` end to end with real parts: ModelKits packed with
``kitaudit.pack.pack`` (real ML-BOMs), signed with ``kitaudit.signing`` (ECDSA keys made
here), pushed with ``kitaudit.registry.transfer.push`` to Debian's docker-registry
(distribution 2.8: no referrers API, so the fallback tag), and verified through the
public API and the CLI. Keyless cases are in ``test_verify_keyless.py``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import ec

from kitaudit import mlbom
from kitaudit._cli import main
from kitaudit.mediatypes import SIGSTORE_BUNDLE_V03
from kitaudit.pack import pack
from kitaudit.registry.transfer import open_client, push
from kitaudit.registry.transport import NetOptions
from kitaudit.signing import keys
from kitaudit.signing.attach import attach_local, sign_local
from kitaudit.signing.signer import KeySigner, sign_modelkit
from kitaudit.store import Store
from kitaudit.verify import (
    FetchedReferrer,
    VerifyOptions,
    compile_options,
    verify,
    verify_fetched,
)

ROOT = Path(__file__).resolve().parents[1]
BASELINE = str(ROOT / "policies" / "baseline.yaml")
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

KITFILE = """manifestVersion: 1.0.0
package:
  name: {name}
  version: 1.0.0
  license: Apache-2.0
model:
  name: {name}-model
  path: model.bin
  license: Apache-2.0
datasets:
  - name: train
    path: data/train.csv
{dataset_license}docs:
  - path: README.md
"""
CARD = ("---\nlicense: apache-2.0\npipeline_tag: text-classification\n---\n# Model\n"
        "## Intended uses\nTesting verify.\n## Limitations\nTiny.\n")


class Keys:
    def __init__(self, tmp: Path, name: str) -> None:
        priv = ec.generate_private_key(ec.SECP256R1())
        self.signer = KeySigner(keys.LoadedKey(priv, f"{name}.key"))
        from cryptography.hazmat.primitives import serialization

        self.pub = tmp / f"{name}.pub"
        self.pub.write_bytes(priv.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("verify")


@pytest.fixture(scope="module")
def alice(work) -> Keys:
    return Keys(work, "alice")


@pytest.fixture(scope="module")
def mallory(work) -> Keys:
    return Keys(work, "mallory")


@pytest.fixture(scope="module")
def store(work) -> Store:
    return Store(work / "store")


def make_kit(work: Path, store: Store, ref: str, *, name: str = "demo",
             dataset_license: bool = True, sbom: bool = True, seed: str = "",
             modelpack: bool = False) -> str:
    ctx = work / f"ctx-{name}-{seed}-{abs(hash(ref))}"
    (ctx / "data").mkdir(parents=True, exist_ok=True)
    lic = "    license: CC-BY-4.0\n" if dataset_license else ""
    (ctx / "Kitfile").write_text(KITFILE.format(name=name, dataset_license=lic))
    (ctx / "model.bin").write_bytes(f"weights {name} {seed}".encode() * 50)
    (ctx / "data" / "train.csv").write_text(f"a,b\n1,{seed}\n")
    (ctx / "README.md").write_text(CARD)
    return pack(ctx, tags=[ref], store=store, sbom=sbom, use_model_pack=modelpack).digest


def opts(*pubs: Path, **kw) -> VerifyOptions:
    return VerifyOptions(keys=[str(p) for p in pubs], now=NOW, **kw)


@pytest.fixture(scope="module")
def signed_local(work, store, alice) -> tuple[str, str]:
    ref = "localhost/verify/local:v1"
    digest = make_kit(work, store, ref, seed="local")
    sign_local(store, ref, alice.signer)
    return ref, digest


# ---------------------------------------------------------------------- local store
def test_local_pass(signed_local, store, alice):
    ref, digest = signed_local
    res = verify(ref, opts(alice.pub, policies=[BASELINE]), store=store)
    assert (res.decision, res.exit_code, res.location) == ("pass", 0, "local")
    assert res.digest == digest
    doc = res.input_document
    assert [s["kind"] for s in doc["signatures"]] == ["key"]
    assert doc["signatures"][0]["key_id"] == res.signatures[0]["keyId"]
    assert doc["sbom"]["verified"] and doc["sbom"]["matches_manifest"]
    assert doc["sbom"]["model"]["name"] == "demo-model"
    assert doc["sbom"]["model"]["card"]["intended_use"] == ["Testing verify."]
    assert {d["license"] for d in doc["sbom"]["datasets"]} == {"CC-BY-4.0"}
    assert [layer["kind"] for layer in doc["manifest"]["layers"]] == \
        ["model", "dataset", "docs"]
    assert res.policy.decision == "pass" and res.policy.counts()["pass"] == 5
    out = res.to_dict()
    assert out["schemaVersion"] == 1 and out["decision"] == "pass"
    assert out["inputDocument"]["now"] == "2026-11-27T12:00:00Z"
    json.dumps(out)  # serialisable


def test_local_modelpack_format(work, store, alice):
    ref = "localhost/verify/modelpack:v1"
    make_kit(work, store, ref, seed="mp", modelpack=True)
    sign_local(store, ref, alice.signer)
    res = verify(ref, opts(alice.pub, policies=[BASELINE]), store=store)
    assert res.decision == "pass", res.problems
    assert res.input_document["manifest"]["artifactType"] == \
        "application/vnd.cncf.model.manifest.v1+json"
    assert [x["kind"] for x in res.input_document["manifest"]["layers"]] == \
        ["model", "dataset", "docs"]


def test_local_wrong_key_denied(signed_local, store, mallory):
    ref, _ = signed_local
    res = verify(ref, opts(mallory.pub), store=store)
    assert (res.decision, res.exit_code) == ("deny", 1)
    assert "no signature" in res.problems[0]
    assert res.signatures and not res.signatures[0]["verified"]
    assert "does not verify with the given key" in res.signatures[0]["error"]
    # an unverified signature never reaches the input document
    assert res.input_document["signatures"] == []
    assert res.input_document["sbom"]["verified"] is False
    assert res.input_document["sbom"]["licenses"] == []


def test_local_two_keys_either_accepted(signed_local, store, alice, mallory):
    ref, _ = signed_local
    res = verify(ref, opts(mallory.pub, alice.pub), store=store)
    assert res.decision == "pass", res.problems


def test_missing_is_error(store, alice):
    res = verify("localhost/verify/absent:v1", opts(alice.pub), store=store)
    assert (res.decision, res.exit_code) == ("error", 2)
    assert "not in the local store" in res.problems[0]


def test_usage_errors_are_exit_2(signed_local, store, alice):
    ref, _ = signed_local
    for bad in (VerifyOptions(),                                        # no signer
                VerifyOptions(certificate_identity="a@b"),              # no issuer
                VerifyOptions(certificate_oidc_issuer="https://x"),     # no identity
                VerifyOptions(keys=[str(alice.pub)], certificate_identity_regexp="(")):
        res = verify(ref, bad, store=store)
        assert (res.decision, res.exit_code) == ("error", 2), bad


def test_unsigned_and_unmatched_sbom(work, store, alice, mallory):
    # signature only (packed without an ML-BOM), then an ML-BOM stored unsigned
    ref = "localhost/verify/unsigned-bom:v1"
    digest = make_kit(work, store, ref, sbom=False, seed="u")
    sign_local(store, ref, alice.signer)
    res = verify(ref, opts(alice.pub), store=store)
    assert res.decision == "deny" and "no ML-BOM is attached" in res.problems
    _, manifest, raw = store.get_manifest(ref)
    subject = {"mediaType": manifest["mediaType"], "digest": digest, "size": len(raw)}
    other = make_kit(work, store, "localhost/verify/other:v1", name="other", seed="o")
    other_bom = mlbom.load_mlbom("localhost/verify/other:v1", store=store).bom
    mlbom.store_mlbom(store, subject, other_bom)

    res = verify(ref, opts(alice.pub), store=store)
    assert res.decision == "deny"
    assert res.sbom["present"] and not res.sbom["verified"]
    assert "not in an attestation signed by an accepted signer" in res.problems[0]
    # not required: pass, and the unsigned content still never reaches the document
    res = verify(ref, opts(alice.pub, require_sbom=False, policies=[BASELINE]), store=store)
    assert res.decision == "deny"  # ...but the baseline policy wants it signed
    assert res.policy.result("mlbom-signed").status == "fail"
    assert res.input_document["sbom"]["present"] is True
    assert res.input_document["sbom"]["model"]["name"] == ""
    assert verify(ref, opts(alice.pub, require_sbom=False), store=store).decision == "pass"

    # signed by someone else (mallory attests it) → still not accepted
    sign_local(store, ref, mallory.signer)
    res = verify(ref, opts(alice.pub), store=store)
    assert res.decision == "deny" and not res.sbom["verified"]
    bad = [a for a in res.attestations if a["predicateType"] == "https://cyclonedx.org/bom"]
    assert bad and all(not a["verified"] for a in bad)

    # now alice attests the other kit's BOM: signed, but it does not match
    sign_local(store, ref, alice.signer)
    res = verify(ref, opts(alice.pub), store=store)
    assert res.decision == "deny"
    assert res.sbom["verified"] and not res.sbom["matchesManifest"]
    text = " ".join(res.sbom["mismatches"])
    assert f"describes manifest {other}" in text
    assert "is not in the ML-BOM" in text and "that the ModelKit does not have" in text
    assert "model name" in text
    assert "does not match the ModelKit" in res.problems[0]


def test_legacy_format_local(work, store, alice):
    ref = "localhost/verify/legacy:v1"
    digest = make_kit(work, store, ref, seed="legacy")
    _, manifest, raw = store.get_manifest(ref)
    bom = mlbom.load_mlbom(ref, store=store).bom
    refs = sign_modelkit(digest, {"mediaType": manifest["mediaType"], "digest": digest,
                                  "size": len(raw)}, sbom=bom, signer=alice.signer,
                         signature_format="legacy", docker_reference="localhost/verify/legacy")
    attach_local(store, [r for r in refs if r.tag], "localhost/verify/legacy")
    assert not store.referrers(digest, SIGSTORE_BUNDLE_V03)  # only the .sig/.att tags
    res = verify(ref, opts(alice.pub), store=store)
    assert res.decision == "pass", res.problems
    assert [s["source"] for s in res.signatures] == ["legacy-tag"]
    assert res.input_document["signatures"][0]["predicate_type"] == ""
    assert res.sbom["verified"] and res.input_document["attestations"][0]["source"] == \
        "legacy-tag"


def test_deep_local_and_corrupt_layer(work, store, alice):
    ref = "localhost/verify/deep:v1"
    make_kit(work, store, ref, seed="deep")
    sign_local(store, ref, alice.signer)
    res = verify(ref, opts(alice.pub, deep=True), store=store)
    assert res.decision == "pass" and any("re-hashed" in c for c in res.checked)
    _, manifest, _ = store.get_manifest(ref)
    model = manifest["layers"][0]["digest"]
    path = store.blob_path(model)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    assert verify(ref, opts(alice.pub), store=store).decision == "pass"  # not deep
    res = verify(ref, opts(alice.pub, deep=True), store=store)
    assert res.decision == "deny"
    assert any(f"layer {model} hashes to" in p for p in res.problems)


def test_local_corrupt_manifest_or_signature_is_error(work, store, alice):
    """A damaged local store (manifest or signature bundle blob) cannot be decided."""
    ref = "localhost/verify/damaged:v1"
    make_kit(work, store, ref, seed="damaged")
    sign_local(store, ref, alice.signer)
    desc, _, _ = store.get_manifest(ref)
    sig = store.referrers(desc["digest"])[0]
    bundle = json.loads(store.read_blob(sig["digest"]))["layers"][0]["digest"]
    for digest in (bundle, desc["digest"]):
        path = store.blob_path(digest)
        path.chmod(0o644)
        data = bytearray(path.read_bytes())
        data[-2] ^= 1
        path.write_bytes(bytes(data))
        res = verify(ref, opts(alice.pub), store=store)
        assert (res.decision, res.exit_code) == ("error", 2), res.problems
        assert any(f"stored blob {digest} is corrupt" in p for p in res.problems)


def test_waivers_valid_and_expired(work, store, alice):
    ref = "localhost/verify/nolicence:v1"
    make_kit(work, store, ref, dataset_license=False, seed="w")
    sign_local(store, ref, alice.signer)
    res = verify(ref, opts(alice.pub, policies=[BASELINE]), store=store)
    assert res.decision == "deny"
    assert res.policy.result("licences-declared").status == "fail"
    for expires, decision, status in (("2026-12-31", "pass", "waived"),
                                      ("2026-11-01", "deny", "fail")):
        w = work / f"waivers-{expires}.yaml"
        w.write_text(f"""waivers:
  - rule: licences-declared
    repository: "localhost/verify/*"
    reason: legacy dataset, licence being clarified
    owner: governance@example.com
    expires: {expires}
""")
        res = verify(ref, opts(alice.pub, policies=[BASELINE], waivers=str(w)), store=store)
        r = res.policy.result("licences-declared")
        assert (res.decision, r.status) == (decision, status), res.problems
        if status == "fail":
            assert r.expired_waivers and "expired" in r.reason


def test_bad_cel_is_exit_2(work, signed_local, store, alice):
    ref, _ = signed_local
    bad = work / "bad.yaml"
    bad.write_text("name: bad\nrules:\n  - id: broken\n    description: x\n"
                   "    severity: deny\n    expression: signatures.exists(s, s.verified &&\n")
    res = verify(ref, opts(alice.pub, policies=[str(bad)]), store=store)
    assert (res.decision, res.exit_code) == ("error", 2)
    assert "broken" in res.problems[0]
    unknown = work / "unknown.yaml"
    unknown.write_text("name: unknown\nrules:\n  - id: r\n    description: x\n"
                       "    severity: deny\n    expression: nosuchvar == 1\n")
    assert verify(ref, opts(alice.pub, policies=[str(unknown)]), store=store).exit_code == 2
    res = verify(ref, opts(alice.pub, policies=[BASELINE], params={"nope": "1"}), store=store)
    assert res.exit_code == 2


def test_compiled_reuse_and_result_cache(signed_local, store, alice, mallory):
    ref, digest = signed_local
    comp = compile_options(opts(alice.pub, policies=[BASELINE]), cache_ttl=60)
    first = verify(ref, compiled=comp, store=store)
    second = verify(ref, compiled=comp, store=store)
    assert first.decision == second.decision == "pass"
    assert (first.cached, second.cached) == (False, True)
    assert second.digest == digest and second.fingerprint == comp.fingerprint
    denied = compile_options(opts(mallory.pub), cache_ttl=60)
    assert verify(ref, compiled=denied, store=store).decision == "deny"
    again = verify(ref, compiled=denied, store=store)
    assert again.decision == "deny" and not again.cached  # denials are never cached
    assert comp.fingerprint != denied.fingerprint


def test_verify_fetched(signed_local, store, alice):
    ref, digest = signed_local
    _, manifest, raw = store.get_manifest(ref)
    config = store.read_blob(manifest["config"]["digest"])
    fetched = []
    for d in store.referrers(digest):
        man = json.loads(store.read_blob(d["digest"]))
        blobs = {layer["digest"]: store.read_blob(layer["digest"]) for layer in man["layers"]}
        fetched.append(FetchedReferrer(d, man, blobs))
    res = verify_fetched(reference=ref, digest=digest, manifest=raw, config_bytes=config,
                         referrers=fetched, options=opts(alice.pub))
    assert res.decision == "pass", res.problems
    assert res.location == "fetched"
    bad = verify_fetched(reference=ref, digest=digest, manifest=raw + b" ",
                         config_bytes=config, referrers=fetched, options=opts(alice.pub))
    assert bad.decision == "error"
    # a bundle blob that does not match its digest is not accepted
    broken = [FetchedReferrer(f.descriptor, f.manifest,
                              {k: v + b" " for k, v in f.blobs.items()}) for f in fetched]
    res = verify_fetched(reference=ref, digest=digest, manifest=raw, config_bytes=config,
                         referrers=broken, options=opts(alice.pub))
    assert res.decision == "deny"
    assert "does not match its digest" in res.signatures[0]["error"]
    # --deep without a way to read the layers cannot be decided
    res = verify_fetched(reference=ref, digest=digest, manifest=raw, config_bytes=config,
                         referrers=fetched, options=opts(alice.pub, deep=True))
    assert res.exit_code == 2 and "--deep needs access to the layers" in res.problems[0]


# ---------------------------------------------------------------------- registry
@pytest.fixture(scope="module")
def pushed(work, store, alice, registry):
    ref = f"{registry.host}/verify/model:v1"
    digest = make_kit(work, store, ref, seed="remote")
    sign_local(store, ref, alice.signer)
    push(ref, store=store, progress="none", **registry.net)
    return ref, digest


def test_registry_pass_fallback_tag(pushed, store, alice, registry):
    ref, digest = pushed
    res = verify(ref, opts(alice.pub, policies=[BASELINE]), store=store, remote=True,
                 net=registry.net)
    assert (res.decision, res.location) == ("pass", "remote"), res.problems
    assert res.digest == digest
    assert res.input_document["registry"] == {"host": registry.host, "referrers_api": False}
    assert {s["source"] for s in res.signatures} == {"fallback-tag"}
    # by digest too, and auto mode finds it in the local store
    assert verify(f"{ref.rsplit(':', 1)[0]}@{digest}", opts(alice.pub), remote=True,
                  net=registry.net).decision == "pass"
    assert verify(ref, opts(alice.pub), store=store).location == "local"


def test_registry_referrers_api(pushed, store, alice, registry, fault_proxy):
    proxy = fault_proxy(registry, referrers_api=True)
    ref, _ = pushed
    src = ref
    dest = f"{proxy.host}/verify/viaapi:v1"
    push(src, dest, store=store, progress="none", plain_http=True)
    res = verify(dest, opts(alice.pub), remote=True, net={"plain_http": True})
    assert res.decision == "pass", res.problems
    assert res.input_document["registry"]["referrers_api"] is True
    assert {s["source"] for s in res.signatures} == {"referrer"}


def test_registry_wrong_key(pushed, mallory, registry):
    ref, _ = pushed
    res = verify(ref, opts(mallory.pub), remote=True, net=registry.net)
    assert (res.decision, res.exit_code) == ("deny", 1)


def test_registry_tampered_manifest(pushed, store, alice, registry):
    ref, digest = pushed
    repo = ref.split("/", 1)[1].rsplit(":", 1)[0]
    with open_client(registry.host, NetOptions(plain_http=True)) as client:
        man = client.get_manifest(repo, digest).data
        man["annotations"] = {**(man.get("annotations") or {}), "evil": "yes"}
        raw = json.dumps(man, separators=(",", ":")).encode()
        client.put_manifest(repo, "tampered", raw)
        tampered = f"{registry.host}/{repo}:tampered"
        res = verify(tampered, opts(alice.pub), remote=True, net=registry.net)
        assert res.decision == "deny" and res.digest != digest
        assert "(none found)" in res.problems[0]
        # the original signature bundle re-attached to the tampered manifest
        from kitaudit.referrers import push_referrer, referrer_manifest

        sig = next(d for d in store.referrers(digest, SIGSTORE_BUNDLE_V03)
                   if d["annotations"]["dev.sigstore.bundle.predicateType"].endswith("/v1"))
        sig_man = json.loads(store.read_blob(sig["digest"]))
        layer = sig_man["layers"][0]
        new = referrer_manifest({"mediaType": man["mediaType"], "size": len(raw),
                                 "digest": res.digest}, SIGSTORE_BUNDLE_V03, [layer],
                                annotations=sig_man["annotations"])
        push_referrer(client, repo, new, {layer["digest"]: store.read_blob(layer["digest"])})
    res = verify(tampered, opts(alice.pub), remote=True, net=registry.net)
    assert res.decision == "deny"
    assert "does not match the expected digest" in res.signatures[0]["error"]


def test_registry_legacy_only(work, store, alice, registry):
    ref = f"{registry.host}/verify/legacy:v1"
    digest = make_kit(work, store, ref, seed="rlegacy", sbom=False)
    push(ref, store=store, progress="none", **registry.net)
    _, manifest, raw = store.get_manifest(ref)
    refs = sign_modelkit(digest, {"mediaType": manifest["mediaType"], "digest": digest,
                                  "size": len(raw)}, sbom=None, signer=alice.signer,
                         signature_format="legacy",
                         docker_reference=f"{registry.host}/verify/legacy")
    with open_client(registry.host, NetOptions(plain_http=True)) as client:
        for r in refs:
            if r.tag:
                for blob in r.blobs.values():
                    client.upload_bytes("verify/legacy", blob)
                client.put_manifest("verify/legacy", r.tag, r.manifest_bytes)
    res = verify(ref, opts(alice.pub, require_sbom=False), remote=True, net=registry.net)
    assert res.decision == "pass", res.problems
    assert [s["source"] for s in res.signatures] == ["legacy-tag"]
    res = verify(ref, opts(alice.pub), remote=True, net=registry.net)
    assert res.decision == "deny" and "no ML-BOM is attached" in res.problems


def test_registry_deep(pushed, alice, registry):
    ref, _ = pushed
    res = verify(ref, opts(alice.pub, deep=True), remote=True, net=registry.net)
    assert res.decision == "pass", res.problems
    assert any("3 layers re-hashed" in c for c in res.checked)


def test_unreachable_registry_is_error(alice):
    from tests.registry_fixtures import free_port

    res = verify(f"127.0.0.1:{free_port()}/x/y:v1", opts(alice.pub), remote=True,
                 net={"plain_http": True, "max_attempts": 1, "connect_timeout": 1.0})
    assert (res.decision, res.exit_code) == ("error", 2)


def test_garbage_referrer_does_not_break_verification(pushed, store, alice, registry,
                                                     fault_proxy):
    """A referrer whose bundle is not a bundle is recorded as unverified; the good
    signature still counts (and garbage never passes on its own)."""
    import hashlib

    from kitaudit.referrers import attach_remote, referrer_manifest

    ref, digest = pushed
    _, manifest, raw = store.get_manifest(ref)
    junk = b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","x":1}'
    layer = {"mediaType": SIGSTORE_BUNDLE_V03, "size": len(junk),
             "digest": "sha256:" + hashlib.sha256(junk).hexdigest()}
    man = referrer_manifest({"mediaType": manifest["mediaType"], "size": len(raw),
                             "digest": digest}, SIGSTORE_BUNDLE_V03, [layer],
                            annotations={"dev.sigstore.bundle.predicateType":
                                         "https://sigstore.dev/cosign/sign/v1"})
    attach_remote(ref, man, {layer["digest"]: junk}, **registry.net)
    res = verify(ref, opts(alice.pub), remote=True, net=registry.net)
    assert res.decision == "pass", res.problems
    assert sum(1 for s in res.signatures if not s["verified"]) == 1
    # the junk referrer deleted after it was listed (its manifest now answers 404):
    # skipped with a warning, the verification completes
    proxy = fault_proxy(registry)
    proxy.add("status", path=f"/manifests/sha256:{hashlib.sha256(man).hexdigest()}", status=404,
              body=b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', times=None)
    res = verify(f"{proxy.host}/verify/model:v1", opts(alice.pub), remote=True,
                 net={"plain_http": True})
    assert res.decision == "pass", res.problems
    assert any("skipped" in w for w in res.warnings)


# ---------------------------------------------------------------------- CLI
def test_cli(signed_local, store, alice, mallory, monkeypatch, work):
    monkeypatch.setenv("KITAUDIT_HOME", str(work))  # the module's store is work/store
    ref, digest = signed_local
    runner = CliRunner()
    res = runner.invoke(main, ["verify", ref, "--key", str(alice.pub), "--output", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["schemaVersion"] == 1 and doc["digest"] == digest and doc["exitCode"] == 0
    assert set(doc) >= {"reference", "decision", "checked", "problems", "signatures",
                        "attestations", "sbom", "policy", "inputDocument"}
    res = runner.invoke(main, ["verify", ref, "--key", str(mallory.pub)])
    assert res.exit_code == 1 and "DENIED" in res.output
    res = runner.invoke(main, ["verify", ref, "--certificate-identity", "a@example.com"])
    assert res.exit_code == 2 and "issuer" in res.output
    res = runner.invoke(main, ["verify", ref, "--key", str(alice.pub), "--policy", BASELINE,
                               "--param", "x=1"])
    assert res.exit_code == 2
    res = runner.invoke(main, ["verify", ref, "--key", str(alice.pub), "--policy",
                               str(ROOT / "policies" / "strict.yaml")])
    assert res.exit_code == 1
    assert "rule strict/signer-allow-listed: FAIL" in res.output and "fix:" in res.output



def test_lineage_base_model_verified(work, store, alice, mallory):
    base = "localhost/verify/base:v1"
    base_digest = make_kit(work, store, base, name="base", seed="base")
    sign_local(store, base, alice.signer)
    ctx = work / "ctx-child"
    (ctx / "data").mkdir(parents=True)
    (ctx / "Kitfile").write_text(
        "manifestVersion: 1.0.0\npackage:\n  name: child\n  license: Apache-2.0\n"
        f"model:\n  name: child\n  path: {base}\n  license: Apache-2.0\n"
        "datasets:\n  - name: tune\n    path: data/tune.csv\n    license: MIT\n")
    (ctx / "data" / "tune.csv").write_text("x\n")
    child = "localhost/verify/child:v1"
    pack(ctx, tags=[child], store=store)
    sign_local(store, child, alice.signer)
    res = verify(child, opts(alice.pub, policies=[BASELINE]), store=store)
    assert res.decision == "pass", res.problems
    [b] = res.input_document["lineage"]["base_models"]
    assert (b["digest"], b["signed"], b["verified"], b["depth"]) == (base_digest, True, True, 1)
    assert res.input_document["lineage"]["depth"] == 1
    assert res.input_document["sbom"]["ancestors"][0]["digest"] == base_digest
    # base model signed by a key we do not accept: signed, not verified
    sign_local(store, child, mallory.signer)
    res = verify(child, opts(mallory.pub, policies=[BASELINE]), store=store)
    [b] = res.input_document["lineage"]["base_models"]
    assert (b["signed"], b["verified"]) == (True, False)


def test_registry_serving_wrong_bytes(pushed, store, alice, registry, fault_proxy):
    """A registry (here a proxy flipping one byte) that serves a manifest or a bundle
    not matching its digest: the manifest → could not decide; the bundle → not accepted."""
    _, digest = pushed
    proxy = fault_proxy(registry)
    pinned = f"{proxy.host}/verify/model@{digest}"
    proxy.add("flip", path=f"/manifests/{digest}", at=40, times=None)
    res = verify(pinned, opts(alice.pub), remote=True, net={"plain_http": True})
    assert (res.decision, res.exit_code) == ("error", 2)
    assert "hashes to" in res.problems[0]
    proxy.faults.clear()
    # corrupt the signature bundle blob only: that signature is not accepted (deny),
    # the verification itself still completes
    sig = next(d for d in store.referrers(digest, SIGSTORE_BUNDLE_V03)
               if d["annotations"]["dev.sigstore.bundle.predicateType"].endswith("/v1"))
    layer = json.loads(store.read_blob(sig["digest"]))["layers"][0]["digest"]
    proxy.add("flip", path=f"/blobs/{layer}", at=30, times=None)
    res = verify(pinned, opts(alice.pub), remote=True, net={"plain_http": True})
    assert (res.decision, res.exit_code) == ("deny", 1), res.problems
    assert any("hashes to" in w for w in res.warnings)
    assert any("was not fetched" in s["error"] for s in res.signatures)


def test_cli_remote_json(pushed, alice, kit_home):
    ref, digest = pushed
    res = CliRunner().invoke(main, ["verify", ref, "-r", "--plain-http", "--key",
                                    str(alice.pub), "--policy", BASELINE, "--output", "json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["location"], doc["digest"]) == ("remote", digest)
    assert doc["policy"]["decision"] == "pass"
    assert doc["inputDocument"]["registry"]["referrers_api"] is False
    # --local: kit_home's store is empty, so this cannot be decided
    res = CliRunner().invoke(main, ["verify", ref, "--local", "--key", str(alice.pub)])
    assert res.exit_code == 2 and "not in the local store" in res.output
