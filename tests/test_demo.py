"""The README's main command, end to end, on a temporary home."""

from __future__ import annotations

import json

from click.testing import CliRunner

from kitaudit._cli import main


def test_demo_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("KITAUDIT_HOME", str(tmp_path / "unused"))
    result = CliRunner().invoke(main, ["demo", "--home", str(tmp_path / "demo"),
                                       "--report-dir", str(tmp_path / "report"),
                                       "--output", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    steps = [s["step"] for s in data["steps"]]
    assert steps == ["train", "pack", "generate-key-pair", "sign", "verify", "tag", "derive",
                     "crawl", "report"]
    assert data["verify_exit_code"] == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["summary"]["modelkits"] == 2
    assert report["summary"]["signed"] == 2
    assert (tmp_path / "report" / "report.html").is_file()
    assert data["digest"].startswith("sha256:")
    assert (tmp_path / "demo" / "cosign.pub").is_file()


def test_demo_against_a_registry(tmp_path, monkeypatch, registry):
    """The same mission with --registry: push, remote verify, remote retag, crawl of the
    registry (real docker-registry)."""
    monkeypatch.setenv("KITAUDIT_HOME", str(tmp_path / "unused"))
    result = CliRunner().invoke(main, ["demo", "--home", str(tmp_path / "demo"),
                                       "--registry", registry.host, "--http",
                                       "--report-dir", str(tmp_path / "report"),
                                       "--output", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    steps = [s["step"] for s in data["steps"]]
    assert steps.count("push") == 2 and "crawl" in steps
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["summary"]["modelkits"] >= 2
