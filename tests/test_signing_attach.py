"""``kitaudit sign`` end to end with a key: local store, and a real registry
(Debian's docker-registry, distribution 2.8: no referrers API, so the fallback tag path;
and through the test proxy that adds the referrers API). Signatures are checked with
``verify_bundle`` and the key; the ML-BOM attestation's predicate equals the stored BOM.
"""

from __future__ import annotations

import base64
import json

import pytest
from click.testing import CliRunner

from kitaudit._cli import main
from kitaudit.errors import StoreError
from kitaudit.mediatypes import CYCLONEDX_JSON, SIGSTORE_BUNDLE_V03
from kitaudit.signing import keys
from kitaudit.signing.attach import sign_local, sign_reference
from kitaudit.signing.signer import KeySigner
from kitaudit.signing.verify_bundle import SignerPolicy, verify_bundle
from tests.registry_fixtures import build_modelkit

BOM = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
                  "metadata": {"component": {"type": "machine-learning-model",
                                             "name": "model"}}}).encode()


@pytest.fixture
def keypair(tmp_path, monkeypatch):
    monkeypatch.setenv("KITAUDIT_PASSWORD", "pw")
    monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
    priv, pub = keys.generate_key_pair()
    k, p = keys.write_key_pair(tmp_path / "cosign", priv, pub)
    return k, p


def _kit(store, ref: str, seed: str, with_bom: bool = True):
    from kitaudit import mlbom

    kit = build_modelkit(store, ref, seed=seed)
    subject = {"mediaType": kit.manifest["mediaType"], "size": len(kit.raw),
               "digest": kit.digest}
    if with_bom:
        mlbom.store_mlbom(store, subject, BOM)
    return kit


def _check_bundles(bundles: list[bytes], digest: str, pub_path) -> dict[str, object]:
    policy = SignerPolicy.from_key_files(pub_path)
    seen = {}
    for b in bundles:
        res = verify_bundle(b, expected_digest=digest, policy=policy)
        seen[res.predicate_type] = res.statement.predicate
    return seen


