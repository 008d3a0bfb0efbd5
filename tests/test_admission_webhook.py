"""The admission webhook end to end with the real verification path: ModelKits packed
with ``kitaudit.pack`` (real ML-BOMs), signed with keys from
``kitaudit.signing.keys.generate_key_pair`` via ``kitaudit.signing.attach.sign_local``,
pushed to Debian's docker-registry, and checked by ``kitaudit.verify`` behind
``KitauditVerifier``. The webhook is served over TLS on loopback (trustme CA) and driven
with AdmissionReviews shaped like the API server's: Pod and InferenceService, CREATE
and UPDATE. The verifier is only wrapped to count calls (it still verifies). Keyless
signatures come from the loopback Sigstore of ``tests/sigstore_mock`` (Sigstore's
services cannot run here for real).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kitaudit.admission.server import AdmissionController, TLSFiles, WebhookConfig, WebhookServer
from kitaudit.admission.verifier import KitauditVerifier, Verdict
from kitaudit.pack import pack
from kitaudit.registry.transfer import push
from kitaudit.signing import keys
from kitaudit.signing.attach import sign_local
from kitaudit.signing.signer import KeySigner
from kitaudit.store import Store
from kitaudit.verify import VerifyOptions
from tests.test_admission_server import (
    Client,
    inference_service,
    isvc_review,
    make_tls,
    pod,
    review,
)
from tests.test_signing_keyless import ISSUER, SUB, _token, sigstore_mock  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
BASELINE = str(ROOT / "policies" / "baseline.yaml")

KITFILE = """manifestVersion: 1.0.0
package:
  name: {name}
  version: 1.0.0
  license: Apache-2.0
model:
  name: {name}
  path: model.bin
  license: {licence}
datasets:
  - name: train
    path: train.csv
    license: CC-BY-4.0
"""

WARN_POLICY = """name: admission-extra
description: A warn rule that never holds, for warn-only passes.
rules:
  - id: always-warns
    description: never holds
    severity: warn
    expression: "false"
    message: "'reviewed manually'"
    remediation: nothing
