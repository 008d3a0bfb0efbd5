"""Compliance reports from a really crawled audit database.

The fixture packs ModelKits with ``kitaudit.pack`` into a temporary local store (a
base-model chain base-llm → chat-ft → assistant, a dataset shared by layer digest, signed
and unsigned kits, one without ML-BOM), signs some with a generated key, crawls the store
with ``kitaudit.audit.crawl`` (real verification, the shipped baseline and eu-ai-act
policies, a waivers file), then changes the store (sign, retag champion, untag, a new
kit) and crawls again. Nothing is mocked. The browser test opens the HTML report in
Debian's headless Chromium through Playwright.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kitaudit.report.data import build_report, fail_on_triggered
from kitaudit.report.render import write_report
from kitaudit.report.schema import validate_report
from tests.test_signing_keyless import ISSUER as KEYLESS_ISSUER
from tests.test_signing_keyless import SUB as KEYLESS_SUB
from tests.test_signing_keyless import _token as keyless_token
from tests.test_signing_keyless import sigstore_mock  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
POLICIES = [str(ROOT / "policies" / "baseline.yaml"), str(ROOT / "policies" / "eu-ai-act.yaml")]
PASSWORD = "report-test"
CARD = (b"# Model card\n\n## Intended use\nInternal demos.\n\n## Limitations\n"
        b"Toy model, not for production.\n")
CHROMIUM = "/usr/bin/chromium"
CLI = [sys.executable, "-c", "from kitaudit._cli import main; main()"]
ARTIFACTS = ROOT / "test-artifacts"


def _project(root: Path, name: str, kitfile: str, files: dict[str, bytes]) -> Path:
    d = root / "projects" / name
    d.mkdir(parents=True)
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_bytes(data)
    (d / "Kitfile").write_text(kitfile)
    return d


class Fixture:
    """Everything the tests need to know about the crawled store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "audit.db"
        self.digest: dict[str, str] = {}
        self.reports: dict[str, dict[str, Any]] = {}


