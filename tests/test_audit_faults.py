"""The crawler against registry failures and request economy, through the test proxy
(tests/registry_fixtures.py) in front of a real docker-registry: 500s and 401s on one
repository, 429 with Retry-After, a malformed Kitfile, the OCI referrers API (which the
proxy serves on top of distribution 2.8), and what an unchanged recrawl sends."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kitaudit.audit.crawl import crawl
from kitaudit.registry.transfer import open_client, push
from kitaudit.registry.transport import NetOptions
from kitaudit.signing import keys
from kitaudit.signing.attach import sign_reference
from kitaudit.signing.signer import KeySigner
from kitaudit.store import Store
from kitaudit.verify import VerifyOptions
from tests.registry_fixtures import build_modelkit

FAST = {"plain_http": True, "max_attempts": 2, "max_retry_seconds": 5.0}


def _seed(store: Store, host: str, names: list[str]) -> dict[str, str]:
    out = {}
    for name in names:
        ref = f"{host}/faults/{name}:v1"
        kit = build_modelkit(store, ref, seed=name)
        push(ref, store=store, progress="none", plain_http=True)
        out[name] = kit.digest
    return out


@pytest.fixture
def seeded(make_registry: Any, tmp_path: Path, kit_home: Path) -> Any:
    reg = make_registry()
    store = Store(tmp_path / "store")
    digests = _seed(store, reg.host, ["one", "two", "three"])
    return reg, store, digests


def test_500_on_one_repository_is_recorded_and_crawl_goes_on(seeded: Any, fault_proxy: Any,
                                                             tmp_path: Path) -> None:
    reg, _store, _digests = seeded
    proxy = fault_proxy(reg)
    proxy.add("status", path=r"/v2/faults/two/tags/list", status=500, times=None)
    db = tmp_path / "a.db"
    stats = crawl(proxy.host, db, net=FAST)
    assert stats.status == "complete" and stats.errors == 1 and stats.modelkits == 2
    conn = sqlite3.connect(db)
    err = conn.execute("SELECT repository, stage, status FROM errors").fetchone()
    assert err == (f"{proxy.host}/faults/two", "tags", 500)
    assert dict(conn.execute("SELECT name, status FROM repositories")) == {
        f"{proxy.host}/faults/one": "ok", f"{proxy.host}/faults/two": "error",
        f"{proxy.host}/faults/three": "ok"}


def test_401_and_malformed_manifest(seeded: Any, fault_proxy: Any, tmp_path: Path) -> None:
    reg, _store, _digests = seeded
    # a ModelKit manifest whose config (the Kitfile) is not JSON
    with open_client(reg.host, NetOptions(plain_http=True)) as client:
        client.put_manifest("faults/odd", "v1", b'{"schemaVersion": 2, "mediaType": '
                            b'"application/vnd.oci.image.manifest.v1+json", "config": '
                            b'{"mediaType": "application/vnd.kitops.modelkit.config.v1+json", '
                            b'"digest": "' + _upload(client, b"not json at all").encode()
                            + b'", "size": 15}, "layers": []}')
    proxy = fault_proxy(reg)
    proxy.add("status", path=r"/v2/faults/one/manifests/v1", status=401, times=None,
              headers={"WWW-Authenticate": 'Basic realm="test"'})
    db = tmp_path / "b.db"
    stats = crawl(proxy.host, db, net=FAST)
    assert stats.status == "complete"
    conn = sqlite3.connect(db)
    errors = {(r[0].rsplit("/", 1)[-1], r[1], r[2]) for r in conn.execute(
        "SELECT repository, stage, status FROM errors")}
    assert ("one", "manifest", 401) in errors
    assert any(name == "odd" and stage == "kitfile" for name, stage, _ in errors)
    # the malformed Kitfile still leaves a ModelKit row (without a Kitfile)
    kind = conn.execute("SELECT m.kind FROM manifests m JOIN tags t ON t.digest = m.digest "
                        "WHERE t.repository LIKE '%/faults/odd'").fetchone()
    assert kind == ("modelkit",)
    assert stats.modelkits == 3  # two, three, odd


def _upload(client: Any, data: bytes) -> str:
    return str(client.upload_bytes("faults/odd", data))


def test_429_retry_after_pauses_the_crawl(seeded: Any, fault_proxy: Any,
                                          tmp_path: Path) -> None:
    reg, _store, _digests = seeded
    proxy = fault_proxy(reg)
    proxy.add("status", path=r"/v2/faults/one/tags/list", status=429, times=1,
              headers={"Retry-After": "1"})
    started = time.monotonic()
    stats = crawl(proxy.host, tmp_path / "c.db", net={"plain_http": True})
    assert time.monotonic() - started >= 1.0
    assert stats.errors == 0 and stats.modelkits == 3
    hits = [e for e in proxy.exchanges if e.path.startswith("/v2/faults/one/tags/list")]
    assert [e.status for e in hits][:2] == [429, 200]


def _keys(tmp: Path) -> tuple[KeySigner, Path]:
    priv = ec.generate_private_key(ec.SECP256R1())
    pub = tmp / "k.pub"
    pub.write_bytes(priv.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return KeySigner(keys.LoadedKey(priv, "k")), pub


def test_referrers_api_and_cheap_recrawl(seeded: Any, fault_proxy: Any,
                                         tmp_path: Path) -> None:
    reg, _store, digests = seeded
    proxy = fault_proxy(reg, referrers_api=True, page_size=1)
    signer, pub = _keys(tmp_path)
    sign_reference(f"{proxy.host}/faults/one:v1", signer, remote=True, plain_http=True)
    opts = VerifyOptions(keys=[str(pub)], require_sbom=False)
    db = tmp_path / "d.db"
    stats = crawl(proxy.host, db, options=opts, net={"plain_http": True})
    assert stats.status == "complete" and stats.errors == 0
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT source, verified FROM signatures WHERE subject_digest=?",
                        (digests["one"],)).fetchall()
    assert rows == [("referrer", 1)]
    assert conn.execute("SELECT decision FROM manifests WHERE digest=?",
                        (digests["one"],)).fetchone() == ("pass",)
    conn.close()
    proxy.clear()
    again = crawl(proxy.host, db, options=opts, net={"plain_http": True})
    assert again.unchanged == 3 and again.manifests_new == 0
    methods = {(e.method, _kind(e.path)) for e in proxy.exchanges}
    # an unchanged recrawl: catalog, tag lists, HEAD per tag, one referrers listing per kit
    assert methods <= {("GET", "catalog"), ("GET", "tags"), ("HEAD", "manifest"),
                       ("GET", "referrers")}
    # a new signature is noticed through the referrers API
    sign_reference(f"{proxy.host}/faults/two:v1", signer, remote=True, plain_http=True)
    third = crawl(proxy.host, db, options=opts, net={"plain_http": True})
    assert third.unchanged == 2
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT signed FROM manifests WHERE digest=?",
                        (digests["two"],)).fetchone() == (1,)


def _kind(path: str) -> str:
    if "/_catalog" in path:
        return "catalog"
    if "/tags/list" in path:
        return "tags"
    if "/referrers/" in path:
        return "referrers"
    if "/manifests/" in path:
        return "manifest"
    return "blob" if "/blobs/" in path else path


def test_unchanged_recrawl_with_fallback_tags_sends_only_heads(seeded: Any, fault_proxy: Any,
                                                               tmp_path: Path) -> None:
    reg, _store, _digests = seeded
    signer, _pub = _keys(tmp_path)
    sign_reference(f"{reg.host}/faults/three:v1", signer, remote=True, plain_http=True)
    proxy = fault_proxy(reg)
    db = tmp_path / "e.db"
    crawl(proxy.host, db, net={"plain_http": True})
    cold = len(proxy.exchanges)
    proxy.clear()
    # a 429 on one HEAD: the fast path hands it to the client, which waits and retries
    proxy.add("status", method="HEAD", path=r"/faults/two/manifests/v1", status=429,
              times=1, headers={"Retry-After": "0"})
    stats = crawl(proxy.host, db, net={"plain_http": True})
    assert stats.unchanged == 3 and stats.errors == 0
    heads = [e.status for e in proxy.exchanges if e.method == "HEAD"
             and e.path == "/v2/faults/two/manifests/v1"]
    assert heads == [429, 200]
    kinds = [(e.method, _kind(e.path)) for e in proxy.exchanges]
    # one probe of the referrers API per crawl; otherwise listings and HEADs only
    assert kinds.count(("GET", "referrers")) == 1
    assert set(kinds) <= {("GET", "catalog"), ("GET", "tags"), ("HEAD", "manifest"),
                          ("GET", "referrers")}
    assert len(proxy.exchanges) < cold
    # the referrers fallback tag moved: only that kit is read again
    sign_reference(f"{reg.host}/faults/three:v1", signer, remote=True, plain_http=True)
    proxy.clear()
    again = crawl(proxy.host, db, net={"plain_http": True})
    assert again.unchanged == 2
    conn = sqlite3.connect(db)
    n = conn.execute("SELECT count(*) FROM signatures s JOIN manifests m ON "
                     "m.digest = s.subject_digest JOIN tags t ON t.digest = m.digest "
                     "WHERE t.repository LIKE '%/faults/three'").fetchone()[0]
    assert n == 2
    assert json.loads(json.dumps(again.to_dict()))["errors"] == 0


def test_same_modelkit_in_two_repositories(seeded: Any, tmp_path: Path) -> None:
    """One digest, two repositories: one manifests row, tags in both, and the referrers
    read where it was first recorded — an unchanged recrawl reads neither again."""
    from kitaudit.registry.transfer import remote_tag

    reg, _store, digests = seeded
    remote_tag(f"{reg.host}/faults/one:v1", f"{reg.host}/faults/copy:v1", plain_http=True)
    db = tmp_path / "f.db"
    first = crawl(reg.host, db, net={"plain_http": True})
    assert first.modelkits == 4 and first.errors == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM tags WHERE digest=?",
                        (digests["one"],)).fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM manifests").fetchone() == (3,)
    conn.close()
    again = crawl(reg.host, db, net={"plain_http": True})
    assert again.unchanged == 4 and again.modelkits == 4 and again.referrers == 0


@pytest.mark.parametrize("referrers_api", [False, True])
def test_signature_attached_only_to_a_copy_is_seen(seeded: Any, fault_proxy: Any,
                                                   tmp_path: Path, referrers_api: bool) -> None:
    """A ModelKit copied to a second repository and signed only there: the crawl reads
    the referrers of both repositories and verifies their union (fallback tags, and the
    referrers API through the proxy); an unchanged recrawl reads nothing again and keeps
    the copy's signature."""
    from kitaudit.registry.transfer import remote_tag

    reg, _store, digests = seeded
    host = fault_proxy(reg, referrers_api=True).host if referrers_api else reg.host
    remote_tag(f"{reg.host}/faults/one:v1", f"{reg.host}/faults/copy:v1", plain_http=True)
    signer, pub = _keys(tmp_path)
    opts = VerifyOptions(keys=[str(pub)], require_sbom=False)
    db = tmp_path / "copy.db"
    first = crawl(host, db, options=opts, net={"plain_http": True})
    assert first.errors == 0 and first.modelkits == 4

    def state(path: Path) -> tuple[Any, ...]:
        conn = sqlite3.connect(path)
        try:
            return (conn.execute("SELECT signed, decision FROM manifests WHERE digest=?",
                                 (digests["one"],)).fetchone(),
                    conn.execute("SELECT DISTINCT repository FROM referrers WHERE "
                                 "subject_digest=?", (digests["one"],)).fetchall())
        finally:
            conn.close()

    assert state(db) == ((0, "deny"), [])
    sign_reference(f"{host}/faults/copy:v1", signer, remote=True, plain_http=True)
    second = crawl(host, db, options=opts, net={"plain_http": True})
    assert second.errors == 0
    assert state(db) == ((1, "pass"), [(f"{host}/faults/copy",)])
    third = crawl(host, db, options=opts, net={"plain_http": True})
    assert third.unchanged == 4 and third.referrers == 0 and third.errors == 0
    assert state(db) == ((1, "pass"), [(f"{host}/faults/copy",)])
    # a cold crawl sees it too
    fresh = tmp_path / "fresh.db"
    crawl(host, fresh, options=opts, net={"plain_http": True})
    assert state(fresh) == ((1, "pass"), [(f"{host}/faults/copy",)])


