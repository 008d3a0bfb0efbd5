"""The local store: atomic blob writes, tags, referrers, GC, concurrency, skopeo interop."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess

import pytest

from kitaudit import mediatypes as mt
from kitaudit.errors import DigestMismatch, NotFound
from kitaudit.store import Store


def _manifest(store: Store, payload: bytes, artifact_type: str | None = None,
              subject: dict | None = None) -> bytes:
    cfg = store.put_blob(b"{}")
    layer = store.put_blob(payload)
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = {"mediaType": mt.OCI_EMPTY, "digest": cfg, "size": 2}
    doc["layers"] = [{"mediaType": "application/octet-stream", "digest": layer,
                      "size": len(payload)}]
    if subject:
        doc["subject"] = subject
    return json.dumps(doc).encode()


def test_layout_created(tmp_path):
    store = Store(tmp_path / "s")
    assert json.loads((tmp_path / "s" / "oci-layout").read_text()) == {
        "imageLayoutVersion": "1.0.0"}
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["manifests"] == []
    assert store.entries() == []


def test_blob_writer_rejects_mismatch_and_leaves_nothing(tmp_path):
    store = Store(tmp_path)
    wrong = "sha256:" + "0" * 64
    with pytest.raises(DigestMismatch):
        with store.blob_writer(wrong) as w:
            w.write(b"hello")
    assert not store.has_blob(wrong)
    assert list(store.ingest_dir.iterdir()) == []
    assert list(store.blobs_dir.iterdir()) == []


def test_blob_writer_exception_leaves_nothing(tmp_path):
    store = Store(tmp_path)
    with pytest.raises(RuntimeError):
        with store.blob_writer() as w:
            w.write(b"partial")
            raise RuntimeError("interrupted")
    assert list(store.ingest_dir.iterdir()) == []
    assert list(store.blobs_dir.iterdir()) == []


def test_resume_keeps_partial(tmp_path):
    store = Store(tmp_path)
    data = os.urandom(3000)
    digest = "sha256:" + __import__("hashlib").sha256(data).hexdigest()
    w = store.blob_writer(digest, resume=True)
    w.write(data[:1000])
    w.abort()
    w2 = store.blob_writer(digest, resume=True)
    assert w2.offset == 1000
    w2.write(data[1000:])
    assert w2.commit() == digest
    assert store.read_blob(digest) == data
    assert list(store.ingest_dir.iterdir()) == []


def test_read_blob_detects_corruption(tmp_path):
    store = Store(tmp_path)
    digest = store.put_blob(b"good data")
    store.blob_path(digest).write_bytes(b"evil data")
    with pytest.raises(DigestMismatch):
        store.read_blob(digest)


def test_tags_resolve_remove_gc(tmp_path):
    store = Store(tmp_path)
    raw = _manifest(store, b"layer-one")
    digest = store.put_manifest(raw, tags=["localhost/a:v1", "localhost/a:v2"])
    assert store.resolve("localhost/a:v1")["digest"] == digest
    assert store.resolve(digest)["digest"] == digest
    assert [n for n, _ in store.list_tags("localhost/a")] == ["localhost/a:v1", "localhost/a:v2"]
    # another tag still points at it: only the tag goes
    assert store.remove("localhost/a:v1") == ["localhost/a:v1"]
    assert store.has_blob(digest)
    store.remove("localhost/a:v2")
    assert not store.has_blob(digest)
    assert list(store.blobs_dir.iterdir()) == []
    with pytest.raises(NotFound):
        store.resolve("localhost/a:v2")


def test_gc_reads_manifests_not_layers(tmp_path):
    """A layer whose content looks like a manifest is a leaf: what it 'names' is not kept
    alive (GC only follows manifests and indexes); an image index's manifests are."""
    store = Store(tmp_path)
    orphan = store.put_blob(b"nobody refers to me")
    lookalike = json.dumps({"layers": [{"digest": orphan, "size": 19}]}).encode()
    digest = store.put_manifest(_manifest(store, lookalike), tags=["localhost/a:1"])
    inner = store.put_blob(b"inner layer")
    child_raw = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                            "layers": [{"digest": inner, "size": 11}]}).encode()
    child = store.put_blob(child_raw)
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": child, "size": len(child_raw)}]}).encode()
    store.put_manifest(index, tags=["localhost/i:1"])
    store.gc()
    assert store.has_blob(digest) and store.has_blob(child) and store.has_blob(inner)
    assert not store.has_blob(orphan)


def test_remove_force_and_by_digest(tmp_path):
    store = Store(tmp_path)
    digest = store.put_manifest(_manifest(store, b"x"), tags=["localhost/a:1", "localhost/b:2"])
    store.remove("localhost/a:1", force=True)
    assert store.list_tags() == []
    digest = store.put_manifest(_manifest(store, b"y"), tags=["localhost/a:1", "localhost/b:2"])
    store.remove(digest)
    assert store.list_tags() == [] and not store.has_blob(digest)


def test_referrers_stored_beside_subject_and_removed_with_it(tmp_path):
    store = Store(tmp_path)
    digest = store.put_manifest(_manifest(store, b"model"), tags=["localhost/m:1"])
    desc = store.resolve(digest)
    ref_raw = _manifest(store, b"sbom", artifact_type=mt.CYCLONEDX_JSON, subject=desc)
    rdigest = store.add_referrer(ref_raw)
    store.add_referrer(ref_raw)  # idempotent
    refs = store.referrers(digest)
    assert [r["digest"] for r in refs] == [rdigest]
    assert refs[0]["artifactType"] == mt.CYCLONEDX_JSON
    assert store.referrers(digest, artifact_type="other/type") == []
    store.remove("localhost/m:1")
    assert store.referrers(digest) == []
    assert list(store.blobs_dir.iterdir()) == []


def _tag_many(root: str, prefix: str, n: int) -> None:
    store = Store(root)
    for i in range(n):
        raw = _manifest(store, f"{prefix}-{i}".encode())
        with store.writing():
            store.put_manifest(raw, tags=[f"localhost/{prefix}:{i}"])


def test_two_processes_do_not_lose_tags(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_tag_many, args=(str(tmp_path), p, 25)) for p in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = [n for n, _ in Store(tmp_path).list_tags()]
    assert len(names) == 50


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo is not installed")
def test_skopeo_reads_store_by_name(tmp_path):
    store = Store(tmp_path / "store")
    digest = store.put_manifest(_manifest(store, b"weights"), tags=["localhost/demo/model:v1"])
    out = tmp_path / "copy"
    subprocess.run(["skopeo", "copy", f"oci:{store.root}:localhost/demo/model:v1",
                    f"oci:{out}:copied"], check=True, capture_output=True)
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == digest