def _crawl(fx: Fixture) -> Any:
    from kitaudit.audit.crawl import crawl
    from kitaudit.verify import VerifyOptions

    opts = VerifyOptions(keys=[str(fx.root / "cosign.pub")], policies=POLICIES,
                         waivers=str(fx.waivers))
    stats = crawl(f"oci:{fx.root / 'store'}", fx.db, options=opts, concurrency=2)
    assert stats.status == "complete", stats
    return stats


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    from kitaudit import local
    from kitaudit.pack import pack
    from kitaudit.signing.attach import sign_local
    from kitaudit.signing.keys import generate_key_pair, write_key_pair
    from kitaudit.signing.signer import KeySigner
    from kitaudit.store import Store

    root = tmp_path_factory.mktemp("report")
    fx = Fixture(root)
    store = Store(root / "store")
    corpus = b"text,label\nhello,1\nworld,0\n"
    priv, pub = generate_key_pair(PASSWORD)
    key, _pub = write_key_pair(root / "cosign", priv, pub)
    signer = KeySigner.from_file(str(key), password=PASSWORD)
    today = datetime.now(UTC).date()
    fx.waivers = root / "waivers.yaml"
    fx.waivers.write_text(
        "waivers:\n"
        "  - rule: licences-declared\n    policy: baseline\n"
        "    repository: \"localhost/acme/vision\"\n"
        "    reason: \"Dataset licence under legal review (LEGAL-7).\"\n"
        "    owner: governance@example.com\n"
        f"    expires: {(today + timedelta(days=10)).isoformat()}\n"
        "  - rule: licences-declared\n    policy: baseline\n"
        "    repository: \"localhost/acme/legacy\"\n"
        "    reason: \"Legacy model, accepted until 2020.\"\n"
        "    owner: governance@example.com\n    expires: 2020-01-01\n"
        "  - rule: energy-reported\n    repository: \"localhost/nowhere/*\"\n"
        "    reason: \"Unused waiver.\"\n    owner: ops@example.com\n    expires: 2099-12-31\n")

    def kit(name: str, tag: str, kitfile: str, files: dict[str, bytes], **kw: Any) -> str:
        proj = _project(root, f"{name}-{tag}", kitfile, files)
        ref = f"localhost/acme/{name}:{tag}"
        res = pack(proj, tags=[ref], store=store, **kw)
        fx.digest[f"{name}:{tag}"] = res.digest
        return res.digest

    kit("base-llm", "v1", "manifestVersion: 1.0.0\n"
        "package: {name: base-llm, version: 1.0.0, license: Apache-2.0}\n"
        "model: {name: base-llm, path: weights.bin, license: Apache-2.0}\n"
        "datasets:\n  - {name: corpus, path: corpus.csv, license: CC0-1.0}\n"
        "docs:\n  - {path: README.md}\n",
        {"weights.bin": b"\x01" * 256, "corpus.csv": corpus, "README.md": CARD})
    chat = ("manifestVersion: 1.0.0\n"
            "package: {{name: chat-ft, version: {v}, license: Apache-2.0}}\n"
            "model: {{name: chat-ft, path: localhost/acme/base-llm:v1, license: Apache-2.0}}\n"
            "datasets:\n  - {{name: corpus, path: corpus.csv, license: CC0-1.0}}\n"
            "  - {{name: chats, path: chats.csv, license: CC-BY-4.0}}\n"
            "docs:\n  - {{path: README.md}}\n")
    kit("chat-ft", "champion", chat.format(v="1.0.0"),
        {"corpus.csv": corpus, "chats.csv": b"q,a\nhi,hello\n", "README.md": CARD})
    kit("chat-ft", "challenger", chat.format(v="2.0.0"),
        {"corpus.csv": corpus, "chats.csv": b"q,a\nhi,hello\nbye,ciao\n", "README.md": CARD})
    kit("assistant", "v1", "manifestVersion: 1.0.0\n"
        "package: {name: assistant, version: 0.1.0, license: Apache-2.0}\n"
        "model: {name: assistant, path: localhost/acme/chat-ft:challenger, "
        "license: Apache-2.0}\n", {})
    kit("vision", "v1", "manifestVersion: 1.0.0\n"
        "package: {name: vision, version: 1.0.0, license: MIT}\n"
        "model: {name: vision, path: model.bin, license: MIT}\n"
        "datasets:\n  - {name: images, path: images.csv}\n",
        {"model.bin": b"\x02" * 64, "images.csv": b"path\n1.png\n",
         "README.md": b"---\nbase_model: google/vit-base-patch16-224\n---\n# vision\n"})
    kit("legacy", "v0", "manifestVersion: 1.0.0\n"
        "package: {name: legacy, version: 0.0.1}\n"
        "model: {name: legacy, path: old.bin, license: MIT}\n"
        "datasets:\n  - {name: scraped, path: scraped.csv}\n",
        {"old.bin": b"\x03" * 32, "scraped.csv": b"x\n1\n"}, sbom=False)
    for ref in ("base-llm:v1", "chat-ft:champion", "vision:v1"):
        sign_local(store, f"localhost/acme/{ref}", signer)
    fx.stats1 = _crawl(fx)
    fx.now1 = datetime.now(UTC)
    fx.reports["first"] = build_report(fx.db, since="last", policies=POLICIES,
                                       waivers=fx.waivers, now=fx.now1)
    write_report(fx.reports["first"], root / "report-1")

    # changes: sign the challenger, promote it to champion, drop legacy, a new kit
    sign_local(store, "localhost/acme/chat-ft:challenger", signer)
    local.tag(store, "localhost/acme/chat-ft:challenger", "localhost/acme/chat-ft:champion")
    store.untag("localhost/acme/legacy:v0")
    kit("new-model", "v1", "manifestVersion: 1.0.0\n"
        "package: {name: new-model, version: 1.0.0, license: MIT}\n"
        "model: {name: new-model, path: m.bin, license: MIT}\n",
        {"m.bin": b"\x04" * 16})
    fx.stats2 = _crawl(fx)
    fx.reports["second"] = build_report(fx.db, since="last", policies=POLICIES,
                                        waivers=fx.waivers)
    fx.reports["second_vs_file"] = build_report(
        fx.db, since=root / "report-1" / "report.json", policies=POLICIES)
    return fx


def _control(report: dict[str, Any], policy: str, rule: str) -> dict[str, Any]:
    for c in report["controls"]:
        if (c["policy"], c["rule"]) == (policy, rule):
            return c
    raise AssertionError(f"no control {policy}/{rule}")


# ---------------------------------------------------------------------- content
def test_summary_counts_first_crawl(fx: Fixture) -> None:
    s = fx.reports["first"]["summary"]
    assert s["modelkits"] == 6
    assert s["repositories"] == 5
    assert s["signed"] == 3 and s["unsigned"] == 3
    assert s["sbom_present"] == 5            # legacy was packed without an ML-BOM
    assert s["sbom_signed"] == 3
    assert s["sbom_valid"] == 3              # signed and matching the ModelKit
    baseline = {p["policy"]: p for p in s["policies"]}["baseline"]
    # signed kits pass (vision through its waiver); the three unsigned kits are denied
    assert (baseline["passing"], baseline["deny"], baseline["not_evaluated"]) == (3, 3, 0)
    assert s["new_violations"] is None       # first crawl: no baseline
    assert fx.reports["first"]["changes"]["baseline"]["kind"] == "none"


