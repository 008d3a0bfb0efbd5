"""The scheduling files under deploy/: they parse, name only options the commands have,
and the Kubernetes job script really runs crawl → report twice against a local store,
keeping the database so the second report compares with the first crawl."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
FILES = [DEPLOY / "cron" / "kitaudit.cron", DEPLOY / "systemd" / "kitaudit-report.service",
         DEPLOY / "github-actions" / "kitaudit-report.yml",
         DEPLOY / "kubernetes" / "cronjob.yaml"]
_INVOCATION = re.compile(r"kitaudit\s+(crawl|report|login|verify-report)\b([^;&|\n>]*)")


def _invocations(path: Path) -> list[tuple[str, list[str]]]:
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    text = re.sub(r"\\\n\s*", " ", "\n".join(lines))      # join continuation lines
    out = []
    for m in _INVOCATION.finditer(text):
        flags = [t.split("=", 1)[0] for t in m.group(2).split() if t.startswith("--")]
        out.append((m.group(1), flags))
    return out


def test_every_deploy_file_runs_crawl_then_report() -> None:
    for path in FILES:
        cmds = [c for c, _ in _invocations(path)]
        assert "crawl" in cmds and "report" in cmds, path
        assert "report" in cmds[cmds.index("crawl"):], path   # a report after the crawl
        text = path.read_text()
        assert "--since last" in text and "--fail-on new-violations" in text, path


def test_deploy_files_use_existing_options() -> None:
    from kitaudit._cli import main

    for path in FILES:
        for name, flags in _invocations(path):
            cmd = main.commands[name]
            known = {o for p in cmd.params if isinstance(p, click.Option)
                     for o in (*p.opts, *p.secondary_opts)}
            unknown = [f for f in flags if f not in known]
            assert not unknown, f"{path.name}: kitaudit {name} has no {unknown}"


def test_yaml_files_parse() -> None:
    wf = yaml.safe_load((DEPLOY / "github-actions" / "kitaudit-report.yml").read_text())
    steps = wf["jobs"]["report"]["steps"]
    uses = [s.get("uses", "") for s in steps]
    assert any(u.startswith("actions/cache/restore") for u in uses)
    save = next(s for s in steps if s.get("uses", "").startswith("actions/cache/save"))
    assert save["if"] == "always()"               # the database survives a failing report
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    assert "always()" in upload["if"]
    assert wf["permissions"]["id-token"] == "write"
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "cronjob.yaml").read_text()))
    cron = next(d for d in docs if d["kind"] == "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    mounts = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"]
    assert any("persistentVolumeClaim" in v for v in mounts)


def test_systemd_units_verify() -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    units = [str(DEPLOY / "systemd" / n) for n in ("kitaudit-report.timer",
                                                    "kitaudit-report.service")]
    run = subprocess.run([tool, "verify", "--man=no", *units], capture_output=True, text=True)
    lines = [ln for ln in (run.stdout + run.stderr).splitlines() if ln.strip()]
    # the only complaint allowed: kitaudit is not installed at /usr/local/bin here
    assert all("/usr/local/bin/kitaudit is not executable" in ln for ln in lines), lines


def test_kubernetes_job_script_runs_twice(tmp_path: Path) -> None:
    """Runs the CronJob's run.sh (paths moved into a temporary directory) with the real
    kitaudit CLI against a local store: two runs, the second after a retag."""
    from kitaudit.pack import pack
    from kitaudit.signing.keys import generate_key_pair, write_key_pair
    from kitaudit.store import Store

    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "cronjob.yaml").read_text()))
    script = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["run.sh"]
    data, etc = tmp_path / "data", tmp_path / "etc"
    script = script.replace("/etc/kitaudit", str(etc)).replace("/data", str(data))
    (etc / "signing").mkdir(parents=True)
    data.mkdir()
    shutil.copytree(ROOT / "policies", etc / "policies")
    priv, pub = generate_key_pair("pw")
    write_key_pair(etc / "signing" / "cosign", priv, pub)
    (etc / "signing" / "password").write_text("pw")
    store = Store(tmp_path / "store")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "w.bin").write_bytes(b"\x00" * 8)
    (proj / "Kitfile").write_text("manifestVersion: 1.0.0\npackage: {name: m}\n"
                                  "model: {name: m, path: w.bin, license: MIT}\n")
    pack(proj, tags=["localhost/team/m:v1"], store=store)
    env = {**os.environ, "TARGET": f"oci:{tmp_path / 'store'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("KITAUDIT_PASSWORD", None)
    first = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True)
    # unsigned kit, first run: every violation is new → exit 1, report written anyway
    assert first.returncode == 1, first.stderr
    latest = data / "reports" / "latest"
    assert latest.is_symlink() and (latest / "report.html").is_file()
    assert (latest / "report.html.sigstore.json").is_file()
    r1 = json.loads((latest / "report.json").read_text())
    assert r1["changes"]["baseline"]["kind"] == "none"
    # a second run with nothing new: same database, baseline = the first crawl, exit 0
    second = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True,
                            text=True)
    assert second.returncode == 0, second.stderr
    r2 = json.loads((latest / "report.json").read_text())
    assert r2["changes"]["baseline"]["kind"] == "crawl"
    assert r2["changes"]["baseline"]["crawl_ids"] == [r1["scope"]["crawls"][0]["id"]]
    assert r2["summary"]["new_violations"] == 0
    assert r2["charts"]["signing_coverage"][-1]["crawl_id"] == \
        r1["scope"]["crawls"][0]["id"] + 1
