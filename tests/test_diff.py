"""Manifest comparison over kit's compare-manifest fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kitaudit.diff import compare_manifests, layer_kind
from kitaudit.errors import KitauditError

DIR = Path("/work/shared/conformance/kitops/testing/testdata/compare-manifest")
PAIRS = [  # from kitops testing/compare-manifest_test.go
    ("manifestA.json", "manifestB.json", "different-config.json"),
    ("manifestA.json", "manifestC.json", "different-layer.json"),
    ("manifestA.json", "manifestD.json", "annotation-mismatch.json"),
    ("manifestA.json", "manifestE.json", "mixed-diff.json"),
]


def _load(name: str) -> dict:
    return json.loads((DIR / name).read_text())


def _digests(layers: list[dict]) -> list[str]:
    return sorted(x["digest"] for x in layers)


@pytest.mark.parametrize("a,b,expected", PAIRS, ids=[p[2] for p in PAIRS])
def test_fixture_pairs(a: str, b: str, expected: str) -> None:
    want = _load(expected)
    got = compare_manifests(_load(a), _load(b)).to_dict()
    assert got["SameConfig"] is want["SameConfig"]
    assert got["AnnotationsMatch"] is want["AnnotationsMatch"]
    for key in ("SharedLayers", "UniqueLayersA", "UniqueLayersB"):
        assert _digests(got[key]) == _digests(want[key]), key
    assert not compare_manifests(_load(a), _load(b)).identical


def test_identical_and_details() -> None:
    a = _load("manifestA.json")
    same = compare_manifests(a, a)
    assert same.identical and len(same.shared_layers) == 2
    d = compare_manifests(a, _load("manifestE.json"))
    assert d.annotations_changed == {
        "ml.kitops.modelkit.cli-version": ("0.2.5-29dbdc4", "different_value")}
    assert (d.config_a, d.config_b) == ("sha256:configA", "sha256:configE")
    d = compare_manifests(a, _load("manifestD.json"))
    assert d.annotations_only_a == {"ml.kitops.modelkit.cli-version": "0.2.5-29dbdc4"}
    assert d.annotations_only_b == {"somekey": "0.2.5-29dbdc4"}
    assert [layer_kind(x) for x in d.shared_layers] == ["model", "code"]
    assert layer_kind({"mediaType": "text/plain"}) == "text/plain"


def test_missing_annotations_equal_empty_and_duplicates() -> None:
    a = {"config": {"digest": "sha256:c"}, "layers": [{"digest": "sha256:x"}] * 2}
    b = {"config": {"digest": "sha256:c"}, "layers": [{"digest": "sha256:x"}],
         "annotations": {}}
    d = compare_manifests(a, b)
    assert d.annotations_match and d.identical
    assert _digests(d.shared_layers) == ["sha256:x"]


@pytest.mark.parametrize("bad", [
    [], {"layers": []}, {"config": {}}, {"config": {"digest": "d"}, "layers": [{}]},
    {"config": {"digest": "d"}, "layers": "x"},
    {"config": {"digest": "d"}, "annotations": []},
])
def test_bad_manifest(bad: object) -> None:
    good = _load("manifestA.json")
    with pytest.raises(KitauditError) as info:
        compare_manifests(good, bad)  # type: ignore[arg-type]
    assert "manifest B" in str(info.value) and info.value.fix