def test_authenticated_registry(make_registry: Any, tmp_path: Path, kit_home: Path) -> None:
    """htpasswd auth: with the stored login the crawl reads everything; without it the
    catalog is refused and the crawl fails with one clear error, recorded as a row."""
    from kitaudit.errors import KitauditError
    from kitaudit.registry.credentials import login, logout

    reg = make_registry(auth="htpasswd")
    login(reg.host, reg.username, reg.password, plain_http=True)
    store = Store(tmp_path / "store")
    ref = f"{reg.host}/secure/model:v1"
    build_modelkit(store, ref, seed="secure")
    push(ref, store=store, progress="none", plain_http=True)
    stats = crawl(reg.host, tmp_path / "ok.db", net={"plain_http": True})
    assert stats.modelkits == 1 and stats.errors == 0
    again = crawl(reg.host, tmp_path / "ok.db", net={"plain_http": True})  # HEADs, with auth
    assert again.unchanged == 1 and again.errors == 0
    logout(reg.host)
    db = tmp_path / "denied.db"
    with pytest.raises(KitauditError, match="cannot list the repositories"):
        crawl(reg.host, db, net={"plain_http": True})
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status FROM crawls").fetchone() == ("failed",)
    assert conn.execute("SELECT stage, status FROM errors").fetchone() == ("catalog", 401)