def test_cli_sign_local(kit_home, keypair):
    from kitaudit.store import default_store

    store = default_store()
    kit = _kit(store, "localhost/team/model:v1", "local")
    runner = CliRunner()
    res = runner.invoke(main, ["sign", "team/model:v1", "--key", str(keypair[0]),
                               "--output", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["subject"] == kit.digest and out["sbomSigned"] and out["location"] == "local"
    refs = store.referrers(kit.digest, SIGSTORE_BUNDLE_V03)
    assert len(refs) == 2
    assert {r["annotations"]["dev.sigstore.bundle.predicateType"] for r in refs} == \
        {"https://sigstore.dev/cosign/sign/v1", "https://cyclonedx.org/bom"}
    bundles = []
    for r in refs:
        _, manifest, _ = store.get_manifest(r["digest"])
        assert manifest["subject"]["digest"] == kit.digest
        bundles.append(store.read_blob(manifest["layers"][0]["digest"]))
    preds = _check_bundles(bundles, kit.digest, keypair[1])
    assert preds["https://cyclonedx.org/bom"] == json.loads(BOM)
    assert preds["https://sigstore.dev/cosign/sign/v1"] == {}
    # the ML-BOM referrer is untouched
    assert len(store.referrers(kit.digest, CYCLONEDX_JSON)) == 1


def test_cli_errors(kit_home, keypair, monkeypatch):
    runner = CliRunner()
    res = runner.invoke(main, ["sign", "team/absent:v1", "--key", str(keypair[0])])
    assert res.exit_code == 2 and "not in the local store" in res.output
    from kitaudit.store import default_store

    _kit(default_store(), "localhost/team/m2:v1", "errs")
    monkeypatch.setenv("KITAUDIT_PASSWORD", "hunter2-secret")
    res = runner.invoke(main, ["sign", "team/m2:v1", "--key", str(keypair[0])])
    assert res.exit_code == 2
    assert "wrong password" in res.output and "hunter2" not in res.output
    assert default_store().referrers(
        default_store().resolve("localhost/team/m2:v1")["digest"], SIGSTORE_BUNDLE_V03) == []
    res = runner.invoke(main, ["sign", "team/m2:v1", "--key", str(keypair[0]),
                               "--identity-token", "x"])
    assert res.exit_code == 2 and "cannot be combined" in res.output


def test_no_sbom_signs_manifest_only(kit_home, keypair):
    from kitaudit.store import default_store

    store = default_store()
    kit = _kit(store, "localhost/team/nobom:v1", "nobom", with_bom=False)
    signer = KeySigner.from_file(str(keypair[0]))
    result = sign_local(store, "team/nobom:v1", signer)
    assert not result.sbom_signed and len(result.attached) == 1
    assert len(store.referrers(kit.digest, SIGSTORE_BUNDLE_V03)) == 1


def test_interrupted_attach_is_resumed_with_same_bundles(kit_home, keypair, monkeypatch):
    from kitaudit.store import Store, default_store

    store = default_store()
    kit = _kit(store, "localhost/team/resume:v1", "resume")
    signer = KeySigner.from_file(str(keypair[0]))
    real = Store.add_referrer
    calls = {"n": 0}

    def flaky(self, manifest_bytes):
        calls["n"] += 1
        if calls["n"] == 2:
            raise StoreError("disk full (test)")
        return real(self, manifest_bytes)

    monkeypatch.setattr(Store, "add_referrer", flaky)
    with pytest.raises(StoreError):
        sign_local(store, "team/resume:v1", signer)
    first = {r["digest"] for r in store.referrers(kit.digest, SIGSTORE_BUNDLE_V03)}
    assert len(first) == 1
    pending = list((kit_home / "pending-signatures").glob("*.json"))
    assert len(pending) == 1
    result = sign_local(store, "team/resume:v1", signer)
    assert result.reused_pending
    after = {r["digest"] for r in store.referrers(kit.digest, SIGSTORE_BUNDLE_V03)}
    assert first < after and len(after) == 2  # the same first bundle, no duplicate
    assert not list((kit_home / "pending-signatures").glob("*.json"))
    # a normal re-run signs anew (new signatures appended, as cosign does)
    assert not sign_local(store, "team/resume:v1", signer).reused_pending


@pytest.mark.registry
def test_sign_remote_fallback_tag_and_legacy(kit_home, keypair, registry):
    from kitaudit.registry.transfer import push
    from kitaudit.store import default_store
    from tests.registry_fixtures import free_port  # noqa: F401  (fixture module loaded)

    store = default_store()
    ref = f"{registry.host}/sign/remote:v1"
    kit = _kit(store, ref, "remote")
    push(ref, store=store, progress="none", **registry.net)
    signer = KeySigner.from_file(str(keypair[0]))
    # remote=True: sign in the registry even though the kit is stored locally
    result = sign_reference(ref, signer, remote=True, signature_format="legacy",
                            **registry.net)
    assert result.location == "remote" and result.sbom_signed
    methods = [a["method"] for a in result.attached]
    assert methods[:2] == ["fallback", "fallback"] and methods[2:] == ["tag", "tag"]

    from kitaudit.registry.transfer import _net, open_client

    with open_client(registry.host, _net(registry.net)) as client:
        index = client.get_manifest("sign/remote", f"sha256-{kit.digest[7:]}").data
        bundle_descs = [d for d in index["manifests"]
                        if d.get("artifactType") == SIGSTORE_BUNDLE_V03]
        assert len(bundle_descs) == 2
        for d in bundle_descs:  # annotations copied into the fallback index
            assert d["annotations"]["dev.sigstore.bundle.content"] == "dsse-envelope"
        bundles = []
        for d in bundle_descs:
            m = client.get_manifest("sign/remote", d["digest"]).data
            bundles.append(client.get_blob_bytes("sign/remote", m["layers"][0]["digest"]))
        preds = _check_bundles(bundles, kit.digest, keypair[1])
        assert preds["https://cyclonedx.org/bom"] == json.loads(BOM)
        sig = client.get_manifest("sign/remote", f"sha256-{kit.digest[7:]}.sig").data
        assert len(sig["layers"]) == 1
        payload = json.loads(client.get_blob_bytes("sign/remote", sig["layers"][0]["digest"]))
        assert payload["critical"]["image"]["docker-manifest-digest"] == kit.digest
        assert payload["critical"]["identity"]["docker-reference"] == \
            f"{registry.host}/sign/remote"
    # signing again appends to the legacy .sig manifest (as cosign does)
    sign_reference(ref, signer, remote=True, signature_format="legacy", **registry.net)
    with open_client(registry.host, _net(registry.net)) as client:
        sig = client.get_manifest("sign/remote", f"sha256-{kit.digest[7:]}.sig").data
        assert len(sig["layers"]) == 2
        att = client.get_manifest("sign/remote", f"sha256-{kit.digest[7:]}.att").data
        env = json.loads(client.get_blob_bytes("sign/remote", att["layers"][0]["digest"]))
        stmt = json.loads(base64.b64decode(env["payload"]))
        assert stmt["predicateType"] == "https://cyclonedx.org/bom"


@pytest.mark.registry
def test_sign_remote_referrers_api(kit_home, keypair, registry, fault_proxy):
    from kitaudit.registry.transfer import push
    from kitaudit.store import default_store

    proxy = fault_proxy(registry, referrers_api=True)
    store = default_store()
    ref = f"{proxy.host}/sign/api:v1"
    kit = _kit(store, ref, "api")
    push(ref, store=store, progress="none", **proxy.net)
    # not in the local store under this name → signed remotely
    store.untag(ref)
    result = sign_reference(ref, KeySigner.from_file(str(keypair[0])), **proxy.net)
    assert [a["method"] for a in result.attached] == ["api", "api"]
    assert result.subject == kit.digest


@pytest.mark.registry
def test_cli_sign_remote(kit_home, keypair, registry):
    from kitaudit.registry.transfer import push
    from kitaudit.store import default_store

    store = default_store()
    ref = f"{registry.host}/sign/cli:v1"
    kit = _kit(store, ref, "cli")
    push(ref, store=store, progress="none", **registry.net)
    runner = CliRunner()
    res = runner.invoke(main, ["sign", ref, "--key", str(keypair[0]), "--remote",
                               "--plain-http", "--output", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["location"] == "remote" and out["subject"] == kit.digest
    assert [a["method"] for a in out["attached"]] == ["fallback", "fallback"]
    res = runner.invoke(main, ["sign", f"{registry.host}/sign/absent:v1", "--key",
                               str(keypair[0]), "--plain-http"])
    assert res.exit_code == 2 and "not found" in res.output
