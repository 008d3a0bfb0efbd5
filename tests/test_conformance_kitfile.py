"""kitops conformance fixtures for the Kitfile (README §1.1, §1.2), one test per file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from kitaudit import kitfile as kf
from kitaudit.errors import KitfileError

CONFORMANCE = Path("/work/shared/conformance/kitops")
TESTDATA = CONFORMANCE / "pkg/artifact/testdata"
PARAMETER_FILES = sorted((TESTDATA / "parameters").glob("*.yaml"))
VALIDATION_FILES = sorted((TESTDATA / "validation").glob("*.yaml"))

pytestmark = pytest.mark.skipif(not TESTDATA.is_dir(), reason="conformance data not present")


def _case(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_fixture_counts() -> None:
    assert len(PARAMETER_FILES) == 5
    assert len(VALIDATION_FILES) == 44


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda p: p.name)
def test_parameters_yaml_round_trip(path: Path) -> None:
    case = _case(path)
    kitfile = kf.loads(case["kitfileYaml"])
    assert kitfile.to_yaml() == case["kitfileYaml"]


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=lambda p: p.name)
def test_parameters_json(path: Path) -> None:
    case = _case(path)
    kitfile = kf.loads(case["kitfileYaml"])
    out = kitfile.to_json()
    if case.get("kitfileJson"):
        assert out == case["kitfileJson"]
    # The config JSON reads back to the same Kitfile and serialises identically.
    again = kf.from_json(out.encode())
    assert again == kitfile
    assert again.to_json() == out
    assert again.to_yaml() == case["kitfileYaml"]
    assert kitfile.to_dict() == json.loads(out)


@pytest.mark.parametrize("path", VALIDATION_FILES, ids=lambda p: p.name)
def test_validation(path: Path) -> None:
    case = _case(path)
    pattern = case.get("errRegexp") or ""
    kitfile = kf.loads(case["kitfile"], source=path.name)
    if not pattern:
        kitfile.validate()
        return
    with pytest.raises(KitfileError) as info:
        kitfile.validate()
    message = str(info.value)
    assert re.search(pattern, message), f"{pattern!r} not found in {message!r}"
    # The problem list carries the same texts; each names the file.
    assert any(re.search(pattern, p) for p in info.value.problems)
    assert all(p.startswith(path.name) for p in info.value.problems)


def test_references_fixture_agrees_with_reference_rule() -> None:
    """kit's IsModelKitReference = contains ':' or '@' and ParseReference accepts it."""
    data = yaml.safe_load((CONFORMANCE / "references.yaml").read_text(encoding="utf-8"))
    checked = 0
    for case in data["cases"]:
        text = case["input"]
        if ":" not in text and "@" not in text:
            assert not kf.is_modelkit_reference(text)
            continue
        assert kf.is_modelkit_reference(text) is not case.get("expect_error", False), text
        checked += 1
    assert checked >= 8