def test_failing_modelkits_listed_under_the_right_controls(fx: Fixture) -> None:
    r = fx.reports["first"]
    d = fx.digest
    signed = _control(r, "baseline", "modelkit-signed")
    assert {f["digest"] for f in signed["failing"]} == {
        d["chat-ft:challenger"], d["legacy:v0"], d["assistant:v1"]}
    assert signed["counts"]["pass"] == 3 and signed["counts"]["fail"] == 3
    refs = {(c["framework"], c["ref"]) for c in signed["controls"]}
    assert ("eu-ai-act", "Annex IV 2(h); Art. 12, 15") in refs
    assert {c["framework_name"] for c in signed["controls"]} == {
        "EU AI Act", "NIST AI RMF", "ISO/IEC 42001 Annex A"}
    attached = _control(r, "baseline", "mlbom-attached")
    assert [f["digest"] for f in attached["failing"]] == [d["legacy:v0"]]
    # the assistant's base model (chat-ft:challenger) is not signed
    bases = {f["digest"]: f for f in _control(r, "eu-ai-act", "base-models-documented")[
        "failing"]}
    assert "localhost/acme/chat-ft:challenger" in bases[d["assistant:v1"]]["reason"]
    assert d["base-llm:v1"] not in bases and d["vision:v1"] not in bases   # no base model
    licences = _control(r, "baseline", "licences-declared")
    assert [f["digest"] for f in licences["failing"]] == [d["legacy:v0"]]
    assert "expired" in licences["failing"][0]["reason"]
    assert "secondary sources" in r["controls_note"]


def test_waivers_applied_expired_and_unused(fx: Fixture) -> None:
    r = fx.reports["first"]
    d = fx.digest
    lic = _control(r, "baseline", "licences-declared")
    assert [f["digest"] for f in lic["waived"]] == [d["vision:v1"]]
    assert lic["counts"]["waived"] == 1
    failing = {f["digest"]: f for f in lic["failing"]}
    assert d["legacy:v0"] in failing and d["vision:v1"] not in failing
    by_repo = {w["repository"]: w for w in r["waivers"]}
    vision = by_repo["localhost/acme/vision"]
    assert vision["status"] == "expiring" and vision["days_left"] == 10
    assert vision["applied_to"] == [{"digest": d["vision:v1"], "policy": "baseline",
                                     "rule": "licences-declared"}]
    legacy = by_repo["localhost/acme/legacy"]
    assert legacy["status"] == "expired" and legacy["applied_to"] == []
    assert {x["digest"] for x in legacy["expired_for"]} == {d["legacy:v0"]}
    unused = by_repo["localhost/nowhere/*"]
    assert unused["status"] == "active" and unused["applied_to"] == []


def test_inventory_rows(fx: Fixture) -> None:
    inv = {k["digest"]: k for k in fx.reports["first"]["inventory"]}
    d = fx.digest
    chat = inv[d["chat-ft:champion"]]
    assert chat["tags"] == ["localhost/acme/chat-ft:champion"]
    assert chat["signed"] and chat["signers"][0]["kind"] == "key"
    assert chat["licenses_source"] == "mlbom"
    assert set(chat["licenses"]) >= {"Apache-2.0", "CC0-1.0", "CC-BY-4.0"}
    assert [b["digest"] for b in chat["base_models"]] == [d["base-llm:v1"]]
    corpus = {ds["name"]: ds for ds in chat["datasets"]}["corpus"]
    assert corpus["shared_with"] == 2        # base-llm and the challenger have the same layer
    assert 0 < chat["sbom"]["completeness"] <= 1
    legacy = inv[d["legacy:v0"]]
    assert not legacy["signed"] and not legacy["sbom"]["present"]
    assert legacy["licenses_source"] == "kitfile" and legacy["licenses"] == ["MIT"]
    assert inv[d["assistant:v1"]]["base_models"][0]["reference"] == \
        "localhost/acme/chat-ft:challenger"


def test_lineage_graph_data_and_svg(fx: Fixture) -> None:
    from kitaudit.report.charts import lineage_layout, lineage_svg

    lin = fx.reports["first"]["lineage"]
    d = fx.digest
    edges = {(e["from"], e["to"]) for e in lin["edges"]}
    assert (d["base-llm:v1"], d["chat-ft:champion"]) in edges
    assert (d["base-llm:v1"], d["chat-ft:challenger"]) in edges
    assert (d["chat-ft:challenger"], d["assistant:v1"]) in edges
    layout = lineage_layout(lin)
    col = {n: c for c, names in layout["columns"].items() for n in names}
    assert col[d["base-llm:v1"]] == 0 and col[d["chat-ft:challenger"]] == 1
    assert col[d["assistant:v1"]] == 2
    svg = lineage_svg(lin)
    tree = ET.fromstring(svg)
    texts = [t.text for t in tree.iter("{http://www.w3.org/2000/svg}text")]
    assert "base-llm" in texts and "assistant" in texts
    # the vision model's Hugging Face base model (model card front matter → ML-BOM
    # pedigree) is outside the registry: an external node
    external = [n for n in lin["nodes"] if n["kind"] == "external"]
    assert [n["reference"] for n in external] == [
        "pkg:huggingface/google/vit-base-patch16-224"]
    assert (external[0]["id"], d["vision:v1"]) in edges
    assert "vit-base-patch16-224" in svg
    shared = {s["name"]: s for s in lin["shared_datasets"]}["corpus"]
    assert set(shared["modelkits"]) == {d["base-llm:v1"], d["chat-ft:champion"],
                                        d["chat-ft:challenger"]}


