"""Kitfile generation (init) over kit's kitfile-generation fixtures, plus our extras."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from kitaudit.errors import KitauditError
from kitaudit.generate import (
    detect_license,
    file_kind,
    generate_kitfile_dict,
    write_kitfile,
)

FIXTURES = sorted(
    Path("/work/shared/conformance/kitops/testing/testdata/kitfile-generation").glob("*.yaml"))

APACHE = """
                                 Apache License
                           Version 2.0, January 2004
                        http://www.apache.org/licenses/
   TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION
"""
MIT = """MIT License

Copyright (c) 2026 Someone

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction.

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.
"""


def _prune(value: Any) -> Any:
    """Drop empty fields: 'empty or absent fields count as equal'."""
    if isinstance(value, dict):
        out = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _setup(directory: Path, files: list[str]) -> None:
    for rel in files:
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"testing: {rel}")  # size 9 + len(path), as kit's runner


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_conformance_dict(fixture: Path, tmp_path: Path) -> None:
    case = yaml.safe_load(fixture.read_text())
    _setup(tmp_path, case["files"] or [])
    got = generate_kitfile_dict(tmp_path, name=case["modelName"],
                                description=case["description"])
    assert _prune(got) == _prune(case["expectedKitfile"])


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_conformance_kitfile(fixture: Path, tmp_path: Path) -> None:
    """The runner of the conformance README: generate, write, parse, compare."""
    kitfile = pytest.importorskip("kitaudit.kitfile")
    from kitaudit.generate import generate_kitfile

    case = yaml.safe_load(fixture.read_text())
    _setup(tmp_path, case["files"] or [])
    kf = generate_kitfile(tmp_path, name=case["modelName"], description=case["description"])
    path = write_kitfile(tmp_path, kf, force=True)
    parsed = kitfile.loads(path.read_text())
    assert _prune(parsed.to_dict()) == _prune(case["expectedKitfile"])


@pytest.mark.parametrize("name,kind", [
    ("m.safetensors", "model"), ("pytorch_model-00001.bin", "model"), ("weights.bin", "unknown"),
    ("x.onnx", "model"), ("config.json", "metadata"), ("notes.txt", "metadata"),
    ("a.md", "docs"), ("d.parquet", "dataset"), ("AGENTS.md", "prompt"),
    ("system.prompt.txt", "prompt"), ("run.sh", "unknown"), ("dir/skill.md", "prompt"),
])
def test_file_kind(name: str, kind: str) -> None:
    assert file_kind(name) == kind


def test_license_attached_to_model(tmp_path: Path) -> None:
    _setup(tmp_path, ["model.gguf"])
    (tmp_path / "LICENSE").write_text(APACHE)
    got = generate_kitfile_dict(tmp_path)
    assert got["model"]["license"] == "Apache-2.0"
    assert got["docs"] == [{"path": "LICENSE", "description": "License file"}]
    assert "package" not in got


def test_license_attached_to_single_dataset_or_package(tmp_path: Path) -> None:
    _setup(tmp_path, ["data.csv"])
    (tmp_path / "LICENSE.txt").write_text(MIT)
    assert generate_kitfile_dict(tmp_path)["datasets"] == [{"path": "data.csv", "license": "MIT"}]
    _setup(tmp_path, ["more.csv"])
    got = generate_kitfile_dict(tmp_path, name="n")
    assert got["package"] == {"name": "n", "license": "MIT"}


def test_detect_license(tmp_path: Path) -> None:
    f = tmp_path / "L"
    f.write_text(APACHE)
    assert detect_license(f) == "Apache-2.0"
    f.write_text("testing: LICENSE")
    assert detect_license(f) is None
    f.write_text(APACHE + MIT)  # two licenses: undecided, like kit
    assert detect_license(f) is None
    assert detect_license(tmp_path / "missing") is None


def test_author_and_skips(tmp_path: Path) -> None:
    _setup(tmp_path, ["model.gguf", ".kitignore", ".git/config", "sub/Kitfile"])
    (tmp_path / "link.gguf").symlink_to(tmp_path / "model.gguf")
    got = generate_kitfile_dict(tmp_path, name="n", description="d", author="me")
    assert got["package"] == {"name": "n", "description": "d", "authors": ["me"]}
    assert got["model"] == {"name": "model", "path": "model.gguf"}
    assert got["code"] == [{"path": "sub"}]  # a Kitfile below the root is an ordinary file


def test_many_unknown_dirs_become_catch_all(tmp_path: Path) -> None:
    _setup(tmp_path, [f"d{i}/x.sh" for i in range(6)] + ["src/a.py"])
    assert generate_kitfile_dict(tmp_path)["code"] == [{"path": "."}]
    _setup(tmp_path / "small", [f"d{i}/x.sh" for i in range(5)])
    assert [c["path"] for c in generate_kitfile_dict(tmp_path / "small")["code"]] == [
        f"d{i}" for i in range(5)]


def test_subdir_models_and_prompts(tmp_path: Path) -> None:
    _setup(tmp_path, ["base/model.safetensors", "base/config.json", "prompts/a.prompt",
                      "prompts/b.prompt", "mixed/w.gguf", "mixed/run.sh"])
    got = generate_kitfile_dict(tmp_path)
    assert got["model"]["path"] == "base/model.safetensors"
    assert {p["path"] for p in got["model"]["parts"]} == {"base/config.json", "mixed/w.gguf"}
    assert got["prompts"] == [{"path": "prompts"}]
    assert got["code"] == [{"path": "mixed"}]


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(KitauditError, match="not a directory"):
        generate_kitfile_dict(tmp_path / "nope")


def test_write_kitfile(tmp_path: Path) -> None:
    path = write_kitfile(tmp_path, "manifestVersion: 1.0.0\n")
    assert path == tmp_path / "Kitfile"
    with pytest.raises(KitauditError) as info:
        write_kitfile(tmp_path, "manifestVersion: 1.0.0\n# new\n")
    assert "already exists" in str(info.value) and "--force" in (info.value.fix or "")
    assert path.read_text() == "manifestVersion: 1.0.0\n"  # nothing lost
    write_kitfile(tmp_path, "manifestVersion: 1.0.0\n# new\n", force=True)
    assert path.read_text().endswith("# new\n")
    assert [p.name for p in tmp_path.iterdir()] == ["Kitfile"]


def test_write_kitfile_refuses_symlink(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("keep")
    os.symlink(tmp_path / "elsewhere", tmp_path / "Kitfile")
    with pytest.raises(KitauditError, match="symbolic link"):
        write_kitfile(tmp_path, "x: 1\n", force=True)
    assert (tmp_path / "elsewhere").read_text() == "keep"
