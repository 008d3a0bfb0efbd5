"""Push, pull (with filters), remote tag/remove/list against a real docker-registry."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from kitaudit.errors import DigestMismatch, NotFound
from kitaudit.registry import (
    NetOptions,
    RegistryClient,
    fetch_kitfile,
    pull,
    push,
    remote_config,
    remote_list_tags,
    remote_manifest,
    remote_remove,
    remote_tag,
)
from kitaudit.store import Store
from tests.registry_fixtures import build_modelkit

pytestmark = pytest.mark.registry


def _stores(tmp_path: Path) -> tuple[Store, Store]:
    return Store(tmp_path / "src"), Store(tmp_path / "dst")


def test_push_then_pull_round_trip(registry, tmp_path, kit_home):
    src, dst = _stores(tmp_path)
    ref = f"{registry.host}/team/roundtrip:v1"
    kit = build_modelkit(src, ref, seed="rt")
    res = push(ref, store=src, progress="none", **registry.net)
    assert res.digest == kit.digest
    assert {b.action for b in res.blobs} == {"uploaded"}
    assert len(res.blobs) == 6  # config + 5 layers

    got = pull(ref, store=dst, progress="none", **registry.net)
    assert got.digest == kit.digest and not got.partial
    for digest, data in kit.blobs.items():
        assert dst.blob_path(digest).read_bytes() == data
    desc, _manifest, raw = dst.get_manifest(ref)
    assert raw == kit.raw and desc["digest"] == kit.digest
    assert list(dst.ingest_dir.iterdir()) == []


def test_repush_unchanged_touches_no_blob(registry, tmp_path, kit_home):
    src, _ = _stores(tmp_path)
    ref = f"{registry.host}/team/repush:v1"
    build_modelkit(src, ref, seed="repush")
    push(ref, store=src, progress="none", **registry.net)
    started = time.monotonic()
    again = push(ref, store=src, progress="none", **registry.net)
    elapsed = time.monotonic() - started
    assert {b.action for b in again.blobs} == {"skipped"}
    assert elapsed < 1.0


def test_push_to_other_tags_and_dest(registry, tmp_path, kit_home):
    src, _dst = _stores(tmp_path)
    ref = f"{registry.host}/team/multi:a"
    kit = build_modelkit(src, ref, seed="multi")
    res = push(ref, f"{registry.host}/team/multi:b,c", store=src, progress="none",
               **registry.net)
    assert res.tags == ["b", "c"]
    tags = dict(remote_list_tags(f"{registry.host}/team/multi", **registry.net))
    assert set(tags) == {f"{registry.host}/team/multi:b", f"{registry.host}/team/multi:c"}
    assert all(d["digest"] == kit.digest for d in tags.values())


def test_cross_repo_push_mounts(registry, tmp_path, kit_home):
    src, _ = _stores(tmp_path)
    ref = f"{registry.host}/team/mount-src:v1"
    build_modelkit(src, ref, seed="mount")
    push(ref, store=src, progress="none", **registry.net)
    res = push(ref, f"{registry.host}/team/mount-dst:v1", store=src, progress="none",
               **registry.net)
    assert {b.action for b in res.blobs} == {"mounted"}


def test_filtered_pull_fetches_only_selected(registry, fault_proxy, tmp_path, kit_home):
    src, dst = _stores(tmp_path)
    ref = f"{registry.host}/team/filtered:v1"
    kit = build_modelkit(src, ref, seed="filt", sizes={"training": 200_000})
    push(ref, store=src, progress="none", **registry.net)
    proxy = fault_proxy(registry)
    pref = f"{proxy.host}/team/filtered:v1"
    res = pull(pref, store=dst, filters=["dataset:validation", "model"], progress="none",
               **proxy.net)
    assert res.partial
    wanted = {kit.layers["validation"], kit.layers["model"]}
    config_digest = kit.manifest["config"]["digest"]
    for digest in kit.blobs:
        if digest in wanted or digest == config_digest:
            assert dst.has_blob(digest)
            assert proxy.bytes_for(digest) == len(kit.blobs[digest])
        else:
            assert not dst.has_blob(digest)
            assert proxy.bytes_for(digest) == 0
    # no request at all for the unselected blobs, not even a HEAD
    touched = {e.path.split("/blobs/")[-1] for e in proxy.exchanges if "/blobs/" in e.path}
    assert touched == wanted | {config_digest}


def test_filter_config_only(registry, tmp_path, kit_home):
    src, dst = _stores(tmp_path)
    ref = f"{registry.host}/team/cfgonly:v1"
    kit = build_modelkit(src, ref, seed="cfg")
    push(ref, store=src, progress="none", **registry.net)
    pull(ref, store=dst, filters=["config"], progress="none", **registry.net)
    assert dst.has_blob(kit.manifest["config"]["digest"])
    assert not any(dst.has_blob(d) for d in kit.layers.values())


def test_remote_tag_by_manifest_put(registry, fault_proxy, tmp_path, kit_home):
    src, _ = _stores(tmp_path)
    ref = f"{registry.host}/team/retag:challenger"
    kit = build_modelkit(src, ref, seed="retag")
    push(ref, store=src, progress="none", **registry.net)
    proxy = fault_proxy(registry)
    out = remote_tag(f"{proxy.host}/team/retag:challenger", "champion", **proxy.net)
    assert out["digest"] == kit.digest
    assert not [e for e in proxy.exchanges if "/blobs/" in e.path]
    assert [e.method for e in proxy.exchanges if "/manifests/" in e.path] == ["GET", "PUT"]
    desc, _manifest, raw = remote_manifest(f"{registry.host}/team/retag:champion",
                                          **registry.net)
    assert desc["digest"] == kit.digest and raw == kit.raw


def test_remote_config_info_and_kitfile(registry, tmp_path, kit_home):
    src, _ = _stores(tmp_path)
    ref = f"{registry.host}/team/info:v1"
    kit = build_modelkit(src, ref, seed="info")
    push(ref, store=src, progress="none", **registry.net)
    config = remote_config(ref, **registry.net)
    assert config == kit.blobs[kit.manifest["config"]["digest"]]
    pytest.importorskip("kitaudit.kitfile")
    digest, kitfile = fetch_kitfile(ref, **registry.net)
    assert digest == kit.digest
    assert kitfile.package.name == "test-info"


def test_remote_remove(registry, tmp_path, kit_home):
    src, _ = _stores(tmp_path)
    ref = f"{registry.host}/team/removeme:v1"
    kit = build_modelkit(src, ref, seed="rm")
    push(ref, store=src, progress="none", **registry.net)
    assert remote_remove(ref, **registry.net) == kit.digest
    with pytest.raises(NotFound):
        remote_manifest(ref, **registry.net)


def test_missing_reference_is_clear(registry, tmp_path, kit_home):
    with pytest.raises(NotFound) as err:
        pull(f"{registry.host}/team/nothing-here:v9", store=Store(tmp_path / "s"),
             progress="none", **registry.net)
    assert "not found" in str(err.value)


def test_chunked_upload_and_resumed_download(registry, tmp_path, kit_home):
    """Chunked PATCH path (small chunk size forced) and a blob bigger than one chunk."""
    store = Store(tmp_path / "s")
    data = hashlib.sha256(b"chunk").digest() * 40000  # 1.28 MB
    digest = store.put_blob(data)
    client = RegistryClient(registry.host, net=NetOptions(plain_http=True))
    client.monolithic_limit = 0
    client.chunk_size = 300_000
    client.upload_blob("team/chunked", digest, len(data), store.blob_path(digest))
    assert client.blob_size("team/chunked", digest) == len(data)
    assert client.get_blob_bytes("team/chunked", digest) == data
    client.close()


def test_resume_from_partial_ingest_file(registry, tmp_path, kit_home):
    store = Store(tmp_path / "s")
    data = hashlib.sha256(b"resume").digest() * 20000
    digest = store.put_blob(data)
    client = RegistryClient(registry.host, net=NetOptions(plain_http=True))
    client.upload_blob("team/resume", digest, len(data), store.blob_path(digest))
    dst = Store(tmp_path / "d")
    # leave a partial ingest file, as an interrupted pull would
    w = dst.blob_writer(digest, len(data), resume=True)
    w.write(data[:123_456])
    w.abort()
    w2 = dst.blob_writer(digest, len(data), resume=True)
    assert w2.offset == 123_456
    with w2:
        written = client.download_blob("team/resume", digest, w2, size=len(data))
    assert written == len(data) - 123_456
    assert dst.blob_path(digest).read_bytes() == data
    client.close()


def test_wrong_digest_leaves_nothing(registry, tmp_path, kit_home):
    """A blob that does not hash to the digest asked for is refused and not stored."""
    store = Store(tmp_path / "s")
    data = b"real content" * 100
    digest = store.put_blob(data)
    client = RegistryClient(registry.host, net=NetOptions(plain_http=True))
    client.upload_blob("team/wrong", digest, len(data), store.blob_path(digest))
    dst = Store(tmp_path / "d")
    fake = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatch):
        with dst.blob_writer(fake, len(data)) as w:
            client.download_blob("team/wrong", digest, w, size=len(data))
    assert not dst.has_blob(fake) and list(dst.ingest_dir.iterdir()) == []
    client.close()


def test_pushed_manifest_is_byte_identical(registry, tmp_path, kit_home):
    src, _ = _stores(tmp_path)
    ref = f"{registry.host}/team/identical:v1"
    kit = build_modelkit(src, ref, seed="ident")
    push(ref, store=src, progress="none", **registry.net)
    client = RegistryClient(registry.host, net=NetOptions(plain_http=True))
    man = client.get_manifest("team/identical", "v1")
    assert man.raw == kit.raw and man.digest == kit.digest
    assert json.loads(man.raw)["artifactType"] == "application/vnd.kitops.modelkit.manifest.v1+json"
    client.close()


def _chunky_client(server) -> RegistryClient:
    client = RegistryClient(server.host, net=NetOptions(plain_http=True))
    client.monolithic_limit = 0
    client.chunk_size = 100_000
    return client


def test_quirk_201_on_patch_is_accepted(registry, fault_proxy, tmp_path, kit_home):
    """ECR answers 201 (not 202) to PATCH: the upload goes on."""
    proxy = fault_proxy(registry)
    proxy.add("rewrite", method="PATCH", path=r"/blobs/uploads/", status=201, times=None)
    store = Store(tmp_path / "s")
    data = hashlib.sha256(b"ecr").digest() * 10_000
    digest = store.put_blob(data)
    client = _chunky_client(proxy)
    client.upload_blob("quirks/ecr", digest, len(data), store.blob_path(digest))
    assert sum(1 for e in proxy.exchanges if e.method == "PATCH" and e.status == 201) == 4
    assert client.get_blob_bytes("quirks/ecr", digest) == data
    client.close()


def test_quirk_416_on_patch_falls_back_to_monolithic(registry, fault_proxy, tmp_path,
                                                     kit_home):
    """ghcr.io answers 416 to large PATCHes: one monolithic PUT instead."""
    proxy = fault_proxy(registry)
    proxy.add("status", method="PATCH", path=r"/blobs/uploads/", status=416, body=b"")
    store = Store(tmp_path / "s")
    data = hashlib.sha256(b"ghcr").digest() * 10_000
    digest = store.put_blob(data)
    client = _chunky_client(proxy)
    client.upload_blob("quirks/ghcr", digest, len(data), store.blob_path(digest))
    puts = [e for e in proxy.exchanges if e.method == "PUT" and "/blobs/uploads/" in e.path]
    assert len(puts) == 1 and puts[0].request_bytes == len(data)
    assert client.get_blob_bytes("quirks/ghcr", digest) == data
    client.close()


def test_quirk_repository_not_created_on_push(registry, fault_proxy, tmp_path, kit_home):
    proxy = fault_proxy(registry)
    proxy.add("status", method="POST", path=r"/blobs/uploads/", status=404, times=None,
              body=b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not '
                   b'known to registry"}]}')
    src = Store(tmp_path / "s")
    ref = f"{proxy.host}/quirks/absent:v1"
    build_modelkit(src, ref, seed="absent")
    with pytest.raises(NotFound) as err:
        push(ref, store=src, progress="none", **proxy.net)
    assert "does not exist" in str(err.value)
    assert "create the repository" in (err.value.fix or "")


def test_remote_tag_into_other_repository_mounts(registry, fault_proxy, tmp_path, kit_home):
    src = Store(tmp_path / "s")
    ref = f"{registry.host}/team/tag-src:v1"
    kit = build_modelkit(src, ref, seed="tag-other")
    push(ref, store=src, progress="none", **registry.net)
    proxy = fault_proxy(registry)
    remote_tag(f"{proxy.host}/team/tag-src:v1", f"{proxy.host}/team/tag-dst:prod",
               **proxy.net)
    assert not [e for e in proxy.exchanges if e.method in ("GET", "PATCH")
                and "/blobs/" in e.path]
    assert not [e for e in proxy.exchanges if e.method == "PUT" and "/blobs/" in e.path]
    desc, _m, _r = remote_manifest(f"{registry.host}/team/tag-dst:prod", **registry.net)
    assert desc["digest"] == kit.digest


def test_chunked_upload_resumes_after_failed_chunk(registry, fault_proxy, tmp_path, kit_home):
    """A PATCH answered 500 is resumed from the offset the upload session reports,
    in the same session (one POST), not restarted from byte 0."""
    proxy = fault_proxy(registry)
    store = Store(tmp_path / "s")
    data = hashlib.sha256(b"resume-upload").digest() * 10_000
    digest = store.put_blob(data)
    client = _chunky_client(proxy)
    # let two chunks through, then fail the third once
    proxy.add("status", method="PATCH", path=r"/blobs/uploads/", status=500, skip=2)
    client.upload_blob("quirks/resume", digest, len(data), store.blob_path(digest))
    posts = [e for e in proxy.exchanges if e.method == "POST"]
    statuses = [e for e in proxy.exchanges if e.method == "GET" and "/blobs/uploads/" in e.path]
    assert len(posts) == 1 and len(statuses) == 1
    assert sum(e.request_bytes for e in proxy.exchanges if e.method == "PATCH"
               and e.status == 202) == len(data)
    assert client.get_blob_bytes("quirks/resume", digest) == data
    client.close()


def test_push_and_pull_through_http_proxy(registry, fault_proxy, tmp_path, kit_home):
    """``--proxy``: every request, blob bodies included, goes through the proxy."""
    proxy = fault_proxy(registry)
    src, dst = _stores(tmp_path)
    ref = f"{registry.host}/team/proxied:v1"
    kit = build_modelkit(src, ref, seed="proxied")
    push(ref, store=src, progress="none", proxy=f"http://{proxy.host}", **registry.net)
    pull(ref, store=dst, progress="none", proxy=f"http://{proxy.host}", **registry.net)
    assert proxy.forward_requests > 0
    for digest, data in kit.blobs.items():
        assert dst.blob_path(digest).read_bytes() == data
        assert proxy.bytes_for(digest) == len(data)


def test_empty_layer_round_trip(registry, tmp_path, kit_home):
    src, dst = _stores(tmp_path)
    ref = f"{registry.host}/team/empty-layer:v1"
    kit = build_modelkit(src, ref, seed="empty", sizes={"docs": 0})
    push(ref, store=src, progress="none", **registry.net)
    pull(ref, store=dst, progress="none", **registry.net)
    assert dst.blob_path(kit.layers["docs"]).read_bytes() == b""


def test_tags_and_catalog_pagination(registry, fault_proxy, tmp_path, kit_home):
    src, _ = _stores(tmp_path)
    ref = f"{registry.host}/paged/kit:t0"
    build_modelkit(src, ref, seed="paged")
    push(ref, f"{registry.host}/paged/kit:t0,t1,t2,t3,t4", store=src, progress="none",
         **registry.net)
    push(ref, f"{registry.host}/paged/other:t0", store=src, progress="none", **registry.net)
    proxy = fault_proxy(registry)
    client = RegistryClient(proxy.host, net=NetOptions(plain_http=True))
    # distribution 2.8 ignores n= for tags (all in one page, storage order) ...
    assert sorted(client.list_tags("paged/kit", page_size=2)) == ["t0", "t1", "t2", "t3", "t4"]
    # ... but pages the catalog with Link headers
    repos = client.catalog(page_size=1)
    assert {"paged/kit", "paged/other"} <= set(repos) and len(repos) == len(set(repos))
    pages = [e for e in proxy.exchanges if "/_catalog" in e.path]
    assert len(pages) >= 2 and len(pages) >= len(repos)
    client.close()
