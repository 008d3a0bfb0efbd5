"""The admission webhook's HTTPS server and its timing behaviours: deadline → failure
policy, cache hits, never caching failures, one verification for concurrent requests,
warn mode, malformed reviews, TLS (trustme CA) and certificate reload.

**These tests use a fake verifier** (:class:`TimingVerifier`): a verification that
takes a chosen time and gives a chosen verdict is the only way to test deadlines and
the cache's bookkeeping deterministically. It stands in for ``kitaudit.verify`` only;
the server, TLS, AdmissionReview handling, cache and decision code are the real ones.
The real verification path, end to end against a registry, is in
``tests/test_admission_webhook.py``.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme

from kitaudit.admission.cache import ResultCache
from kitaudit.admission.server import AdmissionController, TLSFiles, WebhookConfig, WebhookServer
from kitaudit.admission.verifier import Verdict

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


# ---------------------------------------------------------------------- helpers
@dataclass
class TLSMaterial:
    ca: trustme.CA
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


def make_tls(tmp: Path, ca: trustme.CA | None = None) -> TLSMaterial:
    ca = ca or trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost", "kitaudit-webhook.kitaudit.svc")
    cert, key = tmp / "tls.crt", tmp / "tls.key"
    cert.write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
    key.write_bytes(issued.private_key_pem.bytes())
    return TLSMaterial(ca, cert, key)


class Client:
    """An API-server-like client: HTTPS, keep-alive, POST /validate with JSON."""

    def __init__(self, port: int, ctx: ssl.SSLContext, timeout: float = 15) -> None:
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx,
                                                timeout=timeout)

    def post(self, body: bytes | dict[str, Any], path: str = "/validate",
             content_type: str = "application/json") -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.conn.request("POST", path, body=data, headers={"Content-Type": content_type})
        resp = self.conn.getresponse()
        raw = resp.read()
        if resp.getheader("Content-Type", "").startswith("application/json"):
            return resp.status, json.loads(raw)
        return resp.status, raw.decode()

    def get(self, path: str) -> tuple[int, str]:
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        return resp.status, resp.read().decode()

    def close(self) -> None:
        self.conn.close()


_uid = iter(range(1, 10**9))


def review(obj: dict[str, Any], *, kind: str = "Pod", operation: str = "CREATE",
           old: dict[str, Any] | None = None, group: str = "", version: str = "v1",
           resource: str = "pods", namespace: str = "ml") -> dict[str, Any]:
    """An AdmissionReview shaped like the API server's."""
    uid = f"705ab4f5-6393-11e8-b7cc-{next(_uid):012d}"
    req: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "requestResource": {"group": group, "version": version, "resource": resource},
        "name": obj.get("metadata", {}).get("name", ""),
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "admin", "uid": "014fbff9a07c",
                     "groups": ["system:authenticated"]},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1",
                    "kind": "CreateOptions" if operation == "CREATE" else "UpdateOptions"},
    }
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}


