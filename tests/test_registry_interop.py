"""Interop with clients we did not write: skopeo and oras-py, against a real registry."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from kitaudit.registry import pull, push
from kitaudit.store import Store
from tests.registry_fixtures import build_modelkit

pytestmark = pytest.mark.registry

needs_skopeo = pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo is not installed")


def _skopeo(*args: str) -> None:
    proc = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@needs_skopeo
def test_skopeo_copy_of_pushed_kit_keeps_digests(registry, tmp_path, kit_home):
    src = Store(tmp_path / "src")
    ref = f"{registry.host}/interop/pushed:v1"
    kit = build_modelkit(src, ref, seed="skopeo-out")
    push(ref, store=src, progress="none", **registry.net)
    layout = tmp_path / "layout"
    _skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:copied")
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == kit.digest
    for digest, data in kit.blobs.items():
        path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest.split(":", 1)[1]
        assert path.read_bytes() == data
    manifest = (layout / "blobs" / "sha256" / kit.digest.split(":", 1)[1]).read_bytes()
    assert manifest == kit.raw


@needs_skopeo
def test_kit_copied_by_skopeo_from_store_pulls_and_unpacks(registry, tmp_path, kit_home):
    pytest.importorskip("kitaudit.unpack")
    src = Store(tmp_path / "src")
    local_name = "localhost/interop/fromstore:v1"
    kit = build_modelkit(src, local_name, seed="skopeo-in")
    dest = f"{registry.host}/interop/fromstore:v1"
    _skopeo("copy", "--dest-tls-verify=false", f"oci:{src.root}:{local_name}",
            f"docker://{dest}")
    dst = Store(tmp_path / "dst")
    out = tmp_path / "unpacked"
    res = pull(dest, store=dst, progress="none", unpack_dir=str(out), **registry.net)
    assert res.digest == kit.digest
    assert (out / "model.bin").read_bytes() == kit.blobs[kit.layers["model"]]
    assert (out / "data" / "val.csv").read_bytes() == kit.blobs[kit.layers["validation"]]


def test_oras_py_fetches_a_layer_we_pushed(registry, tmp_path, kit_home):
    oras_provider = pytest.importorskip("oras.provider")
    src = Store(tmp_path / "src")
    ref = f"{registry.host}/interop/oras:v1"
    kit = build_modelkit(src, ref, seed="oras")
    push(ref, store=src, progress="none", **registry.net)
    client = oras_provider.Registry(hostname=registry.host, insecure=True)
    digest = kit.layers["validation"]
    out = tmp_path / "layer.bin"
    client.download_blob(f"{registry.host}/interop/oras:v1", digest, str(out))
    assert out.read_bytes() == kit.blobs[digest]
    manifest = client.get_manifest(f"{registry.host}/interop/oras:v1")
    assert [layer["digest"] for layer in manifest["layers"]] == \
        [d["digest"] for d in kit.manifest["layers"]]