def test_changes_since_last_crawl(fx: Fixture) -> None:
    ch = fx.reports["second"]["changes"]
    d = fx.digest
    assert ch["baseline"]["kind"] == "crawl"
    assert ch["baseline"]["crawl_ids"] == [fx.stats1.crawl_id]
    assert [k["digest"] for k in ch["new"]] == [d["new-model:v1"]]
    assert {k["digest"] for k in ch["removed"]} == {d["chat-ft:champion"], d["legacy:v0"]}
    assert ch["retagged"] == [{"repository": "localhost/acme/chat-ft", "tag": "champion",
                               "from": d["chat-ft:champion"], "to": d["chat-ft:challenger"]}]
    assert [t["tag"] for t in ch["tags_added"]] == ["v1"]
    assert [(t["repository"], t["tag"]) for t in ch["tags_removed"]] == [
        ("localhost/acme/legacy", "v0")]
    failing = {(f["digest"], f["policy"], f["rule"]): f for f in ch["newly_failing"]}
    assert (d["new-model:v1"], "baseline", "modelkit-signed") in failing
    assert all(f["new_modelkit"] for f in ch["newly_failing"])
    assert {f[0] for f in failing} == {d["new-model:v1"]}
    passing = {(f["digest"], f["policy"], f["rule"]) for f in ch["newly_passing"]}
    assert (d["chat-ft:challenger"], "baseline", "modelkit-signed") in passing
    assert (d["chat-ft:challenger"], "baseline", "mlbom-signed") in passing
    s = fx.reports["second"]["summary"]
    assert s["new_violations"] == len(ch["newly_failing"]) > 0
    assert s["modelkits"] == 5 and s["signed"] == 3   # base, chat-ft v2, vision


def test_changes_since_previous_report_file(fx: Fixture) -> None:
    by_crawl = fx.reports["second"]["changes"]
    by_file = fx.reports["second_vs_file"]["changes"]
    assert by_file["baseline"]["kind"] == "report"
    for key in ("new", "removed", "retagged", "tags_added", "tags_removed"):
        assert by_file[key] == by_crawl[key], key
    assert {(f["digest"], f["rule"]) for f in by_file["newly_failing"]} == \
        {(f["digest"], f["rule"]) for f in by_crawl["newly_failing"]}
    assert {(f["digest"], f["rule"]) for f in by_file["newly_passing"]} == \
        {(f["digest"], f["rule"]) for f in by_crawl["newly_passing"]}


def test_signing_coverage_over_crawls(fx: Fixture) -> None:
    series = fx.reports["second"]["charts"]["signing_coverage"]
    assert [p["crawl_id"] for p in series] == [fx.stats1.crawl_id, fx.stats2.crawl_id]
    assert series[-1] == {**series[-1], "modelkits": 5, "signed": 3, "coverage": 0.6,
                          "exact": True}
    # as it was at the first crawl (tag_history keeps the signed state per crawl)
    assert series[0] == {**series[0], "modelkits": 6, "signed": 3, "coverage": 0.5,
                         "exact": True}
    rules = {(x["policy"], x["rule"]): x for x in
             fx.reports["second"]["charts"]["violations_by_rule"]}
    assert rules[("baseline", "modelkit-signed")]["fail"] == 2   # assistant, new-model


def test_json_schema_valid_and_roundtrip(fx: Fixture) -> None:
    import jsonschema

    for name, r in fx.reports.items():
        validate_report(r)
        validate_report(json.loads(json.dumps(r)))
        assert r["scope"]["targets"] == [f"oci:{fx.root / 'store'}"], name
    broken = json.loads(json.dumps(fx.reports["first"]))
    broken["summary"]["signed"] = "three"
    with pytest.raises(jsonschema.ValidationError):
        validate_report(broken)


def test_scope_filters(fx: Fixture) -> None:
    r = build_report(fx.db, repositories=["localhost/acme/chat-*"], policies=POLICIES)
    assert {k["repository"] for k in r["inventory"]} == {"localhost/acme/chat-ft"}
    assert r["summary"]["modelkits"] == 1       # only the challenger is tagged now
    only = build_report(fx.db, policies=[POLICIES[0]])
    assert {c["policy"] for c in only["controls"]} == {"baseline"}
    assert [p["name"] for p in only["policy_set"]["policies"]] == ["baseline"]
    assert only["policy_set"]["policies"][0]["matches_database"] is True


# ---------------------------------------------------------------------- rendering
def test_rendered_files(fx: Fixture, tmp_path: Path) -> None:
    files = write_report(fx.reports["second"], tmp_path / "out")
    names = sorted(p.name for p in files)
    assert names == ["lineage.svg", "report.html", "report.json", "report.md",
                     "signing-coverage.svg", "violations-by-rule.svg"]
    html = (tmp_path / "out" / "report.html").read_text()
    md = (tmp_path / "out" / "report.md").read_text()
    for svg in ("lineage.svg", "signing-coverage.svg", "violations-by-rule.svg"):
        ET.parse(tmp_path / "out" / svg)    # well-formed
        assert f"]({svg})" in md
    # self-contained: no scripts, no external resources
    assert "<script" not in html.lower()
    for attr in ("src=", "href=\"http", "@import", "url(http"):
        assert attr not in html
    assert html.count("<svg") == 3
    assert "Control numbering is from secondary sources" in html
    assert "@media print" in html
    d = fx.digest
    assert "localhost/acme/new-model:v1" in md and "## Changes since crawl" in md
    assert f"`{d['chat-ft:champion'][:19]}…` →" not in md   # digests shortened in lists
    row = next(line for line in md.splitlines() if line.startswith("| `modelkit-signed`"))
    assert "localhost/acme/assistant:v1 (fail)" in row
    assert json.loads((tmp_path / "out" / "report.json").read_text()) == fx.reports["second"]


