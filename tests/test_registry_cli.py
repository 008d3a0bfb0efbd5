"""The users' runbook commands, verbatim (``kitaudit`` for ``./kit``), end to end against
a real docker-registry. ``corp-registry/app-model`` has no registry host, so by kit's
rules it lives on ``localhost``; ``KITAUDIT_REGISTRY_ENDPOINTS`` points ``localhost`` at
the test registry's port (like a registries.conf ``location``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from kitaudit._cli import main
from kitaudit.registry import remote_list_tags, remote_manifest, remote_tag
from kitaudit.store import Store

pytestmark = pytest.mark.registry

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "churn-model"


def _run(args: list[str], **kwargs) -> str:
    result = CliRunner().invoke(main, args, catch_exceptions=False, **kwargs)
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result.stdout


@pytest.fixture
def seed_env(registry, tmp_path, monkeypatch, kit_home):
    if not (EXAMPLE / "Kitfile").exists():
        pytest.skip("examples/churn-model is missing")
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project)
    monkeypatch.setenv("KITAUDIT_REGISTRY_ENDPOINTS", f"localhost={registry.host}")
    monkeypatch.chdir(project)
    return project


def _use_home(monkeypatch, path: Path) -> Store:
    monkeypatch.setenv("KITAUDIT_HOME", str(path))
    return Store(path / "store")


def test_runbook_seed_flow(seed_env, registry, tmp_path, monkeypatch):
    _run(["pack", "-t", "corp-registry/app-model:challenger"])
    _run(["pack", "-t", "corp-registry/churn-model:beta"])
    out = _run(["push", "--http", "corp-registry/app-model:challenger"])
    assert "Pushed localhost/corp-registry/app-model:challenger" in out
    _run(["push", "--plain-http", "corp-registry/churn-model:beta"])
    # the runbook's tag lines, verbatim (local tags), then pushed
    _run(["tag", "champion", "corp-registry/app-model:challenger"])
    _run(["tag", "1.0", "corp-registry/app-model:champion"])
    _run(["push", "--http", "corp-registry/app-model:1.0"])
    pushed, manifest, _ = remote_manifest(
        f"{registry.host}/corp-registry/app-model:challenger", plain_http=True)
    layers = {(d.get("annotations") or {}).get("org.cncf.model.filepath"): d
              for d in manifest["layers"]}

    # a consumer on another machine: fresh store, verbatim pull commands (no --http:
    # a loopback registry without TLS is used over plain HTTP, as docker does)
    consumer = _use_home(monkeypatch, tmp_path / "consumer")
    _run(["pull", "-filter", "code", "corp-registry/app-model:challenger"])
    assert consumer.has_blob(layers["src"]["digest"])
    assert not consumer.has_blob(layers["model/churn-model.json"]["digest"])
    assert not consumer.has_blob(layers["data/train.csv"]["digest"])

    consumer2 = _use_home(monkeypatch, tmp_path / "consumer2")
    _run(["pull", "-filter", "config", "corp-registry/app-model:challenger"])
    assert consumer2.has_blob(manifest["config"]["digest"])
    assert not any(consumer2.has_blob(d["digest"]) for d in manifest["layers"])

    consumer3 = _use_home(monkeypatch, tmp_path / "consumer3")
    out = _run(["pull", "-filter", "dataset:validation", "-filter", "model",
                "corp-registry/app-model:challenger"])
    assert "not selected by --filter" in out
    assert consumer3.has_blob(layers["data/validation.csv"]["digest"])
    assert consumer3.has_blob(layers["model/churn-model.json"]["digest"])
    assert not consumer3.has_blob(layers["data/train.csv"]["digest"])
    assert not consumer3.has_blob(layers["src"]["digest"])

    consumer4 = _use_home(monkeypatch, tmp_path / "consumer4")
    _run(["pull", "-filter", "model", "corp-registry/app-model:challenger"])
    assert consumer4.has_blob(layers["model/churn-model.json"]["digest"])
    assert not consumer4.has_blob(layers["data/validation.csv"]["digest"])

    # long forms: --filter, pull -d DIR unpacks what was fetched
    _use_home(monkeypatch, tmp_path / "consumer5")
    target = tmp_path / "unpacked"
    _run(["pull", "--filter", "datasets:validation", "-d", str(target),
          "corp-registry/app-model:challenger"])
    assert (target / "data" / "validation.csv").read_bytes() == \
        (seed_env / "data" / "validation.csv").read_bytes()
    assert not (target / "data" / "train.csv").exists()

    # remote tags: champion → challenger's manifest, then 1.0 → champion's
    remote_tag("corp-registry/app-model:challenger", "corp-registry/app-model:champion")
    remote_tag("corp-registry/app-model:champion", "corp-registry/app-model:1.0")
    tags = dict(remote_list_tags("corp-registry/app-model"))
    assert {t.rsplit(":", 1)[1] for t in tags} == {"challenger", "champion", "1.0"}
    # 1.0 was pushed from the local tag and re-set remotely: same manifest either way
    assert {d["digest"] for d in tags.values()} == {pushed["digest"]}

    # the full pull has everything, and the SBOM referrer came along
    full = _use_home(monkeypatch, tmp_path / "full")
    out = _run(["pull", "--output", "json", "corp-registry/app-model:challenger"])
    data = json.loads(out)
    assert data["digest"] == pushed["digest"] and not data["partial"]
    for d in manifest["layers"]:
        assert full.has_blob(d["digest"])
    assert data["referrers"], "the ML-BOM referrer written by pack should travel along"
    assert full.referrers(pushed["digest"])


def test_push_src_dest_and_json(seed_env, registry, monkeypatch):
    _run(["pack", "-t", "corp-registry/app-model:v2"])
    dest = f"{registry.host}/elsewhere/app-model:copy"
    out = _run(["push", "--http", "--progress", "plain", "--concurrency", "2",
                "--no-referrers", "--output", "json", "corp-registry/app-model:v2", dest])
    data = json.loads(out)
    assert data["reference"] == dest and data["referrers"] == []
    assert {b["action"] for b in data["blobs"]} <= {"uploaded", "mounted", "skipped"}
    # re-push: nothing uploaded
    data = json.loads(_run(["push", "--http", "--output", "json",
                            "corp-registry/app-model:v2", dest]))
    assert {b["action"] for b in data["blobs"]} == {"skipped"}


def test_cli_errors_are_one_line(seed_env, monkeypatch):
    result = CliRunner().invoke(main, ["push", "--http", "corp-registry/not-packed:v1"])
    assert result.exit_code == 2
    assert result.output.startswith("error: ")
    result = CliRunner().invoke(main, ["pull", "-filter", "bogus", "corp-registry/x:v1"])
    assert result.exit_code == 2 and "invalid filter type" in result.output


def test_tls_verify_false_spelling(tls_registry, tmp_path, kit_home, monkeypatch):
    from tests.registry_fixtures import build_modelkit

    store = Store(kit_home / "store")
    ref = f"{tls_registry.host}/cli/tls:v1"
    build_modelkit(store, ref, seed="cli-tls")
    result = CliRunner().invoke(main, ["push", ref])
    assert result.exit_code == 2 and "certificate" in result.output
    _run(["push", "--tls-verify=false", ref])
    _run(["push", "--tls-cert", str(tls_registry.ca_path), ref])


def test_base_model_resolved_from_registry(seed_env, registry, tmp_path, monkeypatch):
    """A Kitfile whose model.path is a ModelKit reference that only the registry has:
    pack resolves the parent Kitfile remotely (fetch_kitfile)."""
    _run(["pack", "-t", "corp-registry/base-model:v1"])
    _run(["push", "--http", "corp-registry/base-model:v1"])
    base_digest = json.loads(_run(["inspect", "corp-registry/base-model:v1"]))["digest"]
    child = tmp_path / "child"
    (child / "src").mkdir(parents=True)
    (child / "src" / "finetune.py").write_text("print('fine-tune')\n")
    (child / "Kitfile").write_text(
        'manifestVersion: "1.0.0"\n'
        "package:\n  name: child-model\n"
        "model:\n  name: child\n  path: corp-registry/base-model:v1\n"
        "code:\n  - path: src\n")
    _use_home(monkeypatch, tmp_path / "child-home")  # the base is not in this store
    monkeypatch.chdir(child)
    data = json.loads(_run(["pack", "-t", "corp-registry/child:v1", "--output", "json"]))
    assert [a["digest"] for a in data["ancestors"]] == [base_digest]


def test_remote_inspect_info_list_tag_remove(seed_env, registry, tmp_path, monkeypatch):
    """`inspect -r`, `info -r`, `list REPO -r`, remote `tag`, `remove -r` (wired in the
    local commands) on top of kitaudit.registry."""
    _run(["pack", "-t", "corp-registry/app-model:challenger"])
    _run(["push", "--http", "corp-registry/app-model:challenger"])
    _use_home(monkeypatch, tmp_path / "empty")  # nothing local: everything is remote
    inspected = json.loads(_run(["inspect", "-r", "corp-registry/app-model:challenger"]))
    assert inspected["kitfile"]["package"]["name"] == "churn-model"
    info = json.loads(_run(["info", "-r", "--output", "json",
                            "corp-registry/app-model:challenger"]))
    assert info["model"]["path"] == "model/churn-model.json"
    # localhost counts as local for `tag`: -r asks for the registry
    out = _run(["tag", "-r", "champion", "corp-registry/app-model:challenger"])
    assert "on the registry" in out
    _run(["tag", "-r", "1.0", "corp-registry/app-model:champion"])
    rows = json.loads(_run(["list", "-r", "--output", "json", "corp-registry/app-model"]))
    assert {r["tag"] for r in rows} == {"challenger", "champion", "1.0"}
    assert len({r["digest"] for r in rows}) == 1
    _run(["remove", "-r", "corp-registry/app-model:1.0"])
    rows = json.loads(_run(["list", "-r", "--output", "json", "corp-registry/app-model"]))
    assert rows == []  # the manifest is gone with every tag pointing at it
