"""pack under stress: killed mid-way, two processes at once, ModelPack output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from kitaudit import mediatypes as mt
from kitaudit.modelkit import load_from_store
from kitaudit.pack import pack
from kitaudit.store import Store
from kitaudit.unpack import unpack

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "churn-model"


def _big_project(root: Path, size_mib: int) -> Path:
    root.mkdir(parents=True)
    (root / "Kitfile").write_text("manifestVersion: 1.0.0\nmodel:\n  path: model.bin\n"
                                  "datasets:\n  - name: d\n    path: data.bin\n")
    with open(root / "model.bin", "wb") as fh:
        for _ in range(size_mib):
            fh.write(os.urandom(1 << 20))
    (root / "data.bin").write_bytes(b"d" * 1000)
    return root


PACK_CHILD = ("import sys; from kitaudit.pack import pack; from kitaudit.store import Store; "
              "pack(sys.argv[1], store=Store(sys.argv[2]), tags=[sys.argv[3]], "
              "compression=sys.argv[4])")


def test_killed_pack_leaves_no_tag_and_no_partial_blob(tmp_path):
    ctx = _big_project(tmp_path / "ctx", 256)
    store_root = tmp_path / "store"
    Store(store_root)
    proc = subprocess.Popen([sys.executable, "-c", PACK_CHILD, str(ctx), str(store_root),
                             "big:1", "gzip"])
    store = Store(store_root)
    deadline = time.time() + 30
    while time.time() < deadline and not list(store.ingest_dir.iterdir()):
        time.sleep(0.01)
    assert list(store.ingest_dir.iterdir()), "pack never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store.list_tags() == []
    assert list(store.blobs_dir.iterdir()) == []  # nothing under a digest
    store.gc()
    assert list(store.ingest_dir.iterdir()) == []  # the killed writer's temp file is gone


def test_two_processes_pack_into_one_store(tmp_path):
    store_root = tmp_path / "store"
    Store(store_root)
    procs = []
    for i in range(2):
        ctx = _big_project(tmp_path / f"ctx{i}", 8)
        procs.append(subprocess.Popen([sys.executable, "-c", PACK_CHILD, str(ctx),
                                       str(store_root), f"kit{i}:1", "zstd"]))
    for p in procs:
        assert p.wait(120) == 0
    store = Store(store_root)
    assert [n for n, _ in store.list_tags()] == ["localhost/kit0:1", "localhost/kit1:1"]
    for i in range(2):
        out = tmp_path / f"out{i}"
        unpack(store, f"localhost/kit{i}:1", out)
        assert (out / "model.bin").read_bytes() == (tmp_path / f"ctx{i}" / "model.bin").read_bytes()


def test_model_pack_round_trip(tmp_path):
    store = Store(tmp_path / "store")
    result = pack(EXAMPLE, store=store, tags=["mp:1"], use_model_pack=True)
    manifest = result.manifest
    assert manifest["artifactType"] == mt.MODELPACK_ARTIFACT_TYPE
    assert manifest["config"]["mediaType"] == mt.MODELPACK_CONFIG
    assert all(layer["mediaType"].startswith(mt.MODELPACK_LAYER_PREFIX)
               for layer in manifest["layers"])
    config = json.loads(store.read_blob(manifest["config"]["digest"]))
    assert config["modelfs"]["diffIds"] == [pl.result.diff_id for pl in result.layers]
    assert config["descriptor"]["name"] == "churn-model"
    kit = load_from_store(store, "localhost/mp:1")
    assert kit.format == "modelpack" and kit.kitfile.package.name == "churn-model"
    out = tmp_path / "out"
    unpack(store, "localhost/mp:1", out, filters=["model"])
    assert (out / "model" / "churn-model.json").is_file()


def test_model_pack_without_kitfile_gets_one_generated(tmp_path):
    store = Store(tmp_path / "store")
    result = pack(EXAMPLE, store=store, tags=["mp:2"], use_model_pack=True, sbom=False)
    manifest = dict(result.manifest)
    manifest["annotations"] = {k: v for k, v in manifest["annotations"].items()
                               if k != mt.ANN_KITFILE}
    raw = json.dumps(manifest).encode()
    digest = store.put_manifest(raw, tags=["localhost/mp:bare"])
    kit = load_from_store(store, digest)
    assert kit.kitfile.model.path == "model/churn-model.json"
    assert [d.path for d in kit.kitfile.datasets] == ["data/train.csv", "data/validation.csv"]
    out = tmp_path / "out"
    unpack(store, "localhost/mp:bare", out)
    assert (out / "data" / "validation.csv").is_file()