def pod(ref: str, name: str = "model-server") -> dict[str, Any]:
    """A Pod with the KitOps init container unpacking ``ref``."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ml"},
            "spec": {"initContainers": [{"name": "kitops-init",
                                         "image": "ghcr.io/kitops-ml/kitops-init:v1",
                                         "env": [{"name": "MODELKIT_REF", "value": ref},
                                                 {"name": "UNPACK_PATH",
                                                  "value": "/home/user/modelkit"}]}],
                     "containers": [{"name": "server", "image": "python:3.12-slim",
                                     "args": ["serve", "/home/user/modelkit"]}]}}


def inference_service(uri: str, name: str = "iris") -> dict[str, Any]:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": "ml"},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"},
                                             "storageUri": uri}}}}


def isvc_review(obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return review(obj, kind="InferenceService", group="serving.kserve.io",
                  version="v1beta1", resource="inferenceservices", **kw)


# ---------------------------------------------------------------------- fake verifier
@dataclass
class TimingVerifier:
    """FAKE verifier for timing tests only (see the module docstring): ``verdicts`` maps
    a reference to (decision, failures, warnings, problems, fully_verified); ``delay``
    is how long each verification takes; ``calls`` counts verifications."""

    verdicts: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], bool]]
    delay: float = 0.0
    policy_hash: str = "sha256:policy"
    trust_hash: str = "sha256:trust"
    calls: dict[str, int] = field(default_factory=dict)
    resolves: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def resolve(self, reference: str) -> str:
        with self.lock:
            self.resolves += 1
        return reference.partition("@")[2] or D1

    def verify(self, reference: str, digest: str) -> Verdict:
        with self.lock:
            self.calls[reference] = self.calls.get(reference, 0) + 1
        time.sleep(self.delay)
        decision, failures, warnings, problems, full = self.verdicts[reference]
        return Verdict(reference, decision, digest, failures, warnings,  # type: ignore[arg-type]
                       problems, full)


PASS = ("pass", (), (), (), True)
DENY = ("deny", ("baseline/modelkit-signed: no verified signature for " + D1,), (), (), False)
ERROR = ("error", (), (), ("registry r.example: connection refused",), False)
WARNED = ("pass", (), ("strict/model-card: no intended use",), (), False)


@pytest.fixture
def tls(tmp_path) -> TLSMaterial:
    return make_tls(tmp_path)


@pytest.fixture
def serve(tls):
    """serve(verifier, **config) → (client, controller); stopped at the end."""
    started: list[tuple[WebhookServer, Client]] = []

    def start(verifier: Any, cache: ResultCache | None = None, **config: Any):
        controller = AdmissionController(verifier, WebhookConfig(**config), cache=cache)
        server = WebhookServer(controller, host="127.0.0.1", port=0,
                               tls=TLSFiles(str(tls.cert), str(tls.key))).start()
        client = Client(server.port, tls.client_context())
        started.append((server, client))
        return client, controller

    yield start
    for server, client in started:
        client.close()
        server.shutdown()


# ---------------------------------------------------------------------- tests
def test_allow_then_cache_hit_does_not_reverify(serve):
    v = TimingVerifier({"r.example/m/a:1": PASS})
    client, controller = serve(v)
    for op in ("CREATE", "UPDATE"):
        old = pod("r.example/m/other:1") if op == "UPDATE" else None
        status, body = client.post(review(pod("r.example/m/a:1"), operation=op, old=old))
        assert status == 200
        assert body["response"]["allowed"] is True
        assert "warnings" not in body["response"]
    assert v.calls == {"r.example/m/a:1": 1}
    assert controller.metrics.snapshot()["cache_hits"] == 1
    assert body["response"]["auditAnnotations"] == {"verified": f"r.example/m/a:1@{D1}",
                                                    "mode": "enforce"}
    # a pinned reference is answered from the cache without a thread hop, too
    pinned = f"r.example/m/p@{D2}"
    v.verdicts[pinned] = PASS
    for _ in range(3):
        assert client.post(review(pod(pinned)))[1]["response"]["allowed"] is True
    assert v.calls[pinned] == 1


@pytest.mark.parametrize("verdict", [DENY, ERROR, WARNED], ids=["deny", "error", "warned"])
def test_cache_never_stores_failures(serve, verdict):
    v = TimingVerifier({"r.example/m/a:1": verdict})
    client, controller = serve(v)
    for _ in range(3):
        status, body = client.post(review(pod("r.example/m/a:1")))
        assert status == 200
        assert body["response"]["allowed"] is (verdict is WARNED)
    assert v.calls == {"r.example/m/a:1": 3}
    assert len(controller.cache) == 0


def test_warn_mode_failure_is_not_cached(serve):
    v = TimingVerifier({"r.example/m/a:1": DENY})
    client, controller = serve(v, mode="warn")
    for _ in range(2):
        body = client.post(review(pod("r.example/m/a:1")))[1]["response"]
        assert body["allowed"] is True
        assert any(w.startswith("kitaudit: would deny: r.example/m/a:1") and
                   "baseline/modelkit-signed" in w for w in body["warnings"])
    assert v.calls["r.example/m/a:1"] == 2 and len(controller.cache) == 0


def test_deadline_exceeded_applies_failure_policy_deny(serve):
    v = TimingVerifier({"r.example/m/slow:1": PASS}, delay=2.5)
    client, controller = serve(v, timeout=0.4)
    t0 = time.monotonic()
    body = client.post(review(pod("r.example/m/slow:1")))[1]["response"]
    elapsed = time.monotonic() - t0
    assert elapsed < 1.8, elapsed  # answered at the deadline, not after the verification
    assert body["allowed"] is False
    msg = body["status"]["message"]
    assert "failure policy: deny" in msg and "did not finish within 0.4s" in msg
    assert "r.example/m/slow:1" in msg
    # the verification finishes in the background and, being a clean pass, is cached:
    # the API server's retry is answered without verifying again
    deadline = time.monotonic() + 10
    while len(controller.cache) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.post(review(pod("r.example/m/slow:1")))[1]["response"]["allowed"] is True
    assert v.calls == {"r.example/m/slow:1": 1}
    assert controller.metrics.snapshot()["deadline_exceeded"] == 1


def test_deadline_exceeded_with_failure_policy_allow(serve):
    v = TimingVerifier({"r.example/m/slow:1": DENY}, delay=1.0)
    client, _ = serve(v, timeout=0.3, failure_policy="allow")
    body = client.post(review(pod("r.example/m/slow:1")))[1]["response"]
    assert body["allowed"] is True
    assert any("allowed by failure policy" in w and "did not finish" in w
               for w in body["warnings"])


def test_error_applies_failure_policy(serve):
    v = TimingVerifier({"r.example/m/a:1": ERROR})
    client, _ = serve(v)
    body = client.post(review(pod("r.example/m/a:1")))[1]["response"]
    assert body["allowed"] is False
    assert "could not verify" in body["status"]["message"]
    assert "connection refused" in body["status"]["message"]
    client2, _ = serve(v, failure_policy="allow")
    body = client2.post(review(pod("r.example/m/a:1")))[1]["response"]
    assert body["allowed"] is True and "connection refused" in body["warnings"][0]


def test_concurrent_requests_share_one_verification(serve):
    v = TimingVerifier({"r.example/m/a:1": PASS}, delay=0.5)
    _, controller = serve(v)

    def one(_: int) -> bool:
        body = json.dumps(review(pod("r.example/m/a:1"))).encode()
        return controller.review(body)["response"]["allowed"]

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(one, range(8)))
    assert v.calls == {"r.example/m/a:1": 1}


def test_denial_names_rules_and_location(serve):
    v = TimingVerifier({"r.example/m/a:1": DENY, "r.example/m/b:1": PASS})
    client, _ = serve(v)
    obj = pod("r.example/m/a:1")
    obj["spec"]["containers"][0]["args"].append("--extra=kit://r.example/m/b:1")
    _status, body = client.post(review(obj))
    r = body["response"]
    assert r["allowed"] is False and r["status"]["code"] == 403
    msg = r["status"]["message"]
    assert r["auditAnnotations"] == {"denied": f"r.example/m/a:1@{D1}",
                                     "verified": f"r.example/m/b:1@{D1}", "mode": "enforce"}
    assert msg.startswith("kitaudit denied Pod ml/model-server:")
    assert "r.example/m/a:1 (spec.initContainers[0].env[0].value)" in msg
    assert "baseline/modelkit-signed: no verified signature" in msg
    assert "r.example/m/b:1" not in msg


def test_update_checks_only_new_references(serve):
    v = TimingVerifier({"r.example/m/a:1": DENY, "r.example/m/b:1": DENY})
    client, _ = serve(v)
    old = pod("r.example/m/a:1")
    new = pod("r.example/m/a:1")
    new["metadata"]["labels"] = {"x": "y"}
    body = client.post(review(new, operation="UPDATE", old=old))[1]["response"]
    assert body["allowed"] is True and v.calls == {}
    body = client.post(review(pod("r.example/m/b:1"), operation="UPDATE", old=old))[1]
    assert body["response"]["allowed"] is False and v.calls == {"r.example/m/b:1": 1}


def test_unverifiable_reference_denied(serve):
    v = TimingVerifier({})
    client, _ = serve(v)
    obj = pod("x")
    obj["spec"]["initContainers"][0]["env"][0] = {
        "name": "MODELKIT_REF", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
    body = client.post(review(obj))[1]["response"]
    assert body["allowed"] is False and "valueFrom" in body["status"]["message"]
    client2, _ = serve(v, mode="warn")
    body = client2.post(review(obj))[1]["response"]
    assert body["allowed"] is True and "valueFrom" in body["warnings"][0]


def test_no_modelkit_delete_and_connect_are_allowed(serve):
    v = TimingVerifier({})
    client, _ = serve(v)
    plain = {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c",
                                                                   "image": "nginx"}]}}
    assert client.post(review(plain))[1]["response"]["allowed"] is True
    body = review(pod("r.example/m/a:1"), operation="DELETE")
    body["request"]["oldObject"], body["request"]["object"] = body["request"]["object"], None
    assert client.post(body)[1]["response"]["allowed"] is True
    assert v.calls == {}


def test_malformed_reviews_get_400(serve):
    client, controller = serve(TimingVerifier({}))
    status, text = client.post(b"{not json")
    assert status == 400 and text.startswith("malformed AdmissionReview: body is not JSON")
    status, text = client.post({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                "request": {"operation": "CREATE"}})
    assert status == 400 and "request.uid is missing" in text
    bad = review(pod("r.example/m/a:1"), operation="UPDATE")
    status, text = client.post(bad)
    assert status == 400 and "request.oldObject is missing for UPDATE" in text
    status, text = client.post(b"{}", content_type="text/plain")
    assert status == 415
    status, text = client.post(b"{}", path="/mutate")
    assert status == 404
    # the connection is still usable after errors
    assert client.get("/healthz") == (200, "ok\n")
    assert controller.metrics.snapshot()["malformed"] == 3


def test_metrics_endpoint(serve):
    client, _ = serve(TimingVerifier({"r.example/m/a:1": PASS}))
    client.post(review(pod("r.example/m/a:1")))
    status, text = client.get("/metrics")
    assert status == 200
    assert "kitaudit_admission_reviews_allowed 1" in text
    assert "kitaudit_admission_cache_entries 1" in text


def test_tls_untrusted_client_fails_and_plain_http_refused(serve, tls):
    client, _ = serve(TimingVerifier({}))
    port = client.conn.port
    other = Client(port, ssl.create_default_context())  # does not trust the test CA
    with pytest.raises(ssl.SSLCertVerificationError):
        other.get("/healthz")
    other.close()
    plain = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        plain.request("GET", "/healthz")
        plain.getresponse().read()
    plain.close()
    assert client.get("/healthz")[0] == 200


def test_certificate_reload(tmp_path):
    first = make_tls(tmp_path)
    files = TLSFiles(str(first.cert), str(first.key))
    controller = AdmissionController(TimingVerifier({}))
    server = WebhookServer(controller, host="127.0.0.1", port=0, tls=files).start()
    try:
        assert Client(server.port, first.client_context()).get("/healthz")[0] == 200
        assert not files.reload_if_changed()
        second_ca = trustme.CA()
        time.sleep(0.01)
        make_tls(tmp_path, second_ca)  # rewrites tls.crt/tls.key in place
        import os

        st = os.stat(first.cert)
        os.utime(first.cert, (st.st_atime, st.st_mtime + 5))
        assert files.reload_if_changed()
        fresh = Client(server.port, TLSMaterial(second_ca, first.cert, first.key)
                       .client_context())
        assert fresh.get("/healthz")[0] == 200
        with pytest.raises(ssl.SSLCertVerificationError):
            Client(server.port, first.client_context()).get("/healthz")
    finally:
        server.shutdown()


def test_bad_tls_files_are_a_usage_error(tmp_path):
    from kitaudit.errors import UsageError

    (tmp_path / "c.pem").write_text("nope")
    with pytest.raises(UsageError, match="cannot load the TLS certificate"):
        TLSFiles(str(tmp_path / "c.pem"), str(tmp_path / "c.pem"))


def test_config_validation():
    from kitaudit.errors import UsageError

    with pytest.raises(UsageError):
        WebhookConfig(mode="audit")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        WebhookConfig(failure_policy="ignore")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="at most 30"):
        WebhookConfig(timeout=31)


@pytest.mark.parametrize("tag_ttl, resolves", [(0.0, 3), (60.0, 1)])
def test_tag_resolution_cache(serve, tag_ttl, resolves):
    v = TimingVerifier({"r.example/m/a:1": PASS})
    client, _ = serve(v, tag_ttl=tag_ttl)
    for _ in range(3):
        assert client.post(review(pod("r.example/m/a:1")))[1]["response"]["allowed"] is True
    assert v.resolves == resolves and v.calls == {"r.example/m/a:1": 1}


def test_connection_limit(serve, monkeypatch, tls):
    import kitaudit.admission.server as srv

    monkeypatch.setattr(srv, "MAX_CONNECTIONS", 2)
    first, _ = serve(TimingVerifier({}))
    assert first.get("/healthz")[0] == 200
    second = Client(first.conn.port, tls.client_context(), timeout=5)
    assert second.get("/healthz")[0] == 200
    third = Client(first.conn.port, tls.client_context(), timeout=5)
    with pytest.raises((ConnectionError, ssl.SSLError, http.client.HTTPException, OSError)):
        third.get("/healthz")
    third.close()
    second.close()  # frees a slot once the server sees the connection close
    deadline = time.monotonic() + 5
    while True:
        fourth = Client(first.conn.port, tls.client_context(), timeout=5)
        try:
            assert fourth.get("/healthz")[0] == 200
            break
        except (ConnectionError, ssl.SSLError, http.client.HTTPException, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            fourth.close()
    assert first.get("/healthz")[0] == 200


def test_too_many_references_denied(serve):
    import kitaudit.admission.server as srv

    v = TimingVerifier({})
    client, _ = serve(v)
    obj = pod("r.example/m/a:1")
    obj["spec"]["containers"][0]["args"] = [f"kit://r.example/m/x:{i}"
                                            for i in range(srv.MAX_REFERENCES + 1)]
    r = client.post(review(obj))[1]["response"]
    assert r["allowed"] is False and "at most 64 are verified" in r["status"]["message"]
    assert v.calls == {}