"""


@dataclass
class KeyPair:
    signer: KeySigner
    pub: Path


def make_keys(tmp: Path, name: str) -> KeyPair:
    priv_pem, pub_pem = keys.generate_key_pair(password=b"admission-test")
    loaded = keys.load_private_key(priv_pem, password=b"admission-test", source=name)
    pub = tmp / f"{name}.pub"
    pub.write_bytes(pub_pem)
    return KeyPair(KeySigner(loaded), pub)


@dataclass
class World:
    tmp: Path
    store: Store
    alice: KeyPair
    mallory: KeyPair
    registry: Any
    good: str            # signed by alice, passes baseline
    unsigned: str        # packed, pushed, never signed
    other_key: str       # signed by mallory
    no_licence: str      # signed by alice, model licence empty → licences-declared fails
    good_digest: str

    def publish(self, ref: str, *, seed: str, signer: KeyPair | None,
                licence: str = "Apache-2.0") -> str:
        ctx = self.tmp / f"ctx-{seed}"
        ctx.mkdir()
        (ctx / "Kitfile").write_text(KITFILE.format(name=f"m-{seed}", licence=licence))
        (ctx / "model.bin").write_bytes(f"weights {seed}".encode() * 64)
        (ctx / "train.csv").write_text(f"a,b\n1,{seed}\n")
        digest = pack(ctx, tags=[ref], store=self.store).digest
        if signer is not None:
            sign_local(self.store, ref, signer.signer)
        push(ref, store=self.store, progress="none", **self.registry.net)
        return digest


@pytest.fixture(scope="module")
def world(tmp_path_factory, registry) -> World:
    tmp = tmp_path_factory.mktemp("admission")
    w = World(tmp, Store(tmp / "store"), make_keys(tmp, "alice"), make_keys(tmp, "mallory"),
              registry, "", "", "", "", "")
    host = registry.host
    w.good = f"{host}/admission/good:v1"
    w.good_digest = w.publish(w.good, seed="good", signer=w.alice)
    w.unsigned = f"{host}/admission/unsigned:v1"
    w.publish(w.unsigned, seed="unsigned", signer=None)
    w.other_key = f"{host}/admission/mallory:v1"
    w.publish(w.other_key, seed="mallory", signer=w.mallory)
    w.no_licence = f"{host}/admission/nolicence:v1"
    w.publish(w.no_licence, seed="nolicence", signer=w.alice, licence="")
    return w


class CountingVerifier:
    """The real :class:`KitauditVerifier`, counting how often it verifies."""

    def __init__(self, inner: KitauditVerifier) -> None:
        self.inner = inner
        self.policy_hash = inner.policy_hash
        self.trust_hash = inner.trust_hash
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def resolve(self, reference: str) -> str:
        return self.inner.resolve(reference)

    def verify(self, reference: str, digest: str) -> Verdict:
        with self._lock:
            self.calls[reference] = self.calls.get(reference, 0) + 1
        return self.inner.verify(reference, digest)


@pytest.fixture
def webhook(world, tmp_path):
    """webhook(policies=[...], **config) → (client, counting verifier, controller)."""
    tls = make_tls(tmp_path)
    running: list[tuple[WebhookServer, Client]] = []

    def start(policies: list[str] | None = None, options: VerifyOptions | None = None,
              **config: Any):
        options = options or VerifyOptions(
            keys=[str(world.alice.pub)],
            policies=policies if policies is not None else [BASELINE])
        verifier = CountingVerifier(KitauditVerifier(options, net=dict(world.registry.net)))
        controller = AdmissionController(verifier, WebhookConfig(**config))
        server = WebhookServer(controller, host="127.0.0.1", port=0,
                               tls=TLSFiles(str(tls.cert), str(tls.key))).start()
        client = Client(server.port, tls.client_context(), timeout=30)
        running.append((server, client))
        return client, verifier, controller

    yield start
    for server, client in running:
        client.close()
        server.shutdown()


def _resp(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    status, doc = client.post(body)
    assert status == 200, doc
    assert doc["apiVersion"] == "admission.k8s.io/v1" and doc["kind"] == "AdmissionReview"
    assert doc["response"]["uid"] == body["request"]["uid"]
    return doc["response"]


def test_pod_create_allowed_and_cached(world, webhook):
    client, verifier, controller = webhook()
    r = _resp(client, review(pod(world.good)))
    assert r["allowed"] is True, r
    assert "warnings" not in r
    assert r["auditAnnotations"]["verified"] == f"{world.good}@{world.good_digest}"
    # the same reference again (another Pod, an InferenceService): no second verification
    assert _resp(client, review(pod(world.good, name="second")))["allowed"] is True
    assert _resp(client, isvc_review(inference_service("kit://" + world.good)))["allowed"]
    assert verifier.calls == {world.good: 1}
    assert len(controller.cache) == 1
    # by digest: its own cache entry (the reference is part of the key)
    pinned = world.good.rsplit(":", 1)[0] + "@" + world.good_digest
    assert _resp(client, review(pod(pinned)))["allowed"] is True
    assert verifier.calls[pinned] == 1


def test_pod_unsigned_denied_with_rule_names(world, webhook):
    client, verifier, controller = webhook()
    for _ in range(2):
        r = _resp(client, review(pod(world.unsigned)))
        assert r["allowed"] is False
        msg = r["status"]["message"]
        assert r["status"]["code"] == 403
        assert msg.startswith("kitaudit denied Pod ml/model-server:")
        assert world.unsigned in msg and "spec.initContainers[0].env[0].value" in msg
        assert "baseline/modelkit-signed" in msg and "baseline/mlbom-signed" in msg
    # denials are never cached: verified twice
    assert verifier.calls == {world.unsigned: 2}
    assert len(controller.cache) == 0


def test_wrong_key_denied(world, webhook):
    client, _, _ = webhook()
    r = _resp(client, review(pod(world.other_key)))
    assert r["allowed"] is False
    assert "baseline/modelkit-signed" in r["status"]["message"]


def test_policy_rule_failure_named(world, webhook):
    client, _, _ = webhook()
    r = _resp(client, isvc_review(inference_service("kit://" + world.no_licence)))
    assert r["allowed"] is False
    msg = r["status"]["message"]
    assert msg.startswith("kitaudit denied InferenceService ml/iris:")
    assert "spec.predictor.model.storageUri" in msg
    assert "baseline/licences-declared" in msg and "no licence declared" in msg
    assert "baseline/modelkit-signed" not in msg


def test_inferenceservice_update(world, webhook):
    client, verifier, _ = webhook()
    good = inference_service("kit://" + world.good)
    bad = inference_service("kit://" + world.unsigned)
    # UPDATE that keeps the reference: nothing to verify
    relabelled = inference_service("kit://" + world.good)
    relabelled["metadata"]["labels"] = {"team": "ml"}
    r = _resp(client, isvc_review(relabelled, operation="UPDATE", old=good))
    assert r["allowed"] is True and verifier.calls == {}
    # UPDATE to an unsigned ModelKit: denied
    r = _resp(client, isvc_review(bad, operation="UPDATE", old=good))
    assert r["allowed"] is False and "baseline/modelkit-signed" in r["status"]["message"]
    # and back to the good one
    r = _resp(client, isvc_review(good, operation="UPDATE", old=bad))
    assert r["allowed"] is True


def test_pod_with_several_references(world, webhook):
    client, _, _ = webhook()
    obj = pod(world.good)
    obj["spec"]["containers"][0]["args"] += ["--adapter", "kit://" + world.unsigned]
    r = _resp(client, review(obj))
    assert r["allowed"] is False
    msg = r["status"]["message"]
    assert world.unsigned in msg and "spec.containers[0].args[3]" in msg
    assert world.good not in msg


def test_warn_mode(world, webhook):
    client, _verifier, controller = webhook(mode="warn")
    r = _resp(client, review(pod(world.unsigned)))
    assert r["allowed"] is True
    assert any(w.startswith(f"kitaudit: would deny: {world.unsigned}") and
               "baseline/modelkit-signed" in w for w in r["warnings"])
    assert len(controller.cache) == 0
    assert _resp(client, review(pod(world.good)))["allowed"] is True


def test_warn_only_pass_is_not_cached(world, webhook):
    extra = world.tmp / "warn-policy.yaml"
    extra.write_text(WARN_POLICY)
    client, verifier, controller = webhook(policies=[BASELINE, str(extra)])
    for _ in range(2):
        r = _resp(client, review(pod(world.good)))
        assert r["allowed"] is True
        assert any("admission-extra/always-warns" in w for w in r["warnings"])
    assert verifier.calls == {world.good: 2}
    assert len(controller.cache) == 0


def test_moved_tag_is_verified_again(world, webhook):
    """A cached pass is for a digest: when the tag moves to an unsigned ModelKit, the
    next review resolves the new digest and denies."""
    client, verifier, _ = webhook()
    ref = f"{world.registry.host}/admission/moving:v1"
    world.publish(ref, seed="moving-signed", signer=world.alice)
    assert _resp(client, review(pod(ref)))["allowed"] is True
    assert _resp(client, review(pod(ref)))["allowed"] is True
    assert verifier.calls == {ref: 1}
    world.publish(ref, seed="moving-unsigned", signer=None)
    r = _resp(client, review(pod(ref)))
    assert r["allowed"] is False and "baseline/modelkit-signed" in r["status"]["message"]
    assert verifier.calls == {ref: 2}


def test_missing_modelkit_applies_failure_policy(world, webhook):
    missing = f"{world.registry.host}/admission/absent:v1"
    client, _, _ = webhook()
    r = _resp(client, review(pod(missing)))
    assert r["allowed"] is False
    assert "failure policy: deny" in r["status"]["message"]
    assert "not found" in r["status"]["message"]
    client2, _, _ = webhook(failure_policy="allow")
    r = _resp(client2, review(pod(missing)))
    assert r["allowed"] is True and "not found" in r["warnings"][0]


def test_image_patterns_check_container_images(world, webhook):
    host = world.registry.host
    client, _, _ = webhook(image_patterns=(f"{host}/admission/**",))
    obj = {"metadata": {"name": "vol"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}],
                    "volumes": [{"name": "model",
                                 "image": {"reference": world.unsigned}}]}}
    r = _resp(client, review(obj))
    assert r["allowed"] is False and "spec.volumes[0].image.reference" in r["status"]["message"]
    obj["spec"]["volumes"][0]["image"]["reference"] = world.good
    assert _resp(client, review(obj))["allowed"] is True


# ---------------------------------------------------------------------- CLI
def _cli_args(world: World) -> list[str]:
    return ["--key", str(world.alice.pub), "--policy", BASELINE, "--plain-http"]


def test_cli_review_file(world, tmp_path):
    import json

    from click.testing import CliRunner

    from kitaudit._cli import main

    runner = CliRunner()
    good = tmp_path / "good.json"
    good.write_text(json.dumps(review(pod(world.good))))
    res = runner.invoke(main, ["admission", "review", str(good), *_cli_args(world)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["response"]["allowed"] is True
    res = runner.invoke(main, ["admission", "review", "-", *_cli_args(world)],
                        input=good.read_text())
    assert res.exit_code == 0 and json.loads(res.stdout)["response"]["allowed"] is True
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(isvc_review(inference_service("kit://" + world.unsigned))))
    res = runner.invoke(main, ["admission", "review", str(bad), *_cli_args(world),
                               "--output", "table"])
    assert res.exit_code == 1
    assert res.stdout.startswith("denied: kitaudit denied InferenceService ml/iris:")
    assert "baseline/modelkit-signed" in res.stdout
    malformed = tmp_path / "malformed.json"
    malformed.write_text('{"kind": "AdmissionReview"}')
    res = runner.invoke(main, ["admission", "review", str(malformed), *_cli_args(world)])
    assert res.exit_code == 2 and "error: malformed AdmissionReview" in res.stderr
    res = runner.invoke(main, ["admission", "review", str(good), "--policy", BASELINE])
    assert res.exit_code == 2 and "no accepted signer" in res.stderr


def test_cli_serve_process(world, tmp_path):
    """`kitaudit admission serve` as a process: serves TLS, answers, stops on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.registry_fixtures import free_port

    tls = make_tls(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from kitaudit._cli import main; main()", "admission", "serve",
         "--tls-cert-file", str(tls.cert), "--tls-private-key-file", str(tls.key),
         "--address", "127.0.0.1", "--port", str(port), "--timeout", "8",
         *_cli_args(world)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ})
    try:
        client = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                client = Client(port, tls.client_context(), timeout=20)
                if client.get("/healthz")[0] == 200:
                    break
            except OSError:
                client = None
                time.sleep(0.1)
        if client is None:
            proc.kill()
            pytest.fail("webhook did not start: " + proc.communicate()[1].decode())
        assert _resp(client, review(pod(world.good)))["allowed"] is True
        r = _resp(client, review(pod(world.unsigned)))
        assert r["allowed"] is False and "baseline/modelkit-signed" in r["status"]["message"]
        client.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        err = proc.stderr.read().decode() if proc.stderr else ""
        assert "admission webhook on https://127.0.0.1" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_pod_update(world, webhook):
    """Pod UPDATE: the only ModelKit field that can change in place is a container
    image; a label change alone verifies nothing."""
    host = world.registry.host
    client, verifier, _ = webhook(image_patterns=(f"{host}/admission/*",))

    def modelcar(image: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "modelcar", "namespace": "ml"},
                "spec": {"containers": [{"name": "model", "image": image}]}}

    old = modelcar(world.good)
    relabelled = modelcar(world.good)
    relabelled["metadata"]["labels"] = {"rollout": "2"}
    assert _resp(client, review(relabelled, operation="UPDATE", old=old))["allowed"] is True
    assert verifier.calls == {}
    r = _resp(client, review(modelcar(world.unsigned), operation="UPDATE", old=old))
    assert r["allowed"] is False
    assert "spec.containers[0].image" in r["status"]["message"]
    assert "baseline/modelkit-signed" in r["status"]["message"]
    assert verifier.calls == {world.unsigned: 1}


