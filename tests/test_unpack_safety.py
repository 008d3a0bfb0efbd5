"""Hostile layers: unpack refuses escapes, links, devices, corrupt blobs; nothing is left
half-written and nothing lands outside the target directory."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from kitaudit.errors import DigestMismatch, KitauditError, UnsafeArchive
from kitaudit.modelkit import LayerEntry
from kitaudit.store import Store
from kitaudit.unpack import UnpackResult, _extract_layer, _place, safe_relpath


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _layer(store: Store, blob: bytes, compression: str = "none") -> LayerEntry:
    digest = store.put_blob(blob)
    return LayerEntry({"mediaType": "x", "digest": digest, "size": len(blob)}, "model", None,
                      "tar", compression)


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape.txt", "a/../../escape.txt",
                                  "a/../../../tmp/x", "C:/windows/x", "\\abs"])
def test_escaping_names_refused(tmp_path, name):
    store = Store(tmp_path / "store")
    layer = _layer(store, _tar([_file(name)]))
    staging = tmp_path / "target" / ".staging"
    staging.mkdir(parents=True)
    with pytest.raises(UnsafeArchive):
        _extract_layer(store, layer, staging)
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize("kind,linkname", [(tarfile.SYMTYPE, "/etc/passwd"),
                                           (tarfile.LNKTYPE, "other"),
                                           (tarfile.CHRTYPE, ""), (tarfile.BLKTYPE, ""),
                                           (tarfile.FIFOTYPE, "")])
def test_links_and_devices_refused(tmp_path, kind, linkname):
    store = Store(tmp_path / "store")
    layer = _layer(store, _tar([_file("ok.txt"), _special("bad", kind, linkname)]))
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(UnsafeArchive) as err:
        _extract_layer(store, layer, staging)
    assert "bad" in str(err.value)


def test_corrupt_blob_detected(tmp_path):
    store = Store(tmp_path / "store")
    blob = _tar([_file("model.bin", b"weights" * 100)])
    layer = _layer(store, blob)
    path = store.blob_path(layer.descriptor["digest"])
    data = bytearray(path.read_bytes())
    data[600] ^= 0xFF  # flip a byte inside the file content
    path.write_bytes(bytes(data))
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(DigestMismatch):
        _extract_layer(store, layer, staging)


def test_gzip_layer_with_trailing_garbage_is_still_hashed(tmp_path):
    store = Store(tmp_path / "store")
    blob = gzip.compress(_tar([_file("a.txt", b"hello")]), mtime=0)
    layer = _layer(store, blob, "gzip")
    staging = tmp_path / "staging"
    staging.mkdir()
    items = _extract_layer(store, layer, staging)
    assert items == [("a.txt", False)]
    assert (staging / "a.txt").read_bytes() == b"hello"


def test_truncated_archive_is_an_error(tmp_path):
    store = Store(tmp_path / "store")
    blob = _tar([_file("big.bin", b"z" * 5000)])[:1200]
    layer = _layer(store, blob)
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(KitauditError):
        _extract_layer(store, layer, staging)


def test_place_refuses_symlink_escape(tmp_path):
    target = tmp_path / "target"
    outside = tmp_path / "outside"
    target.mkdir()
    outside.mkdir()
    os.symlink(outside, target / "link")
    staging = target / ".staging"
    (staging / "link").mkdir(parents=True)
    (staging / "link" / "x.txt").write_text("x")
    with pytest.raises(UnsafeArchive):
        _place(staging, target, [("link/x.txt", False)], overwrite=False,
               ignore_existing=False, result=UnpackResult(str(target)))
    assert not (outside / "x.txt").exists()


def test_place_existing_file_needs_flag(tmp_path):
    target = tmp_path / "t"
    staging = target / ".s"
    staging.mkdir(parents=True)
    (staging / "f").write_text("new")
    (target / "f").write_text("old")
    with pytest.raises(KitauditError):
        _place(staging, target, [("f", False)], overwrite=False, ignore_existing=False,
               result=UnpackResult(str(target)))
    assert (target / "f").read_text() == "old"
    res = UnpackResult(str(target))
    _place(staging, target, [("f", False)], overwrite=False, ignore_existing=True, result=res)
    assert res.skipped == ["f"] and (target / "f").read_text() == "old"
    _place(staging, target, [("f", False)], overwrite=True, ignore_existing=False, result=res)
    assert (target / "f").read_text() == "new"


def test_safe_relpath_normalises():
    assert safe_relpath("./a/./b/") == "a/b"
    with pytest.raises(UnsafeArchive):
        safe_relpath("./")
    with pytest.raises(UnsafeArchive):
        safe_relpath("a\x00b")



@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_malformed_compressed_layer_is_a_clear_error(tmp_path, compression):
    """A blob that matches its digest but is not valid gzip/zstd: one clear error."""
    store = Store(tmp_path / "store")
    layer = _layer(store, b"this is not a compressed tar stream" * 20, compression)
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(UnsafeArchive, match="not a valid archive"):
        _extract_layer(store, layer, staging)
