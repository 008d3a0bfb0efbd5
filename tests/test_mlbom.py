"""CycloneDX ML-BOM: strict schema validation (1.6 and 1.7), determinism, lineage,
model-card splicing, the AI-readiness check, facts(), storage as a referrer and the
``kitaudit sbom`` command.

BOMs are built two ways: from the kitops pack-unpack / modelkit-refs fixture Kitfiles
with synthetic LayerFacts (digests derived from the paths), and by really packing the
fixtures into a temporary store (pack's own LayerFacts)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from kitaudit import kitfile as kf
from kitaudit import mlbom
from kitaudit.errors import NotFound, UsageError
from kitaudit.mlbom import Ancestor, FileFacts, LayerFacts, build_mlbom
from kitaudit.modelcard import parse_model_card
from kitaudit.store import Store

TESTDATA = Path("/work/shared/conformance/kitops/testing/testdata")
PACK_UNPACK = sorted((TESTDATA / "pack-unpack").glob("*.yaml"))
MANIFEST = "sha256:" + "ab" * 32


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _fixture(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _synthetic_layers(kit: kf.Kitfile, files: list[str]) -> list[LayerFacts]:
    """One LayerFacts per layer; each fixture file goes to the deepest entry holding it."""
    entries = kit.local_entries()
    cleaned = [kf.clean_path(f) for f in files]
    paths = [kf.clean_path(e.path) for _k, e in entries]

    def owner(f: str) -> int | None:
        best, best_len = None, -1
        for i, p in enumerate(paths):
            if (p == "." or f == p or f.startswith(p + "/")) and len(p) > best_len:
                best, best_len = i, len(p)
        return best

    layers = []
    for i, (kind, entry) in enumerate(entries):
        mine = [f for f in cleaned if owner(f) == i]
        facts = [FileFacts(f, _sha(f"testing: {f}"), len(f"testing: {f}")) for f in mine]
        digest = "sha256:" + _sha(f"layer {kind} {paths[i]}")
        layers.append(LayerFacts(kind=kind, path=entry.path,
                                 media_type=f"application/vnd.kitops.modelkit.{kind}.v1.tar",
                                 digest=digest, diff_id="sha256:" + _sha(f"diff {paths[i]}"),
                                 size=1024 * (i + 1), files=facts))
        entry.digest = digest
    return layers


def _doc(data: bytes) -> dict:
    return json.loads(data)


def _by_ref(doc: dict) -> dict[str, dict]:
    out: dict[str, dict] = {}

    def walk(comps):
        for c in comps:
            out[c["bom-ref"]] = c
            walk(c.get("components") or [])
            walk((c.get("pedigree") or {}).get("ancestors") or [])
    walk(doc.get("components") or [])
    return out


# --------------------------------------------------------------------------- validity

@pytest.mark.parametrize("spec", ["1.6", "1.7"])
@pytest.mark.parametrize("fixture", PACK_UNPACK, ids=lambda p: p.stem)
def test_fixture_kitfiles_validate_strictly(fixture: Path, spec: str):
    data = _fixture(fixture)
    kit = kf.loads(data["kitfile"])
    layers = _synthetic_layers(kit, data.get("files") or [])
    bom = build_mlbom(kit, manifest_digest=MANIFEST, layers=layers,
                      reference="localhost/fixture:v1", spec=spec)
    assert mlbom.validate(bom) == []
    doc = _doc(bom)
    assert doc["specVersion"] == spec
    refs = _by_ref(doc)
    # every layer is hashed, by its digest, on exactly one component
    for layer in layers:
        holders = [c for c in refs.values()
                   if {"alg": "SHA-256", "content": layer.digest[7:]} in (c.get("hashes") or [])]
        assert len(holders) == 1, layer.path
    # every file of a model layer is a hashed file component
    for layer in layers:
        if layer.kind in ("model", "modelpart"):
            for f in layer.files:
                comp = refs[f"file:{f.path}"]
                assert comp["hashes"] == [{"alg": "SHA-256", "content": f.sha256}]
    if kit.model is not None:
        assert refs["model"]["type"] == "machine-learning-model"
    for ds in kit.datasets:
        comp = next(c for c in refs.values() if c["type"] == "data" and c["name"] == ds.name)
        assert comp["data"][0]["type"] == "dataset"
    pkg = doc["metadata"]["component"]
    assert pkg["name"] == kit.package.name
    assert pkg["purl"] == ("pkg:oci/fixture@" + MANIFEST +
                           "?repository_url=localhost/fixture&tag=v1")


def test_rich_kitfile_with_card_validates_both_specs():
    kit = kf.loads("""manifestVersion: 1.0.0
package:
  name: sentiment
  version: 1.2.0
  description: Sentiment classifier
  license: Apache-2.0
  authors: [Jane Doe, Example Lab]