# ---------------------------------------------------------------------- keyless
@pytest.fixture(scope="module")
def keyless_ref(world, sigstore_mock):  # noqa: F811
    """A ModelKit signed keyless (Fulcio certificate, Rekor entry, TSA timestamp) by the
    loopback Sigstore of tests/sigstore_mock — the one mock: Sigstore's services cannot
    run here for real — and pushed to the registry."""
    from kitaudit.signing.keyless import KeylessSigner

    ref = f"{world.registry.host}/admission/keyless:v1"
    ctx = world.tmp / "ctx-keyless"
    ctx.mkdir()
    (ctx / "Kitfile").write_text(KITFILE.format(name="m-keyless", licence="Apache-2.0"))
    (ctx / "model.bin").write_bytes(b"keyless weights" * 64)
    (ctx / "train.csv").write_text("a,b\n1,2\n")
    pack(ctx, tags=[ref], store=world.store)
    signer = KeylessSigner(_token(), trust_config=sigstore_mock)
    try:
        sign_local(world.store, ref, signer)
    finally:
        signer.close()
    push(ref, store=world.store, progress="none", **world.registry.net)
    return ref, str(sigstore_mock)


@pytest.mark.parametrize("identity, allowed", [(SUB, True), ("someone-else@test.example", False)])
def test_keyless_identity(world, webhook, keyless_ref, identity, allowed):
    ref, root = keyless_ref
    options = VerifyOptions(certificate_identity=identity, certificate_oidc_issuer=ISSUER,
                            trusted_root=root, offline=True, policies=[BASELINE])
    client, _, _ = webhook(options=options)
    r = _resp(client, isvc_review(inference_service("kit://" + ref)))
    assert r["allowed"] is allowed, r
    if not allowed:
        assert "baseline/modelkit-signed" in r["status"]["message"]


def test_image_under_pattern_that_is_not_a_modelkit(world, webhook):
    """An ordinary container image under an --image-pattern cannot be verified as a
    ModelKit: the failure policy applies and the message says why."""
    import json

    from kitaudit.mediatypes import OCI_MANIFEST
    from kitaudit.registry.transfer import open_client
    from kitaudit.registry.transport import NetOptions

    host = world.registry.host
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    with open_client(host, NetOptions.from_kwargs(**world.registry.net)) as c:
        digest = c.upload_bytes("admission/plain-image", config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                          "digest": digest, "size": len(config)},
                               "layers": []}).encode()
        c.put_manifest("admission/plain-image", "v1", manifest, OCI_MANIFEST)
    client, _, _ = webhook(image_patterns=(f"{host}/admission/*",))
    obj = {"metadata": {"name": "app"},
           "spec": {"containers": [{"name": "c", "image": f"{host}/admission/plain-image:v1"}]}}
    r = _resp(client, review(obj))
    assert r["allowed"] is False
    msg = r["status"]["message"]
    assert "is not a ModelKit" in msg and "failure policy: deny" in msg