def test_html_escapes_database_text(fx: Fixture, tmp_path: Path) -> None:
    r = json.loads(json.dumps(fx.reports["first"]))
    r["title"] = "<script>alert(1)</script>"
    r["inventory"][0]["name"] = "<img src=x onerror=alert(1)>"
    r["lineage"]["nodes"][0]["label"] = "<b>x</b>"
    write_report(r, tmp_path, formats=["html", "md"])
    html = (tmp_path / "report.html").read_text()
    md = (tmp_path / "report.md").read_text()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<img src=x" not in html and "<b>x</b>" not in html
    assert "<img src=x" not in md


def test_fail_on_and_cli_exit_codes(fx: Fixture, tmp_path: Path) -> None:
    assert fail_on_triggered(fx.reports["second"], "violations")
    assert fail_on_triggered(fx.reports["second"], "new-violations")
    assert not fail_on_triggered(fx.reports["second"], None)
    quiet = json.loads(json.dumps(fx.reports["second"]))
    quiet["summary"]["new_violations"] = 0
    assert not fail_on_triggered(quiet, "new-violations")
    exe = CLI
    base = [*exe, "report", "--db", str(fx.db), "--out", str(tmp_path / "r"),
            "--format", "json,md", "--output", "json"]
    ok = subprocess.run(base, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert data["triggered"] is False and len(data["files"]) == 5
    bad = subprocess.run([*base, "--fail-on", "new-violations"], capture_output=True,
                         text=True)
    assert bad.returncode == 1 and json.loads(bad.stdout)["triggered"] is True
    only_chat = subprocess.run([*base, "--fail-on", "new-violations", "--repository",
                                "localhost/acme/chat-ft"], capture_output=True, text=True)
    assert only_chat.returncode == 0, only_chat.stdout   # nothing new failed there
    err = subprocess.run([*exe, "report", "--db", str(tmp_path / "nope.db"), "--out",
                          str(tmp_path / "x")], capture_output=True, text=True)
    assert err.returncode == 2 and "error:" in err.stderr and "fix:" in err.stderr
    fmt = subprocess.run([*base, "--format", "pdf"], capture_output=True, text=True)
    assert fmt.returncode == 2 and "unknown report format" in fmt.stderr


def test_empty_database_is_a_clear_error(tmp_path: Path) -> None:
    from kitaudit.audit.schema import open_db
    from kitaudit.errors import KitauditError

    open_db(tmp_path / "empty.db").conn.close()
    with pytest.raises(KitauditError, match="no crawl yet"):
        build_report(tmp_path / "empty.db")
    with pytest.raises(KitauditError):
        build_report(tmp_path / "missing.db")


def test_since_errors(fx: Fixture, tmp_path: Path) -> None:
    from kitaudit.errors import UsageError

    (tmp_path / "x.json").write_text("{\"kind\": \"other\"}")
    with pytest.raises(UsageError, match="not a kitaudit report"):
        build_report(fx.db, since=tmp_path / "x.json")
    with pytest.raises(UsageError, match="no such crawl"):
        build_report(fx.db, since="crawl:999")
    r = build_report(fx.db, since=f"crawl:{fx.stats1.crawl_id}")
    assert r["changes"]["baseline"]["crawl_ids"] == [fx.stats1.crawl_id]


# ---------------------------------------------------------------------- signing
def test_signed_report_verifies_and_detects_changes(fx: Fixture, tmp_path: Path) -> None:
    env = {**os.environ, "KITAUDIT_PASSWORD": PASSWORD}
    out = tmp_path / "signed"
    run = subprocess.run([*CLI, "report", "--db",
                          str(fx.db), "--out", str(out), "--sign", "--key",
                          str(fx.root / "cosign.key"), "--output", "json"],
                         capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    bundles = json.loads(run.stdout)["bundles"]
    assert len(bundles) == 6 and all(Path(b).is_file() for b in bundles)

    from kitaudit.errors import VerificationError
    from kitaudit.report.sign import REPORT_PREDICATE, verify_report_file
    from kitaudit.signing.verify_bundle import SignerPolicy

    policy = SignerPolicy.from_key_files(fx.root / "cosign.pub")
    res = verify_report_file(out / "report.html", policy=policy)
    assert res.kind == "key" and res.predicate_type == REPORT_PREDICATE
    stmt = json.loads(res.statement.raw)
    assert stmt["subject"][0]["name"] == "report.html"
    assert stmt["predicate"]["crawls"][0]["id"] == fx.stats2.crawl_id
    with (out / "report.json").open("a") as fh:
        fh.write(" ")
    with pytest.raises(VerificationError, match="does not match"):
        verify_report_file(out / "report.json", policy=policy)
    from kitaudit.signing.keys import generate_key_pair, load_public_key

    _priv, other_pub = generate_key_pair("x")
    with pytest.raises(VerificationError):
        verify_report_file(out / "report.md",
                           policy=SignerPolicy(keys=(load_public_key(other_pub),)))
    cli = subprocess.run([*CLI, "verify-report",
                          str(out / "report.html"), str(out / "report.json"), "--key",
                          str(fx.root / "cosign.pub")], capture_output=True, text=True)
    assert cli.returncode == 1
    assert "OK " in cli.stdout and "FAILED " in cli.stdout


def test_sign_without_password_writes_no_bundle(fx: Fixture, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KITAUDIT_PASSWORD", "COSIGN_PASSWORD")}
    run = subprocess.run([*CLI, "report", "--db",
                          str(fx.db), "--out", str(tmp_path / "o"), "--sign", "--key",
                          str(fx.root / "cosign.key")], capture_output=True, text=True,
                         env=env, stdin=subprocess.DEVNULL)
    assert run.returncode == 2 and "KITAUDIT_PASSWORD" in run.stderr
    assert not list(tmp_path.glob("o/*.sigstore.json"))


def test_templates_ship_with_the_package() -> None:
    from importlib.resources import files

    tdir = files("kitaudit.report") / "templates"
    for name in ("report.html.j2", "report.md.j2", "report.css"):
        assert (tdir / name).is_file(), name
    text = (ROOT / "pyproject.toml").read_text()
    assert '"report/templates/*"' in text


# ---------------------------------------------------------------------- browser
def test_html_report_in_headless_chromium(fx: Fixture, tmp_path: Path) -> None:
    """Opens the HTML report in Debian's Chromium (no browser download) via Playwright:
    no console errors, no network requests, summary/controls/lineage visible; saves a
    screenshot to test-artifacts/report.png."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    pw = pytest.importorskip("playwright.sync_api",
                             reason="playwright is not installed (pip install playwright)")
    out = tmp_path / "html"
    write_report(fx.reports["second"], out, formats=["html"])
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    requests: list[str] = []
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto((out / "report.html").as_uri(), wait_until="load")
            assert page.title().startswith("ModelKit compliance report")
            for sel in ("#summary", "#controls", "#lineage svg", "#charts svg",
                        "#inventory table"):
                assert page.locator(sel).first.is_visible(), sel
            summary = page.locator("#summary").inner_text()
            assert "ModelKits covered" in summary and "signed" in summary
            assert page.locator("#controls").get_by_text("modelkit-signed").first.is_visible()
            lineage = page.locator("#lineage svg").first
            box = lineage.bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 80
            assert lineage.locator("text", has_text="base-llm").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
            page.emulate_media(media="print")
            assert not page.locator("nav.toc").is_visible()
        finally:
            browser.close()
    assert problems == []
    assert [u for u in requests if not u.startswith("file://")] == []


def test_screenshot_artifact_dir_is_ignored() -> None:
    assert "test-artifacts/" in (ROOT / ".gitignore").read_text()


def test_template_dir_overrides_the_packaged_templates(fx: Fixture, tmp_path: Path) -> None:
    from kitaudit.report.render import TEMPLATE_DIR

    tdir = tmp_path / "templates"
    shutil.copytree(TEMPLATE_DIR, tdir)
    md = tdir / "report.md.j2"
    md.write_text(md.read_text().replace("## Summary", "## Executive summary"))
    (tdir / "report.css").write_text("body { color: #123456; }")
    write_report(fx.reports["first"], tmp_path / "out", formats=["md", "html"],
                 template_dir=tdir)
    assert "## Executive summary" in (tmp_path / "out" / "report.md").read_text()
    assert "#123456" in (tmp_path / "out" / "report.html").read_text()


@given(st.lists(st.sampled_from(["html", "md", "json", "markdown", " HTML ", ""]),
                max_size=6), st.text(max_size=8))
def test_parse_formats(items: list[str], junk: str) -> None:
    from kitaudit.errors import UsageError
    from kitaudit.report.render import FORMATS, parse_formats

    text = ",".join(items)
    wanted = [("md" if i.strip().lower() == "markdown" else i.strip().lower())
              for i in items if i.strip()]
    if wanted:
        got = parse_formats(text)
        assert got == list(dict.fromkeys(wanted)) and set(got) <= set(FORMATS)
    else:
        with pytest.raises(UsageError):
            parse_formats(text)
    bad = junk.strip().lower()
    if bad and "," not in bad and bad not in (*FORMATS, "markdown"):
        with pytest.raises(UsageError, match="unknown report format"):
            parse_formats(f"html,{junk}")


def test_keyless_signed_report(fx: Fixture, tmp_path: Path,
                               sigstore_mock: Path) -> None:  # noqa: F811 - fixture
    """Keyless --sign against the loopback Sigstore services of test_signing_keyless (the
    one mock: real Fulcio/Rekor cannot run here); verified for real."""
    from kitaudit.report.sign import verify_report_file
    from kitaudit.signing.verify_bundle import SignerPolicy, load_trusted_root

    out = tmp_path / "keyless"
    run = subprocess.run([*CLI, "report", "--db", str(fx.db), "--out", str(out),
                          "--format", "html,json", "--sign", "--identity-token",
                          keyless_token(), "--trust-config", str(sigstore_mock)],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr
    policy = SignerPolicy(identity=KEYLESS_SUB, issuer=KEYLESS_ISSUER)
    res = verify_report_file(out / "report.json", policy=policy,
                             trusted_root=load_trusted_root(sigstore_mock))
    assert res.kind == "keyless" and res.signer == KEYLESS_SUB
    cli = subprocess.run([*CLI, "verify-report", str(out / "report.html"),
                          "--certificate-identity", KEYLESS_SUB, "--certificate-oidc-issuer",
                          KEYLESS_ISSUER, "--trusted-root", str(sigstore_mock)],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    wrong = subprocess.run([*CLI, "verify-report", str(out / "report.html"),
                            "--certificate-identity", "someone@else.example",
                            "--certificate-oidc-issuer", KEYLESS_ISSUER, "--trusted-root",
                            str(sigstore_mock)], capture_output=True, text=True)
    assert wrong.returncode == 1 and "FAILED" in wrong.stdout


def test_crawl_errors_are_reported(tmp_path: Path) -> None:
    """A manifest blob corrupted on disk: the crawler records the error, the report lists
    it and says ModelKits may be missing."""
    from kitaudit.audit.crawl import crawl
    from kitaudit.pack import pack
    from kitaudit.store import Store

    store = Store(tmp_path / "store")
    for name in ("good", "broken"):
        proj = tmp_path / name
        proj.mkdir()
        (proj / "w.bin").write_bytes(name.encode() * 8)
        (proj / "Kitfile").write_text(f"manifestVersion: 1.0.0\npackage: {{name: {name}}}\n"
                                      f"model: {{name: {name}, path: w.bin}}\n")
        res = pack(proj, tags=[f"localhost/t/{name}:v1"], store=store)
    store.blob_path(res.digest).write_bytes(b"{\"not\": \"the manifest\"}")
    crawl(f"oci:{tmp_path / 'store'}", tmp_path / "audit.db", concurrency=1)
    r = build_report(tmp_path / "audit.db")
    validate_report(r)
    assert r["summary"]["crawl_errors"] >= 1
    assert any(e["reference"] and "broken" in e["reference"] for e in r["errors"])
    assert [k["name"] for k in r["inventory"]] == ["good"]
    assert r["trust"]["crawls"][0]["verified"] is False    # crawled without trust options
    write_report(r, tmp_path / "out", formats=["html", "md"])
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Crawl errors" in html and "may be missing" in html
    assert "Crawl errors" in (tmp_path / "out" / "report.md").read_text()


def test_coverage_without_signed_snapshots_is_marked_approximate(fx: Fixture,
                                                                  tmp_path: Path) -> None:
    """An audit database from before tag_history recorded the signed state."""
    import sqlite3

    db = tmp_path / "old.db"
    shutil.copy(fx.db, db)
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE tag_history DROP COLUMN signed")
    series = build_report(db)["charts"]["signing_coverage"]
    assert [p["exact"] for p in series] == [False, True]
    assert series[0]["signed"] == 4          # today's signatures over the first crawl's kits
    assert any("approximate" in n for n in build_report(db)["not_recorded"])


def test_since_crawl_is_exact_over_several_crawls(fx: Fixture, tmp_path: Path) -> None:
    """A rule that fails, is waived, then fails again: compared with the first crawl it
    is not newly failing, compared with the waived crawl it is (policy_history; the
    current/previous columns alone would call it new in both)."""
    import sqlite3

    from kitaudit.audit.crawl import crawl
    from kitaudit.verify import VerifyOptions

    db = tmp_path / "history.db"
    shutil.copy(fx.db, db)
    waived = tmp_path / "waivers.yaml"
    waived.write_text(fx.waivers.read_text() +
                      "  - rule: modelkit-signed\n    policy: baseline\n"
                      "    repository: \"localhost/acme/new-model\"\n"
                      "    reason: \"Signing key being rotated.\"\n"
                      "    owner: ops@example.com\n    expires: 2099-12-31\n")
    ids = []
    for waivers in (waived, fx.waivers):
        opts = VerifyOptions(keys=[str(fx.root / "cosign.pub")], policies=POLICIES,
                             waivers=str(waivers))
        ids.append(crawl(f"oci:{fx.root / 'store'}", db, options=opts,
                         concurrency=2).crawl_id)
    key = (fx.digest["new-model:v1"], "baseline", "modelkit-signed")
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT crawl_id, status FROM policy_history WHERE subject_digest=? "
                        "AND policy=? AND rule=? ORDER BY crawl_id", key).fetchall() == [
        (fx.stats2.crawl_id, "fail"), (ids[0], "waived"), (ids[1], "fail")]
    conn.close()

    def newly(since: str) -> tuple[set[Any], set[Any]]:
        ch = build_report(db, since=since, policies=POLICIES)["changes"]
        return ({(f["digest"], f["policy"], f["rule"]) for f in ch["newly_failing"]},
                {(f["digest"], f["policy"], f["rule"]) for f in ch["newly_passing"]})

    failing, passing = newly(f"crawl:{fx.stats2.crawl_id}")
    assert key not in failing and key not in passing
    failing, passing = newly(f"crawl:{ids[0]}")
    assert key in failing
    assert newly("last")[0] == failing      # last = the crawl before the latest
    # the first crawl: new-model did not exist, chat-ft:challenger was unsigned then
    failing, passing = newly(f"crawl:{fx.stats1.crawl_id}")
    assert (fx.digest["chat-ft:challenger"], "baseline", "modelkit-signed") in passing


def test_trust_material_named_by_identity(fx: Fixture, tmp_path: Path) -> None:
    """crawls.options records the key's id and cosign hint, the policies' fingerprints
    and the waivers file's digest, never a file path; the report names them."""
    import hashlib
    import sqlite3

    from kitaudit.signing.keys import load_public_key, public_key_hint

    pub = load_public_key((fx.root / "cosign.pub").read_bytes())
    hint = public_key_hint(pub)
    with sqlite3.connect(fx.db) as conn:
        texts = [r[0] for r in conn.execute("SELECT options FROM crawls")]
        key_ids = {r[0] for r in conn.execute(
            "SELECT key_id FROM signatures WHERE verified = 1")}
    for text in texts:
        assert str(fx.root) not in text and "/policies/" not in text
        opts = json.loads(text)
        assert [k["hint"] for k in opts["keys"]] == [hint]
        assert {k["key_id"] for k in opts["keys"]} == key_ids   # the signers' key ids
    trust = fx.reports["second"]["trust"]["crawls"][0]
    assert trust["identified"] and trust["key_ids"][0]["hint"] == hint
    assert trust["keys"][0].startswith(f"sha256:{next(iter(key_ids))[:16]} (hint {hint}")
    digest = "sha256:" + hashlib.sha256(fx.waivers.read_bytes()).hexdigest()
    assert trust["waivers_digest"] == digest and digest in trust["waivers"]
    fps = {p["name"]: p["fingerprint"] for p in trust["policy_fingerprints"]}
    assert fps == {p["name"]: p["fingerprint"]
                   for p in fx.reports["second"]["policy_set"]["policies"]}
    validate_report(fx.reports["second"])
    write_report(fx.reports["second"], tmp_path / "out", formats=["html", "md"])
    for name in ("report.html", "report.md"):
        text = (tmp_path / "out" / name).read_text()
        assert hint in text and digest in text, name


def test_base_models_verified_from_the_crawl_and_reevaluated(fx: Fixture) -> None:
    """An OCI layout has no registry to look base models up in: the crawl uses what it
    recorded (the base's verified signatures). A derived kit whose base is signed passes
    eu-ai-act's base-models-documented, one whose base is unsigned fails; when the base
    is signed in a later crawl, the derived kit (unchanged itself) is evaluated again."""
    import sqlite3

    d = fx.digest
    first = {f["digest"]: f for f in _control(fx.reports["first"], "eu-ai-act",
                                              "base-models-documented")["failing"]}
    assert d["chat-ft:champion"] not in first and d["chat-ft:challenger"] not in first
    assert d["assistant:v1"] in first      # its base (chat-ft:challenger) was unsigned
    second = {f["digest"] for f in _control(fx.reports["second"], "eu-ai-act",
                                            "base-models-documented")["failing"]}
    assert d["assistant:v1"] not in second  # the challenger was signed before crawl 2
    assert fx.stats2.reevaluated >= 1
    inv = {k["digest"]: k for k in fx.reports["second"]["inventory"]}
    assert [(b["digest"], b["verified"]) for b in inv[d["assistant:v1"]]["base_models"]
            if b["source"] == "kitfile"] == [(d["chat-ft:challenger"], True)]
    assert [(b["digest"], b["verified"]) for b in inv[d["chat-ft:challenger"]]["base_models"]
            if b["source"] == "kitfile"] == [(d["base-llm:v1"], True)]
    validate_report(fx.reports["second"])
    inv1 = {k["digest"]: k for k in fx.reports["first"]["inventory"]}
    assert {b["verified"] for b in inv1[d["assistant:v1"]]["base_models"]} == {False}
    with sqlite3.connect(fx.db) as conn:
        # the assistant was not read for its own sake in crawl 2 (nothing of it changed)
        # but its policy results were renewed there, and its tag history snapshot too
        rows = conn.execute(
            "SELECT crawl_id, status FROM policy_history WHERE subject_digest = ? AND "
            "rule = 'base-models-documented' ORDER BY crawl_id", (d["assistant:v1"],)
        ).fetchall()
        assert rows == [(fx.stats1.crawl_id, "fail"), (fx.stats2.crawl_id, "pass")]
