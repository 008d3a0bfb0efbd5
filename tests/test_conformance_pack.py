"""KitOps pack/unpack and ModelKit-reference fixtures, run as they are, for every
compression and layer format; plus reproducibility of layer and manifest digests."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path

import pytest
import yaml

from kitaudit.errors import KitauditError
from kitaudit.pack import pack
from kitaudit.store import Store
from kitaudit.unpack import unpack

# shared/ lies beside the checkout (also in CI)
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "kitops" / \
    "testing" / "testdata"

PACK_UNPACK = sorted((FIXTURES / "pack-unpack").glob("*.yaml"))
REFS = sorted((FIXTURES / "modelkit-refs").glob("*.yaml"))


def _setup(directory: Path, case: dict) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Kitfile").write_text(case["kitfile"])
    if case.get("kitignore"):
        (directory / ".kitignore").write_text(case["kitignore"])
    for rel in [*(case.get("files") or []), *(case.get("ignored") or [])]:
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"testing: {rel}")


def _check(out: Path, files: list[str], ignored: list[str]) -> None:
    for rel in files:
        assert (out / rel).is_file(), f"{rel} missing after unpack"
    for rel in ignored:
        assert not (out / rel).exists(), f"{rel} should have been ignored"
    assert not (out / ".kitignore").exists()


def test_fixtures_present():
    assert len(PACK_UNPACK) == 10 and len(REFS) == 3


@pytest.mark.parametrize("compression,layer_format", [
    ("none", "tar"), ("gzip", "tar"), ("gzip-fastest", "tar"), ("zstd", "tar"),
    ("none", "raw"), ("zstd", "raw")])
@pytest.mark.parametrize("fixture", PACK_UNPACK, ids=[p.stem for p in PACK_UNPACK])
def test_pack_unpack(tmp_path, fixture, compression, layer_format):
    case = yaml.safe_load(fixture.read_text())
    ctx = tmp_path / "ctx"
    _setup(ctx, case)
    store = Store(tmp_path / "store")
    result = pack(ctx, tags=["test:latest"], compression=compression,
                  layer_format=layer_format, store=store)
    out = tmp_path / "out"
    unpack(store, "localhost/test:latest", out)
    _check(out, case.get("files") or [], case.get("ignored") or [])
    assert (out / "Kitfile").is_file()
    # every layer's media type names the compression and format used
    for layer in result.manifest["layers"]:
        if compression == "zstd":
            assert layer["mediaType"].endswith("+zstd")
        if compression.startswith("gzip"):
            assert layer["mediaType"].endswith("+gzip")


@pytest.mark.parametrize("fixture", REFS, ids=[p.stem for p in REFS])
def test_modelkit_references(tmp_path, fixture):
    case = yaml.safe_load(fixture.read_text())
    store = Store(tmp_path / "store")
    cumulative: list[str] = []
    for i, kit in enumerate(case["modelkits"]):
        ctx = tmp_path / f"dir{i}"
        _setup(ctx, kit)
        if kit.get("packErrRegexp"):
            with pytest.raises(KitauditError) as err:
                pack(ctx, tags=[kit["tag"]], store=store)
            assert re.search(kit["packErrRegexp"], str(err.value)), str(err.value)
            continue
        pack(ctx, tags=[kit["tag"]], store=store)
        cumulative += kit.get("files") or []
        out = tmp_path / f"dir{i + 1}-out"
        unpack(store, "localhost/" + kit["tag"], out)
        _check(out, cumulative, kit.get("ignored") or [])


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_reproducible(tmp_path, monkeypatch, compression):
    fixture = FIXTURES / "pack-unpack" / "test_pack-ignores-intersecting.yaml"
    case = yaml.safe_load(fixture.read_text())
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    digests = []
    for run in range(2):
        ctx = tmp_path / f"ctx{run}"
        _setup(ctx, case)
        # different mtimes and store: must not matter
        for p in ctx.rglob("*"):
            os.utime(p, (1000 * (run + 1), 1000 * (run + 1)))
        result = pack(ctx, store=Store(tmp_path / f"store{run}"), compression=compression,
                      sbom=False)
        digests.append((result.digest, [x["digest"] for x in result.manifest["layers"]]))
    assert digests[0] == digests[1]


def test_symlink_refused_with_name(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Kitfile").write_text("manifestVersion: 1.0.0\nmodel:\n  path: model\n")
    (ctx / "model").mkdir()
    (ctx / "model" / "real.bin").write_text("w")
    (ctx / "model" / "alias.bin").symlink_to("real.bin")
    store = Store(tmp_path / "store")
    with pytest.raises(KitauditError) as err:
        pack(ctx, store=store, tags=["x:1"])
    assert "model/alias.bin" in str(err.value)
    assert store.list_tags() == []
    assert list(store.ingest_dir.iterdir()) == []


def test_same_layer_not_duplicated_and_tags_last(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Kitfile").write_text("manifestVersion: 1.0.0\nmodel:\n  path: m.bin\n")
    (ctx / "m.bin").write_bytes(b"\0" * 10000)
    store = Store(tmp_path / "store")
    a = pack(ctx, store=store, tags=["a:1"])
    b = pack(ctx, store=store, tags=["b:1"])
    assert a.manifest["layers"] == b.manifest["layers"]
    assert json.loads(store.index_path.read_text())["manifests"]


def test_nested_layers_excluded_from_parent(tmp_path):
    fixture = FIXTURES / "pack-unpack" / "test_pack-ignores-intersecting.yaml"
    case = yaml.safe_load(fixture.read_text())
    ctx = tmp_path / "ctx"
    _setup(ctx, case)
    store = Store(tmp_path / "store")
    result = pack(ctx, store=store, sbom=False)
    names_by_kind = {}
    for layer in result.layers:
        data = store.read_blob(layer.result.descriptor["digest"])
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            names_by_kind[layer.kind] = [m.name for m in tar.getmembers() if m.isfile()]
    assert all(not n.startswith("main-dir/subdir/") for n in names_by_kind["model"])
    assert all(not n.startswith("main-dir/") for n in names_by_kind["code"])
    assert "Kitfile" not in names_by_kind["code"]
    # ends with exactly two zero blocks, no record padding
    data = store.read_blob(result.layers[0].result.descriptor["digest"])
    assert data.endswith(b"\0" * 1024) and len(data) % 512 == 0