model:
  name: sentiment-distilbert
  path: model
  license: apache-2.0
  framework: pytorch
  format: safetensors
  version: 1.2.0
  description: fine-tuned DistilBERT
  parameters:
    learning_rate: 2.0e-5
    epochs: 3
    optimizer: {name: adamw, betas: [0.9, 0.999]}
  parts:
    - name: tokenizer
      path: tokenizer
      type: tokenizer
      license: MIT
datasets:
  - name: train
    path: data/train.csv
    license: CC-BY-4.0
    description: training split
    parameters: {rows: 25000}
  - name: web
    path: data/web
    remotePath: s3://bucket/web/
    remoteHash: sha256:%s
    license: some-custom-licence
code:
  - path: src
    license: MIT
    description: training code
docs:
  - path: README.md
prompts:
  - name: system
    path: prompts/system.txt
""" % ("cd" * 32))
    layers = [
        LayerFacts("model", "model", "application/vnd.kitops.modelkit.model.v1.tar+zstd",
                   "sha256:" + _sha("m"), "sha256:" + _sha("md"), 5000,
                   [FileFacts("model/model.safetensors", _sha("w"), 4000),
                    FileFacts("model/config.json", _sha("c"), 100)]),
        LayerFacts("modelpart", "tokenizer", "application/vnd.kitops.modelkit.modelpart.v1.tar",
                   "sha256:" + _sha("t"), "sha256:" + _sha("td"), 300,
                   [FileFacts("tokenizer/vocab.txt", _sha("v"), 300)]),
        LayerFacts("code", "src", "application/vnd.kitops.modelkit.code.v1.tar",
                   "sha256:" + _sha("s"), "sha256:" + _sha("sd"), 10),
        LayerFacts("dataset", "data/train.csv", "application/vnd.kitops.modelkit.dataset.v1.raw",
                   "sha256:" + _sha("d"), "sha256:" + _sha("d"), 10),
        LayerFacts("docs", "README.md", "application/vnd.kitops.modelkit.docs.v1.tar",
                   "sha256:" + _sha("r"), "sha256:" + _sha("rd"), 10),
        LayerFacts("prompts", "prompts/system.txt", "application/vnd.kitops.modelkit.code.v1.tar",
                   "sha256:" + _sha("p"), "sha256:" + _sha("pd"), 10),
    ]
    from tests.test_modelcard import HF_CARD

    card = parse_model_card(HF_CARD, source="README.md")
    ancestors = [Ancestor("registry.example.com/base/distilbert:v1", "sha256:" + "ef" * 32,
                          kf.loads("manifestVersion: 1.0.0\npackage: {name: base, "
                                   "license: Apache-2.0}\nmodel: {name: distilbert, "
                                   "path: w.bin, license: Apache-2.0}\n"))]
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    boms = {spec: build_mlbom(kit, manifest_digest=MANIFEST, layers=layers,
                              reference="registry.example.com/team/sentiment:1.2.0",
                              ancestors=ancestors, model_card=card, spec=spec,
                              created=created) for spec in ("1.6", "1.7")}
    for spec, bom in boms.items():
        assert mlbom.validate(bom) == [], spec
    doc = _doc(boms["1.6"])
    refs = _by_ref(doc)
    model = refs["model"]
    mc = model["modelCard"]
    assert mc["modelParameters"]["task"] == "text-classification"
    assert mc["modelParameters"]["modelArchitecture"].startswith("DistilBERT encoder")
    assert {"ref": "dataset:data/train.csv"} in mc["modelParameters"]["datasets"]
    assert {"type": "dataset", "name": "imdb"} in mc["modelParameters"]["datasets"]
    assert mc["quantitativeAnalysis"]["performanceMetrics"][0] == {
        "type": "accuracy", "value": "0.9312", "slice": "IMDB, config=plain_text, split=test"}
    cons = mc["considerations"]
    assert cons["useCases"][0] == "Classify the sentiment of English movie reviews."
    assert cons["technicalLimitations"] == ["The model inherits biases of IMDB reviewers."]
    assert {"mitigationStrategy": "Evaluate on your own data before deployment."} in \
        cons["ethicalConsiderations"]
    env = {p["name"]: p["value"] for p in cons["environmentalConsiderations"]["properties"]}
    assert env["kitaudit:co2eq.emissions"] == "12.5"
    props = {p["name"]: p["value"] for p in mc["properties"]}
    assert props["kitaudit:parameter:learning_rate"] == "2e-05"
    assert props["kitaudit:parameter:optimizer.betas"] == "[0.9,0.999]"
    assert props["kitaudit:parameter:optimizer.name"] == "adamw"
    assert "Medical or legal decisions." in [p["value"] for p in mc["properties"]
                                             if p["name"] == "kitaudit:outOfScopeUse"]
    assert model["externalReferences"] == [{"comment": "model card packed in this ModelKit",
                                            "type": "model-card", "url": "README.md"}]
    assert model["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    # parts nest under the model, with their files
    part = refs["modelpart:tokenizer"]
    assert part in model["components"]
    assert refs["file:tokenizer/vocab.txt"] in part["components"]
    # remote dataset: contents.url + hash, no layer
    web = refs["dataset:data/web"]
    assert web["data"][0]["contents"]["url"] == "s3://bucket/web/"
    assert web["hashes"] == [{"alg": "SHA-256", "content": "cd" * 32}]
    assert web["licenses"] == [{"license": {"name": "some-custom-licence"}}]
    train = refs["dataset:data/train.csv"]
    assert train["data"][0]["contents"]["properties"] == [
        {"name": "kitaudit:parameter:rows", "value": "25000"}]
    # licences: SPDX ids where they parse
    assert refs["code:src"]["licenses"] == [{"license": {"id": "MIT"}}]
    # package with authors, oci purl and the manifest hash
    pkg = doc["metadata"]["component"]
    assert pkg["authors"] == [{"name": "Jane Doe"}, {"name": "Example Lab"}]  # Kitfile order
    assert pkg["hashes"] == [{"alg": "SHA-256", "content": MANIFEST[7:]}]
    assert doc["metadata"]["timestamp"] == "2026-01-02T03:04:05+00:00"
    # lineage: the OCI base first, then the model card's HF base model
    ancs = model["pedigree"]["ancestors"]
    assert ancs[0]["purl"] == ("pkg:oci/distilbert@sha256:" + "ef" * 32 +
                               "?repository_url=registry.example.com/base/distilbert&tag=v1")
    assert ancs[0]["name"] == "distilbert"
    assert ancs[1]["purl"] == "pkg:huggingface/distilbert/distilbert-base-uncased"
    # dependencies: package → top-level components; model → parts and its base model
    deps = {d["ref"]: d.get("dependsOn", []) for d in doc["dependencies"]}
    assert set(deps["modelkit"]) == {"model", "code:src", "dataset:data/train.csv",
                                     "dataset:data/web", "docs:README.md",
                                     "prompt:prompts/system.txt"}
    assert set(deps["model"]) == {"modelpart:tokenizer", "ancestor:sha256:" + "ef" * 32}


def test_spec_versions_differ_only_in_header():
    kit = kf.loads("manifestVersion: 1.0.0\nmodel: {name: m, path: m.bin}\n")
    layers = _synthetic_layers(kit, ["m.bin"])
    a = _doc(build_mlbom(kit, manifest_digest=MANIFEST, layers=layers, spec="1.6"))
    b = _doc(build_mlbom(kit, manifest_digest=MANIFEST, layers=layers, spec="1.7"))
    for key in ("specVersion", "$schema"):
        a.pop(key), b.pop(key)
    assert a == b
    relabelled = mlbom.convert_spec(build_mlbom(kit, manifest_digest=MANIFEST, layers=layers),
                                    "1.7")
    assert relabelled == build_mlbom(kit, manifest_digest=MANIFEST, layers=layers, spec="1.7")


def test_strict_validation_catches_a_bad_splice():
    """The validator really is strict: a wrong componentData type or an unknown
    modelCard key is reported (so the validity tests above can fail)."""
    kit, layers = _basic()
    doc = _doc(build_mlbom(kit, manifest_digest=MANIFEST, layers=layers))
    refs = _by_ref(doc)
    refs["dataset:datasets"]["data"][0]["type"] = "spreadsheet"
    assert mlbom.validate(json.dumps(doc)) != []
    refs["dataset:datasets"]["data"][0]["type"] = "dataset"
    assert mlbom.validate(json.dumps(doc)) == []
    refs["model"]["modelCard"] = {"intendedUse": "x"}
    assert mlbom.validate(json.dumps(doc), "1.7") != []


def test_convert_spec_refuses_foreign_boms():
    foreign = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5"}).encode()
    with pytest.raises(UsageError):
        mlbom.convert_spec(foreign, "1.6")
    with pytest.raises(UsageError):
        mlbom.convert_spec(foreign, "2.0")


# --------------------------------------------------------------------------- determinism

def _basic() -> tuple[kf.Kitfile, list[LayerFacts]]:
    data = _fixture(TESTDATA / "pack-unpack" / "test_pack-basic-model.yaml")
    kit = kf.loads(data["kitfile"])
    return kit, _synthetic_layers(kit, data["files"])


def test_same_inputs_same_bytes(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    kit, layers = _basic()
    a = build_mlbom(kit, manifest_digest=MANIFEST, layers=layers, reference="localhost/x:v1")
    b = build_mlbom(kf.loads(kit.to_yaml()), manifest_digest=MANIFEST,
                    layers=list(reversed(layers)), reference="localhost/x:v1")
    assert a == b
    doc = _doc(a)
    assert "timestamp" not in doc["metadata"]   # nothing invented: no clock time
    assert doc["serialNumber"] == mlbom.bom_serial_number(MANIFEST)
    import uuid
    assert doc["serialNumber"] == "urn:uuid:" + str(
        uuid.uuid5(uuid.NAMESPACE_URL, "urn:kitaudit:mlbom:" + MANIFEST))
    other = build_mlbom(kit, manifest_digest="sha256:" + "cd" * 32, layers=layers)
    assert _doc(other)["serialNumber"] != doc["serialNumber"]


def test_timestamp_from_source_date_epoch_and_created(monkeypatch: pytest.MonkeyPatch):
    kit, layers = _basic()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    doc = _doc(build_mlbom(kit, manifest_digest=MANIFEST, layers=layers))
    assert doc["metadata"]["timestamp"] == "2023-11-14T22:13:20+00:00"
    created = datetime(2025, 5, 6, 7, 8, 9, 123456)
    doc = _doc(build_mlbom(kit, manifest_digest=MANIFEST, layers=layers, created=created))
    assert doc["metadata"]["timestamp"] == "2025-05-06T07:08:09+00:00"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(UsageError, match="SOURCE_DATE_EPOCH"):
        build_mlbom(kit, manifest_digest=MANIFEST, layers=layers)


def test_without_manifest_digest_serial_still_deterministic(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    kit, layers = _basic()
    a = build_mlbom(kit, manifest_digest=None, layers=layers, reference="localhost/x:v1")
    assert a == build_mlbom(kit, manifest_digest=None, layers=layers,
                            reference="localhost/x:v1")
    doc = _doc(a)
    assert "purl" not in doc["metadata"]["component"]   # no digest → no purl
    assert mlbom.validate(a) == []


def test_unsupported_spec():
    kit, layers = _basic()
    with pytest.raises(UsageError, match="unsupported CycloneDX version"):
        build_mlbom(kit, manifest_digest=MANIFEST, layers=layers, spec="1.5")


def test_build_for_1000_files_reads_no_file(tmp_path: Path):
    """Every file of a 1,000-file model layer is in the BOM, built from LayerFacts alone
    (the paths do not exist). The < 100 ms target is measured by benchmarks/mlbom.py."""
    kit = kf.loads("manifestVersion: 1.0.0\npackage: {name: big}\n"
                   "model: {name: big, path: weights}\n")
    files = [FileFacts(f"weights/shard-{i:04d}.bin", _sha(str(i)), i) for i in range(1000)]
    layers = [LayerFacts("model", "weights", "application/vnd.kitops.modelkit.model.v1.tar",
                         "sha256:" + _sha("big"), "sha256:" + _sha("bigd"), 10, files)]
    bom = build_mlbom(kit, manifest_digest=MANIFEST, layers=layers,
                      reference="localhost/big:v1")
    doc = _doc(bom)
    assert len(_by_ref(doc)["model"]["components"]) == 1000
    assert mlbom.facts(doc)["model"]["files"] == 1000


# --------------------------------------------------------------------------- lineage

def _refs_fixture() -> list[dict]:
    return _fixture(TESTDATA / "modelkit-refs" / "test_reference-basic.yaml")["modelkits"]


def test_ancestors_from_a_chain_synthetic():
    kits = [kf.loads(m["kitfile"]) for m in _refs_fixture()]
    digests = ["sha256:" + _sha(f"manifest {i}") for i in range(3)]
    ancestors = [Ancestor("localhost/test-ref:model-2", digests[1], kits[1]),
                 Ancestor("localhost/test-ref:model-1", digests[0], kits[0])]
    layers = _synthetic_layers(kits[2], _refs_fixture()[2]["files"])
    bom = build_mlbom(kits[2], manifest_digest=digests[2], layers=layers,
                      reference="localhost/test-ref:model-3", ancestors=ancestors)
    assert mlbom.validate(bom) == []
    doc = _doc(bom)
    model = _by_ref(doc)["model"]
    assert "hashes" not in model            # base-model reference: no model layer here
    assert {"name": "kitaudit:reference", "value": "test-ref:model-2"} in model["properties"]
    ancs = model["pedigree"]["ancestors"]
    assert [a["name"] for a in ancs] == ["model-2", "model-1"]   # nearest first
    assert ancs[0]["purl"] == ("pkg:oci/test-ref@" + digests[1] +
                               "?repository_url=localhost/test-ref&tag=model-2")
    f = mlbom.facts(doc)
    assert [(a["reference"], a["digest"], a["depth"]) for a in f["ancestors"]] == [
        ("localhost/test-ref:model-2", digests[1], 1), ("localhost/test-ref:model-1",
                                                        digests[0], 2)]
    findings = {x.id: x for x in mlbom.check(doc)}
    assert findings["base-model-provenance"].status == "ok"


def _materialise(root: Path, spec: dict) -> Path:
    root.mkdir(parents=True)
    (root / "Kitfile").write_text(spec["kitfile"])
    if spec.get("kitignore"):
        (root / ".kitignore").write_text(spec["kitignore"])
    for rel in (spec.get("files") or []) + (spec.get("ignored") or []):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"testing: {rel}")
    return root


def test_lineage_fixture_packed_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from kitaudit.pack import pack

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    store = Store(tmp_path / "store")
    digests = []
    for i, spec in enumerate(_refs_fixture()):
        res = pack(_materialise(tmp_path / f"ctx{i}", spec), tags=[spec["tag"]], store=store)
        digests.append(res.digest)
        assert res.sbom_digest
    stored = mlbom.load_mlbom("test-ref:model-3", store=store)
    assert stored.subject == digests[2]
    assert mlbom.validate(stored.bom) == []
    f = mlbom.facts(stored.json())
    assert [a["digest"] for a in f["ancestors"]] == [digests[1], digests[0]]
    assert f["package"]["digest"] == digests[2]
    assert f["package"]["purl"].startswith("pkg:oci/test-ref@" + digests[2])
    # the part layers' files are hashed
    files = {c["name"]: c["hashes"][0]["content"]
             for c in mlbom._components_of(stored.json()) if c["bom-ref"].startswith("file:")}
    assert files["model-3-part-4.txt"] == _sha("testing: model-3-part-4.txt")


# --------------------------------------------------------------------------- real pack

@pytest.mark.parametrize("fixture", PACK_UNPACK, ids=lambda p: p.stem)
def test_every_pack_unpack_fixture_packs_with_a_valid_bom(fixture: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    from kitaudit.pack import pack

    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    data = _fixture(fixture)
    ctx = _materialise(tmp_path / "ctx", data)
    store = Store(tmp_path / "store")
    res = pack(ctx, tags=["fixture:v1"], store=store)
    stored = mlbom.load_mlbom("fixture:v1", store=store)
    assert mlbom.validate(stored.bom) == []
    doc = stored.json()
    # the timestamp is the manifest's creation time, the serial the manifest digest's
    created = res.manifest["annotations"]["org.opencontainers.image.created"]
    assert datetime.fromisoformat(doc["metadata"]["timestamp"]) == \
        datetime.fromisoformat(created.replace("Z", "+00:00"))
    assert doc["serialNumber"] == mlbom.bom_serial_number(res.digest)
    layer_digests = {d["digest"] for d in res.manifest["layers"]}
    assert {x["digest"] for x in mlbom.facts(doc)["layers"]} == layer_digests
    # packing again gives the same ML-BOM bytes (same referrer digest)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    store2 = Store(tmp_path / "store2")
    r1 = pack(ctx, tags=["fixture:v1"], store=store2)
    r2 = pack(ctx, tags=["fixture:v1"], store=Store(tmp_path / "store3"))
    assert r1.digest == r2.digest and r1.sbom_digest == r2.sbom_digest


def test_no_sbom_leaves_no_referrer(tmp_path: Path):
    from kitaudit.pack import pack

    data = _fixture(TESTDATA / "pack-unpack" / "test_pack-basic-model.yaml")
    store = Store(tmp_path / "store")
    res = pack(_materialise(tmp_path / "ctx", data), tags=["nosbom:v1"], store=store,
               sbom=False)
    assert res.sbom_digest is None
    with pytest.raises(NotFound, match="has no ML-BOM"):
        mlbom.load_mlbom("nosbom:v1", store=store)


# --------------------------------------------------------------------------- check / facts

def test_check_on_a_bare_bom_lists_what_is_missing():
    kit = kf.loads("manifestVersion: 1.0.0\npackage: {name: bare}\nmodel: {path: m.bin}\n")
    doc = _doc(build_mlbom(kit, manifest_digest=MANIFEST,
                           layers=_synthetic_layers(kit, ["m.bin"])))
    findings = mlbom.check(doc)
    assert [f.id for f in findings] == [
        "model-card-url", "architecture", "datasets", "quantitative-analysis", "fairness",
        "energy", "use-cases", "limitations", "ethics", "licenses", "base-model-provenance",
        "dataset-provenance"]
    assert {f.status for f in findings} == {"missing"}
    assert mlbom.completeness(findings) == 0
    assert all(f.detail and f.where for f in findings)


def test_check_on_a_documented_bom():
    from tests.test_modelcard import HF_CARD

    kit = kf.loads("manifestVersion: 1.0.0\npackage: {name: doc, license: MIT}\n"
                   "model: {name: m, path: m.bin, license: MIT}\n"
                   "datasets: [{name: d, path: d.csv, license: CC0-1.0}]\n"
                   "docs: [{path: README.md}]\n")
    card = parse_model_card(HF_CARD, source="README.md")
    doc = _doc(build_mlbom(kit, manifest_digest=MANIFEST,
                           layers=_synthetic_layers(kit, ["m.bin", "d.csv", "README.md"]),
                           model_card=card))
    status = {f.id: f.status for f in mlbom.check(doc)}
    assert status == {
        "model-card-url": "ok", "architecture": "ok", "datasets": "ok",
        "quantitative-analysis": "ok", "fairness": "partial", "energy": "partial",
        "use-cases": "ok", "limitations": "ok", "ethics": "ok", "licenses": "ok",
        "base-model-provenance": "partial",   # HF base model without a revision
        "dataset-provenance": "ok"}
    assert mlbom.completeness(mlbom.check(doc)) == round(100 * 10.5 / 12)


def test_card_outside_the_modelkit_gives_facts_but_no_model_card_reference():
    kit = kf.loads("manifestVersion: 1.0.0\nmodel: {name: m, path: m.bin}\n")
    card = parse_model_card("---\nlicense: mit\n---\n## Limitations\nSmall.\n",
                            source="notes/README.md")
    doc = _doc(build_mlbom(kit, manifest_digest=MANIFEST,
                           layers=_synthetic_layers(kit, ["m.bin"]), model_card=card))
    model = _by_ref(doc)["model"]
    assert "externalReferences" not in model
    assert model["licenses"] == [{"license": {"id": "MIT"}}]   # from the card
    assert model["modelCard"]["considerations"]["technicalLimitations"] == ["Small."]


def test_facts_keys_and_licences():
    kit = kf.loads("manifestVersion: 1.0.0\npackage: {name: p, version: '1', "
                   "license: Apache-2.0}\nmodel: {name: m, path: m.bin, license: llama2}\n"
                   "datasets: [{name: d, path: d.csv, license: 'MIT OR Apache-2.0'}]\n")
    layers = _synthetic_layers(kit, ["m.bin", "d.csv"])
    f = mlbom.facts(_doc(build_mlbom(kit, manifest_digest=MANIFEST, layers=layers,
                                     reference="localhost/p:1")))
    assert set(f) == {"spec_version", "serial_number", "timestamp", "package", "model",
                      "licenses", "datasets", "ancestors", "layers", "completeness"}
    assert f["licenses"] == ["Apache-2.0", "MIT OR Apache-2.0", "llama2"]
    assert f["package"] == {"name": "p", "version": "1",
                            "purl": f"pkg:oci/p@{MANIFEST}?repository_url=localhost/p&tag=1",
                            "digest": MANIFEST, "reference": "localhost/p:1",
                            "licenses": ["Apache-2.0"]}
    assert f["model"]["licenses"] == ["llama2"]
    assert f["model"]["digest"] == layers[0].digest
    assert f["datasets"] == [{"bom_ref": "dataset:d.csv", "name": "d",
                              "licenses": ["MIT OR Apache-2.0"], "sha256": layers[1].digest[7:],
                              "digest": layers[1].digest, "url": None, "remote": False,
                              "remote_hash": None}]
    # kit's layer order
    assert [(x["kind"], x["path"], x["digest"], x["diff_id"], x["size"], x["media_type"])
            for x in f["layers"]] == [(x.kind, x.path, x.digest, x.diff_id, x.size,
                                       x.media_type) for x in layers]
    licence_finding = next(x for x in mlbom.check(_doc(build_mlbom(
        kit, manifest_digest=MANIFEST, layers=layers))) if x.id == "licenses")
    assert licence_finding.status == "partial" and "llama2" in licence_finding.detail


# --------------------------------------------------------------------------- CLI

def test_sbom_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from kitaudit._cli import main
    from kitaudit.pack import pack

    home = tmp_path / "home"
    monkeypatch.setenv("KITAUDIT_HOME", str(home))
    data = _fixture(TESTDATA / "pack-unpack" / "test_pack-basic-model.yaml")
    store = Store(home / "store")
    pack(_materialise(tmp_path / "ctx", data), tags=["clitest:v1"], store=store)
    stored = mlbom.load_mlbom("clitest:v1", store=store)
    runner = CliRunner()

    res = runner.invoke(main, ["sbom", "clitest:v1"])
    assert res.exit_code == 0, res.output
    assert res.stdout_bytes == stored.bom          # exactly as stored

    out = tmp_path / "bom.json"
    res = runner.invoke(main, ["sbom", "clitest:v1", "-o", str(out), "--spec", "1.7"])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_bytes())["specVersion"] == "1.7"
    assert mlbom.validate(out.read_bytes()) == []

    res = runner.invoke(main, ["sbom", "clitest:v1", "--check", "--output", "json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["subject"] == stored.subject
    assert report["completeness"] == mlbom.completeness(mlbom.check(stored.json()))
    assert len(report["findings"]) == 12

    res = runner.invoke(main, ["sbom", "clitest:v1", "--check"])
    assert res.exit_code == 0 and "completeness:" in res.stdout

    res = runner.invoke(main, ["sbom", "missing:v1"])
    assert res.exit_code == 2 and "error:" in res.output


@pytest.mark.registry
def test_sbom_from_a_remote_registry(registry, tmp_path: Path, kit_home: Path):
    """Pack locally, push (referrers go along), then read the ML-BOM from the registry
    with an empty local store."""
    from kitaudit.pack import pack
    from kitaudit.registry import push

    data = _fixture(TESTDATA / "pack-unpack" / "test_pack-basic-model.yaml")
    src = Store(tmp_path / "src")
    ref = f"{registry.host}/team/sbom-remote:v1"
    pack(_materialise(tmp_path / "ctx", data), tags=[ref], store=src)
    local = mlbom.load_mlbom(ref, store=src)
    push(ref, store=src, progress="none", **registry.net)

    empty = Store(tmp_path / "empty")
    remote = mlbom.load_mlbom(ref, store=empty, **registry.net)
    assert remote.source == "remote"
    assert remote.bom == local.bom and remote.subject == local.subject

    forced = mlbom.load_mlbom(ref, store=src, remote=True, **registry.net)
    assert forced.source == "remote" and forced.bom == local.bom

    # the command, with kit's network flags, from an empty KITAUDIT_HOME
    from kitaudit._cli import main

    flags = ["--plain-http"] if registry.net.get("plain_http") else \
        ["--tls-cert", registry.net["tls_cert"]]
    res = CliRunner().invoke(main, ["sbom", ref, "-r", *flags])
    assert res.exit_code == 0, res.output
    assert res.stdout_bytes == local.bom


def test_card_licence_other_uses_license_name_and_card_alone_makes_no_model():
    kit = kf.loads("manifestVersion: 1.0.0\nmodel: {name: m, path: m.bin}\n")
    card = parse_model_card("---\nlicense: other\nlicense_name: llama3\n---\n")
    doc = _doc(build_mlbom(kit, manifest_digest=MANIFEST,
                           layers=_synthetic_layers(kit, ["m.bin"]), model_card=card))
    assert _by_ref(doc)["model"]["licenses"] == [{"license": {"name": "llama3"}}]
    no_model = kf.loads("manifestVersion: 1.0.0\ncode: [{path: src}]\n")
    doc = _doc(build_mlbom(no_model, manifest_digest=MANIFEST,
                           layers=_synthetic_layers(no_model, ["src/a.py"]), model_card=card))
    assert "model" not in _by_ref(doc)
    assert mlbom.check(doc)[0].id == "model" and mlbom.check(doc)[0].status == "missing"
    assert mlbom.facts(doc)["model"] is None


_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)
_json = st.recursive(st.none() | st.booleans() | st.integers() | _text |
                     st.floats(allow_nan=False, allow_infinity=False),
                     lambda kids: st.lists(kids, max_size=3) |
                     st.dictionaries(_text, kids, max_size=3), max_leaves=8)


@settings(max_examples=15, deadline=None)
@given(name=_text, description=_text, licence=_text | st.sampled_from(
           ["MIT", "apache-2.0", "MIT OR Apache-2.0", "GPL-3.0-only WITH Classpath-exception-2.0",
            "other", "LicenseRef-x"]),
       params=_json, authors=st.lists(_text, max_size=3), card_text=_text)
def test_any_kitfile_values_give_a_valid_deterministic_bom(name, description, licence, params,
                                                          authors, card_text):
    """Free-text Kitfile fields, licences and parameters never break schema validity."""
    from kitaudit.kitfile import Dataset, Kitfile, Model, Package

    kit = Kitfile(manifest_version="1.0.0",
                  package=Package(name=name, description=description, license=licence,
                                  authors=authors),
                  model=Model(name=name, path="m.bin", license=licence, parameters=params,
                              description=description),
                  datasets=[Dataset(name=name, path="d", license=licence, parameters=params,
                                    description=description)])
    card = parse_model_card(f"---\nlicense: {json.dumps(licence)}\n---\n## Limitations\n"
                            f"{card_text}\n")
    layers = _synthetic_layers(kit, ["m.bin", "d/x"])
    a = build_mlbom(kit, manifest_digest=MANIFEST, layers=layers, model_card=card,
                    reference="localhost/p:v1")
    assert a == build_mlbom(kit, manifest_digest=MANIFEST, layers=layers, model_card=card,
                            reference="localhost/p:v1")
    assert mlbom.validate(a) == []
    mlbom.check(_doc(a))
    mlbom.facts(_doc(a))


def test_kitignored_card_gives_no_model_card_reference(tmp_path: Path):
    from kitaudit.pack import pack

    ctx = tmp_path / "ctx"
    (ctx / "docs" / "sub").mkdir(parents=True)
    (ctx / "m.bin").write_text("w")
    (ctx / "docs" / "MODEL_CARD.md").write_text("---\nlicense: mit\n---\n## Limitations\nx\n")
    (ctx / "docs" / "other.txt").write_text("o")
    (ctx / "Kitfile").write_text("manifestVersion: 1.0.0\nmodel: {name: m, path: m.bin}\n"
                                 "docs: [{path: docs}]\n")
    (ctx / ".kitignore").write_text("**/*.md\n")
    store = Store(tmp_path / "store")
    pack(ctx, tags=["ign:v1"], store=store)
    model = _by_ref(mlbom.load_mlbom("ign:v1", store=store).json())["model"]
    assert "externalReferences" not in model          # the card is not in the ModelKit
    assert model["licenses"] == [{"license": {"id": "MIT"}}]   # its facts still count
    (ctx / ".kitignore").write_text("docs/sub\n")
    pack(ctx, tags=["ign:v2"], store=store)
    model = _by_ref(mlbom.load_mlbom("ign:v2", store=store).json())["model"]
    assert model["externalReferences"][0]["url"] == "docs/MODEL_CARD.md"


# --------------------------------------------------------------------------- for verify

def test_sbom_input_is_a_valid_policy_input(tmp_path: Path):
    from kitaudit.policy.inputdoc import normalize_input
    from tests.test_modelcard import HF_CARD

    kit = kf.loads("manifestVersion: 1.0.0\npackage: {name: p, license: MIT}\n"
                   "model: {name: m, path: test-ref:base, license: Apache-2.0}\n"
                   "datasets: [{name: d, path: d, remotePath: 's3://b/d', "
                   "remoteHash: 'sha256:" + "12" * 32 + "', license: CC0-1.0}]\n"
                   "docs: [{path: README.md}]\n")
    base = kf.loads("manifestVersion: 1.0.0\nmodel: {name: base, path: w.bin, "
                    "license: llama2}\n")
    card = parse_model_card(HF_CARD, source="README.md")
    doc = _doc(build_mlbom(kit, manifest_digest=MANIFEST,
                           layers=_synthetic_layers(kit, ["README.md"]),
                           reference="localhost/p:v1", model_card=card,
                           ancestors=[Ancestor("localhost/test-ref:base", "sha256:" + "34" * 32,
                                               base)]))
    sbom = mlbom.sbom_input(doc)
    assert sbom["licenses"] == ["Apache-2.0", "CC0-1.0", "MIT", "llama2"]
    assert sbom["model"]["license"] == "Apache-2.0"
    assert sbom["model"]["card"]["task"] == "text-classification"
    assert sbom["model"]["card"]["metrics"][0] == {
        "type": "accuracy", "value": "0.9312", "slice": "IMDB, config=plain_text, split=test"}
    assert sbom["model"]["card"]["datasets"][:1] == ["dataset:d"]
    assert sbom["datasets"][0]["provenance"]["url"] == "s3://b/d"
    assert sbom["datasets"][0]["hashes"] == {"SHA-256": "12" * 32}
    assert sbom["ancestors"][0] == {
        "name": "base", "version": "", "license": "llama2",
        "purl": "pkg:oci/test-ref@sha256:" + "34" * 32 +
                "?repository_url=localhost/test-ref&tag=base",
        "reference": "localhost/test-ref:base", "digest": "sha256:" + "34" * 32}
    assert sbom["ancestors"][1]["purl"].startswith("pkg:huggingface/")
    assert 0 < sbom["completeness"]["score"] < 1
    assert "fairness" in sbom["completeness"]["partial"]
    assert "llama2" in mlbom.facts(doc)["licenses"]
    # the policy module accepts it as the sbom part of a verified input document
    normalized = normalize_input({"sbom": {"present": True, "verified": True, **sbom}})
    assert normalized["sbom"]["model"]["card"]["task"] == "text-classification"
    assert normalized["sbom"]["ancestors"][0]["digest"] == "sha256:" + "34" * 32


def test_manifest_mismatches(tmp_path: Path):
    from kitaudit.modelkit import load_from_store
    from kitaudit.pack import pack

    data = _fixture(TESTDATA / "pack-unpack" / "test_pack-basic-model.yaml")
    store = Store(tmp_path / "store")
    res = pack(_materialise(tmp_path / "ctx", data), tags=["mm:v1"], store=store)
    doc = mlbom.load_mlbom("mm:v1", store=store).json()
    kit = load_from_store(store, "localhost/mm:v1").kitfile
    assert mlbom.manifest_mismatches(doc, res.manifest, manifest_digest=res.digest,
                                     kitfile=kit) == []
    # another ModelKit's manifest, a dropped layer, a renamed dataset: each is reported
    other = json.loads(json.dumps(res.manifest))
    other["layers"][0]["digest"] = "sha256:" + "00" * 32
    problems = mlbom.manifest_mismatches(doc, other, manifest_digest="sha256:" + "99" * 32)
    assert any("is not in the ML-BOM" in p for p in problems)
    assert any("that the manifest does not have" in p for p in problems)
    assert any("the ML-BOM describes" in p for p in problems)
    kit.datasets[0].path = "elsewhere"
    assert any(p.startswith("dataset entries differ") for p in
               mlbom.manifest_mismatches(doc, res.manifest, kitfile=kit))
