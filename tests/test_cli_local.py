"""The local commands end to end through the CLI (real store in a temp KITAUDIT_HOME)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from kitaudit._cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "churn-model"


@pytest.fixture()
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("KITAUDIT_HOME", str(tmp_path / "home"))
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == code, (args, result.output, result.stderr)
        return result

    return run


def test_pack_list_inspect_info(cli):
    out = cli("pack", str(EXAMPLE), "-t", "corp-registry/app-model:challenger",
              "--output", "json")
    packed = json.loads(out.stdout)
    assert packed["tags"] == ["localhost/corp-registry/app-model:challenger"]
    assert [layer["kind"] for layer in packed["layers"]] == [
        "model", "code", "code", "dataset", "dataset", "docs"]
    rows = json.loads(cli("list", "--output", "json").stdout)
    assert rows[0]["digest"] == packed["digest"] and rows[0]["name"] == "churn-model"
    inspected = json.loads(cli("inspect", "corp-registry/app-model:challenger").stdout)
    assert inspected["digest"] == packed["digest"]
    assert inspected["manifest"]["artifactType"] == \
        "application/vnd.kitops.modelkit.manifest.v1+json"
    info = cli("info", "corp-registry/app-model:challenger", "--filter",
               "datasets:validation").stdout
    assert "validation" in info and "training" not in info and "model:" not in info


def test_unpack_filters_and_tag_short_form(cli, tmp_path):
    cli("pack", str(EXAMPLE), "-t", "corp-registry/app-model:challenger")
    cli("tag", "champion", "corp-registry/app-model:challenger")
    out = tmp_path / "out"
    cli("unpack", "corp-registry/app-model:champion", "-d", str(out),
        "-filter", "dataset:validation", "-filter", "model")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["data/validation.csv", "model/churn-model.json"]
    # again without -o: refuses; with -i: skips
    cli("unpack", "corp-registry/app-model:champion", "-d", str(out), "--filter", "model",
        code=2)
    cli("unpack", "corp-registry/app-model:champion", "-d", str(out), "--filter", "model",
        "-i")
    cli("unpack", "corp-registry/app-model:champion", "-d", str(tmp_path / "cfg"),
        "--filter", "config")
    assert [p.name for p in (tmp_path / "cfg").iterdir()] == ["Kitfile"]


def test_remove_and_diff(cli, tmp_path):
    cli("pack", str(EXAMPLE), "-t", "a/m:1")
    other = tmp_path / "other"
    shutil.copytree(EXAMPLE, other)
    (other / "model" / "churn-model.json").write_text('{"changed": true}\n')
    cli("pack", str(other), "-t", "a/m:2")
    diff = cli("diff", "a/m:1", "a/m:2", "--output", "json", code=1)
    result = json.loads(diff.stdout)
    assert not result["SameConfig"] and len(result["UniqueLayersA"]) == 1
    cli("diff", "a/m:1", "a/m:1")
    cli("remove", "a/m:1")
    assert [r["tag"] for r in json.loads(cli("list", "--output", "json").stdout)] == ["2"]
    cli("remove", "a/m:1", code=2)


def test_errors_are_one_line_with_fix(cli, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Kitfile").write_text("manifestVersion: 1.0.0\nmodle:\n  path: x\n")
    result = cli("pack", str(bad), code=2)
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "modle" in lines[0]
    missing = cli("inspect", "nothing/here:1", code=2)
    assert missing.stderr.startswith("error: ") and "fix: " in missing.stderr


def test_init_then_pack(cli, tmp_path):
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLE, proj)
    (proj / "Kitfile").unlink()
    cli("init", str(proj), "--name", "churn")
    assert (proj / "Kitfile").is_file()
    cli("init", str(proj), code=2)  # exists: refuses without --force
    cli("pack", str(proj), "-t", "churn:v1")


def test_version(cli):
    data = json.loads(cli("version", "--output", "json").stdout)
    assert data["version"]
