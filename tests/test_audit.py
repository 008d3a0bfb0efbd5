"""The auditor end to end with real parts: ModelKits packed with ``kitaudit.pack.pack``
(real ML-BOMs), signed with ``kitaudit.signing`` (an ECDSA key made here), pushed with
``kitaudit.registry.transfer.push`` to Debian's docker-registry (distribution 2.8: no
referrers API, so fallback tags and cosign legacy tags), crawled into SQLite and
queried. The world: a base model, a fine-tune built on it, a second-level fine-tune,
shared datasets (same layer and same name), signed and unsigned kits, a kit without an
ML-BOM, a plain OCI image, a champion tag retagged to a challenger, a broken manifest.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kitaudit._cli import main
from kitaudit.audit import queries
from kitaudit.audit.crawl import crawl, parse_shard, shard_of
from kitaudit.audit.merge import merge
from kitaudit.errors import NotFound, UsageError
from kitaudit.pack import pack
from kitaudit.registry.transfer import open_client, push, remote_tag
from kitaudit.registry.transport import NetOptions
from kitaudit.signing import keys
from kitaudit.signing.attach import sign_reference
from kitaudit.signing.signer import KeySigner
from kitaudit.store import Store
from kitaudit.verify import VerifyOptions
from tests.registry_fixtures import RegistryServer, start_registry

ROOT = Path(__file__).resolve().parents[1]
BASELINE = str(ROOT / "policies" / "baseline.yaml")

CORPUS = "id,text\n" + "".join(f"{i},sample {i}\n" for i in range(50))


class World:
    """The seeded registry and what the tests need to know about it."""

    def __init__(self, tmp: Path, reg: RegistryServer) -> None:
        self.tmp = tmp
        self.reg = reg
        self.host = reg.host
        self.store = Store(tmp / "home" / "store")
        priv = ec.generate_private_key(ec.SECP256R1())
        self.signer = KeySigner(keys.LoadedKey(priv, "test.key"))
        self.pub = tmp / "cosign.pub"
        self.pub.write_bytes(priv.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.digests: dict[str, str] = {}

    def ref(self, name: str) -> str:
        return f"{self.host}/audit/{name}"

    @property
    def options(self) -> VerifyOptions:
        return VerifyOptions(keys=[str(self.pub)], policies=[BASELINE])

    def kit(self, name: str, tag: str, kitfile: str, files: dict[str, str], *,
            sbom: bool = True) -> str:
        ctx = self.tmp / "ctx" / f"{name}-{tag}"
        ctx.mkdir(parents=True)
        (ctx / "Kitfile").write_text(kitfile)
        for path, text in files.items():
            (ctx / path).parent.mkdir(parents=True, exist_ok=True)
            (ctx / path).write_text(text)
        ref = f"{self.ref(name)}:{tag}"
        result = pack(ctx, tags=[ref], store=self.store, sbom=sbom)
        self.digests[f"{name}:{tag}"] = result.digest
        return ref

    def push(self, ref: str, dest: str | None = None) -> None:
        push(ref, dest, store=self.store, progress="none", **self.reg.net)

    def sign(self, ref: str, **kw: Any) -> None:
        sign_reference(ref, self.signer, store=self.store, **kw)


def _kitfile(name: str, model_path: str, datasets: list[tuple[str, str]],
             licence: str = "Apache-2.0") -> str:
    lines = ["manifestVersion: 1.0.0", "package:", f"  name: {name}", "  version: 1.0.0",
             f"  license: {licence}", f"  description: {name} model for the audit tests",
             "model:", f"  name: {name}-model", f"  path: {model_path}",
             f"  license: {licence}"]
    if datasets:
        lines.append("datasets:")
        for ds_name, path in datasets:
            lines += [f"  - name: {ds_name}", f"    path: {path}", "    license: CC-BY-4.0"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("audit")
    reg = start_registry(tmp / "registry")
    mp = pytest.MonkeyPatch()
    mp.setenv("KITAUDIT_HOME", str(tmp / "home"))
    try:
        w = World(tmp, reg)
        base = w.kit("base", "v1", _kitfile("base", "model.bin",
                                            [("common-corpus", "data/corpus.csv")]),
                     {"model.bin": "weights-base", "data/corpus.csv": CORPUS})
        w.sign(base)
        w.push(base)
        ft = w.kit("ft", "v1", _kitfile("ft", base, [("common-corpus", "data/corpus.csv"),
                                                    ("ft-train", "data/train.csv")]),
                   {"data/corpus.csv": CORPUS, "data/train.csv": "a,b\n1,2\n"})
        w.push(ft)
        # signed in place in the registry, in both formats (bundles + cosign's .sig/.att)
        sign_reference(ft, w.signer, remote=True, signature_format="legacy", **reg.net)
        w.push(ft, f"{w.ref('ft')}:champion")
        ft2 = w.kit("ft2", "v1", _kitfile("ft2", ft, [("common-corpus", "data/corpus.csv")]),
                    {"data/corpus.csv": "id,text\n0,different corpus\n"})
        w.push(ft2)
        solo = w.kit("solo", "v1", _kitfile("solo", "model.bin", [], licence="MIT"),
                     {"model.bin": "weights-solo"}, sbom=False)
        w.push(solo)
        challenger = w.kit("ft", "v2", _kitfile("ft", base, [
            ("common-corpus", "data/corpus.csv"), ("ft-train", "data/train.csv")]),
                           {"data/corpus.csv": CORPUS, "data/train.csv": "a,b\n3,4\n"})
        w.sign(challenger)
        w.push(challenger)
        broken = w.kit("broken", "v1", _kitfile("broken", "model.bin", []),
                       {"model.bin": "weights-broken"})
        w.push(broken)
        _push_plain_image(w)
        _break_manifest(reg, w.digests["broken:v1"])
        yield w
    finally:
        mp.undo()
        reg.stop()


def _push_plain_image(w: World) -> None:
    """A container image (not a ModelKit): counted, not stored in detail."""
    cfg = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = b"not a model"
    with open_client(w.host, NetOptions(plain_http=True)) as client:
        cfg_d = client.upload_bytes("audit/app", cfg)
        layer_d = client.upload_bytes("audit/app", layer)
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": cfg_d, "size": len(cfg)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                "digest": layer_d, "size": len(layer)}]}
        client.put_manifest("audit/app", "1.0", json.dumps(manifest).encode())


def _break_manifest(reg: RegistryServer, digest: str) -> None:
    """Overwrite the stored manifest blob: the registry now serves bytes that do not
    hash to the digest it announces."""
    hexpart = digest.split(":", 1)[1]
    path = reg.workdir / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / \
        hexpart[:2] / hexpart / "data"
    assert path.is_file()
    path.write_bytes(b'{"schemaVersion": 2, "this": "is not the manifest"}')


def _canonical(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The crawl's content without crawl ids and times (for equality checks)."""
    conn = sqlite3.connect(db)
    queries_ = {
        "manifests": "SELECT digest, kind, format, signed, sbom_present, sbom_verified, "
                     "decision, complete, referrers_fingerprint FROM manifests",
        "tags": "SELECT repository, tag, digest FROM tags",
        "layers": "SELECT * FROM layers",
        "kitfiles": "SELECT manifest_digest, package_name, base_reference, kitfile "
                    "FROM kitfiles",
        "datasets": "SELECT * FROM datasets",
        "referrers": "SELECT subject_digest, digest, source, artifact_type, predicate_type "
                     "FROM referrers",
        "signatures": "SELECT subject_digest, referrer_digest, verified, attestation, kind, "
                      "key_id, predicate_type, source FROM signatures",
        "sboms": "SELECT subject_digest, referrer_digest, verified, matches_manifest, "
                 "completeness, licenses FROM sboms",
        "lineage_edges": "SELECT child_digest, parent_reference, parent_digest, source, "
                         "depth FROM lineage_edges",
        "policy_results": "SELECT subject_digest, policy, rule, status, severity "
                          "FROM policy_results",
        "repositories": "SELECT name, status, tag_count FROM repositories",
        "error_refs": "SELECT reference, stage FROM errors",
    }
    try:
        return {k: sorted(conn.execute(q).fetchall(), key=repr) for k, q in queries_.items()}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def crawled(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("db") / "audit.db"
    stats = crawl(f"{world.host}/audit", db, options=world.options, net=world.reg.net)
    assert stats.status == "complete"
    return db


# ---------------------------------------------------------------------- first crawl
def test_crawl_counts_and_errors(world: World, crawled: Path) -> None:
    conn = sqlite3.connect(crawled)
    row = conn.execute("SELECT status, repositories, modelkits, other_artifacts, errors, "
                       "finished_at FROM crawls").fetchone()
    assert row[0] == "complete" and row[5]
    assert row[1] == 6          # base, ft, ft2, solo, broken, app
    assert row[2] == 5          # base, ft v1, ft v2, ft2, solo
    assert row[3] == 1          # the plain image
    # every repository names the target that listed it
    assert conn.execute("SELECT DISTINCT target FROM repositories").fetchall() == [
        (f"{world.host}/audit",)]
    errors = conn.execute("SELECT repository, reference, stage, error_type FROM errors"
                          ).fetchall()
    assert len(errors) == 1
    assert errors[0][0] == f"{world.host}/audit/broken"
    assert errors[0][2] == "manifest" and errors[0][3] == "DigestMismatch"
    # the broken tag is still recorded, pointing at an incomplete row
    kind = conn.execute("SELECT m.kind, m.complete FROM tags t JOIN manifests m ON "
                        "m.digest = t.digest WHERE t.repository = ?",
                        (f"{world.host}/audit/broken",)).fetchone()
    assert kind == ("error", 0)
    # every ModelKit's Kitfile and layers are stored; the image only as a row
    assert conn.execute("SELECT count(*) FROM kitfiles").fetchone()[0] == 5
    app = conn.execute("SELECT kind FROM manifests m JOIN tags t ON t.digest = m.digest "
                       "WHERE t.repository LIKE '%/audit/app'").fetchone()
    assert app == ("other",)
    assert conn.execute("SELECT count(*) FROM layers l JOIN manifests m ON "
                        "m.digest = l.manifest_digest WHERE m.kind != 'modelkit'"
                        ).fetchone()[0] == 0


def test_signatures_sboms_and_policies(world: World, crawled: Path) -> None:
    conn = sqlite3.connect(crawled)
    d = world.digests
    signed = dict(conn.execute("SELECT digest, signed FROM manifests WHERE kind='modelkit'"))
    assert signed == {d["base:v1"]: 1, d["ft:v1"]: 1, d["ft:v2"]: 1, d["ft2:v1"]: 0,
                      d["solo:v1"]: 0}
    # ft was signed in both formats: bundles via the fallback tag and cosign's .sig tag
    sources = {r[0] for r in conn.execute(
        "SELECT source FROM signatures WHERE subject_digest=? AND verified=1",
        (d["ft:v1"],))}
    assert sources == {"fallback-tag", "legacy-tag"}
    sbom = conn.execute("SELECT verified, matches_manifest, licenses FROM sboms WHERE "
                        "subject_digest=?", (d["base:v1"],)).fetchone()
    assert sbom[0] == 1 and sbom[1] == 1 and "Apache-2.0" in json.loads(sbom[2])
    assert conn.execute("SELECT verified FROM sboms WHERE subject_digest=?",
                        (d["ft2:v1"],)).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM sboms WHERE subject_digest=?",
                        (d["solo:v1"],)).fetchone() == (0,)
    decisions = dict(conn.execute("SELECT digest, decision FROM manifests "
                                  "WHERE kind='modelkit'"))
    assert decisions[d["base:v1"]] == "pass"
    assert decisions[d["ft2:v1"]] == "deny" and decisions[d["solo:v1"]] == "deny"


def test_query_unsigned(world: World, crawled: Path) -> None:
    res = queries.unsigned(crawled)
    assert sorted(r["digest"] for r in res.rows) == sorted(
        [world.digests["ft2:v1"], world.digests["solo:v1"]])
    assert {r["reason"] for r in res.rows} == {"no signature"}


def test_query_lineage(world: World, crawled: Path) -> None:
    d = world.digests
    tree = queries.lineage(crawled, f"{world.host}/audit/ft2:v1")
    assert tree["digest"] == d["ft2:v1"]
    (parent,) = tree["ancestors"]
    assert parent["digest"] == d["ft:v1"] and sorted(parent["sources"]) == ["kitfile", "mlbom"]
    (grand,) = parent["ancestors"]
    assert grand["digest"] == d["base:v1"] and grand["ancestors"] == []
    assert tree["descendants"] == []
    down = queries.lineage(crawled, d["base:v1"])
    children = sorted(c["digest"] for c in down["descendants"])
    assert children == sorted([d["ft:v1"], d["ft:v2"]])
    ft1 = next(c for c in down["descendants"] if c["digest"] == d["ft:v1"])
    assert [c["digest"] for c in ft1["descendants"]] == [d["ft2:v1"]]
    # resolve by short repository:tag (any registry) and by package name
    assert queries.lineage(crawled, "audit/ft2:v1")["digest"] == d["ft2:v1"]
    assert queries.lineage(crawled, "solo")["digest"] == d["solo:v1"]
    with pytest.raises(NotFound):
        queries.lineage(crawled, "audit/nothing:v9")


def test_query_uses(world: World, crawled: Path) -> None:
    d = world.digests
    by_name = queries.uses(crawled, "common-corpus")
    assert sorted({r["digest"] for r in by_name.rows}) == sorted(
        [d["base:v1"], d["ft:v1"], d["ft:v2"], d["ft2:v1"]])
    layer = next(r["layer_digest"] for r in by_name.rows if r["digest"] == d["base:v1"])
    by_digest = queries.uses(crawled, layer)
    # ft2's corpus has the same name but other content
    assert sorted({r["digest"] for r in by_digest.rows}) == sorted(
        [d["base:v1"], d["ft:v1"], d["ft:v2"]])
    assert queries.uses(crawled, "no-such-dataset").rows == []


def test_query_violations(world: World, crawled: Path) -> None:
    d = world.digests
    res = queries.violations(crawled, policy="baseline", severity="deny")
    failing = {(r["digest"], r["rule"]) for r in res.rows}
    assert (d["solo:v1"], "mlbom-attached") in failing
    assert (d["ft2:v1"], "modelkit-signed") in failing
    assert not any(r["digest"] == d["base:v1"] for r in res.rows)
    assert queries.violations(crawled, policy="no-such-policy").rows == []
    with pytest.raises(UsageError):
        queries.violations(crawled, severity="fatal")


def test_query_sql_is_read_only(crawled: Path) -> None:
    res = queries.sql(crawled, "SELECT count(*) AS n FROM modelkits")
    assert res.rows == [{"n": 5}]
    with pytest.raises(Exception, match="readonly"):
        queries.sql(crawled, "DELETE FROM manifests")
    fts = queries.sql(crawled, "SELECT package_name FROM kitfiles WHERE rowid IN "
                               "(SELECT rowid FROM kitfiles_fts WHERE kitfiles_fts MATCH 'ft2')")
    assert fts.rows == [{"package_name": "ft2"}]


def test_cli_queries(world: World, crawled: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["query", "unsigned", "--db", str(crawled), "--output", "json"])
    assert out.exit_code == 0, out.output
    assert len(json.loads(out.output)) == 2
    out = runner.invoke(main, ["query", "uses", "common-corpus", "--db", str(crawled),
                               "--output", "csv"])
    assert out.exit_code == 0 and out.output.splitlines()[0].startswith("dataset,path")
    assert len(out.output.splitlines()) == 5
    out = runner.invoke(main, ["query", "lineage", "audit/ft2:v1", "--db", str(crawled)])
    assert out.exit_code == 0 and "ancestors:" in out.output and "base" in out.output
    out = runner.invoke(main, ["query", "sql", "DROP TABLE tags", "--db", str(crawled)])
    assert out.exit_code == 2 and "error:" in out.output
    out = runner.invoke(main, ["query", "unsigned", "--db", str(crawled.parent / "x.db")])
    assert out.exit_code == 2 and "does not exist" in out.output


def test_unchanged_recrawl_reads_nothing_new(world: World, crawled: Path) -> None:
    stats = crawl(f"{world.host}/audit", crawled, options=world.options, net=world.reg.net)
    assert stats.manifests_new == 0
    # everything but the broken manifest (retried: it was never recorded completely)
    assert stats.unchanged == stats.manifests - 1
    assert stats.referrers == 0 and stats.errors == 1


# ---------------------------------------------------------------------- changes
def test_recrawl_after_retag_new_tag_and_signature(world: World, crawled: Path) -> None:
    d = world.digests
    remote_tag(f"{world.ref('ft')}:v2", f"{world.ref('ft')}:champion", **world.reg.net)
    remote_tag(f"{world.ref('solo')}:v1", f"{world.ref('solo')}:stable", **world.reg.net)
    sign_reference(f"{world.ref('ft2')}:v1", world.signer, remote=True, **world.reg.net)
    stats = crawl(f"{world.host}/audit", crawled, options=world.options, net=world.reg.net)
    assert stats.status == "complete"
    assert stats.manifests_new == 0
    conn = sqlite3.connect(crawled)
    assert conn.execute("SELECT signed, decision FROM manifests WHERE digest=?",
                        (d["ft2:v1"],)).fetchone() == (1, "pass")
    assert world.digests["ft2:v1"] not in {r["digest"] for r in
                                           queries.unsigned(crawled).rows}
    # the history keeps what was true at each crawl
    snap = conn.execute("SELECT crawl_id, signed FROM tag_history WHERE digest=? "
                        "ORDER BY crawl_id", (d["ft2:v1"],)).fetchall()
    assert snap[0] == (1, 0) and snap[-1][1] == 1
    hist = queries.history(crawled, "audit/ft:champion")
    digests = [r["digest"] for r in hist.rows]
    assert digests[0] == d["ft:v1"] and digests[-1] == d["ft:v2"]
    assert [r["change"] for r in hist.rows][-1] == "moved"
    assert "moved" not in [r["change"] for r in hist.rows][:-1]
    stable = queries.history(crawled, f"{world.host}/audit/solo:stable")
    assert [r["change"] for r in stable.rows] == ["first seen"]
    # policy results remember what changed
    row = conn.execute("SELECT status, previous_status FROM policy_results WHERE "
                       "subject_digest=? AND rule='modelkit-signed'",
                       (d["ft2:v1"],)).fetchone()
    assert row == ("pass", "fail")
    out = CliRunner().invoke(main, ["query", "history", "audit/ft:champion", "--db",
                                    str(crawled), "--output", "json"])
    assert out.exit_code == 0 and json.loads(out.output)[-1]["change"] == "moved"


def test_removed_tag_leaves_tags_but_stays_in_history(world: World, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    crawl(f"{world.host}/audit", db, net=world.reg.net)
    with open_client(world.host, NetOptions(plain_http=True)) as client:
        desc = client.head_manifest("audit/app", "1.0")
        assert desc is not None
        client.delete_manifest("audit/app", desc["digest"])
    crawl(f"{world.host}/audit", db, net=world.reg.net)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM tags WHERE repository LIKE '%/audit/app'"
                        ).fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM tag_history WHERE repository LIKE "
                        "'%/audit/app'").fetchone()[0] == 1


# ---------------------------------------------------------------------- resume, shards
_CRASHER = """
import os, sys
from kitaudit.audit.crawl import crawl
seen = []
def progress(stats):
    if stats.repositories >= 2:
        os._exit(137)          # a hard crash: nothing is closed or marked
crawl(sys.argv[1], sys.argv[2], net={"plain_http": True}, progress=progress,
      concurrency=1)
"""


def test_crash_in_the_middle_then_resume(world: World, tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    target = f"{world.host}/audit"
    proc = subprocess.run([sys.executable, "-c", _CRASHER, target, str(db)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KITAUDIT_HOME": str(tmp_path / "h")})
    assert proc.returncode == 137, proc.stderr
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status, repositories FROM crawls").fetchone() == \
        ("running", 2)
    conn.close()
    stats = crawl(target, db, net=world.reg.net)
    assert stats.crawl_id == 1 and stats.resumed == 1 and stats.status == "complete"
    assert stats.repositories == 6
    fresh = tmp_path / "fresh.db"
    crawl(target, fresh, net=world.reg.net)
    assert _canonical(db) == _canonical(fresh)


def test_interrupt_marks_crawl_and_resumes(world: World, tmp_path: Path) -> None:
    db = tmp_path / "int.db"

    def stop(stats: Any) -> None:
        if stats.repositories == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        crawl(f"{world.host}/audit", db, net=world.reg.net, progress=stop)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT status FROM crawls").fetchone() == ("interrupted",)
    conn.close()
    stats = crawl(f"{world.host}/audit", db, net=world.reg.net)
    assert (stats.crawl_id, stats.resumed, stats.status) == (1, 1, "complete")


def test_shard_crawls_merged_equal_single_crawl(world: World, tmp_path: Path) -> None:
    target = f"{world.host}/audit"
    single = tmp_path / "single.db"
    crawl(target, single, options=world.options, net=world.reg.net)
    shards = []
    for i in range(3):
        path = tmp_path / f"shard{i}.db"
        stats = crawl(target, path, options=world.options, net=world.reg.net, shard=(i, 3),
                      run_id="run-1")
        assert stats.shard == f"{i}/3" and stats.run_id == "run-1"
        shards.append(path)
    repos = [sqlite3.connect(s).execute("SELECT count(*) FROM repositories").fetchone()[0]
             for s in shards]
    assert sum(repos) == 6
    out = tmp_path / "merged.db"
    res = merge(out, shards)
    assert res.crawls == 3
    assert _canonical(out) == _canonical(single)
    # lineage across shards resolves after the merge
    tree = queries.lineage(out, "audit/ft2:v1")
    assert tree["ancestors"][0]["ancestors"][0]["digest"] == world.digests["base:v1"]
    runs = sqlite3.connect(out).execute("SELECT DISTINCT run_id FROM crawls").fetchall()
    assert runs == [("run-1",)]
    cli = CliRunner().invoke(main, ["db", "merge", str(tmp_path / "m2.db"), *map(str, shards),
                                    "--output", "json"])
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli.output)["crawls"] == 3


def test_shard_parsing_and_stability() -> None:
    assert parse_shard("1/4") == (1, 4)
    assert parse_shard(None) is None
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(UsageError):
            parse_shard(bad)
    names = [f"reg/repo{i}" for i in range(200)]
    parts = [shard_of(n, 4) for n in names]
    assert parts == [shard_of(n, 4) for n in names]  # stable
    assert set(parts) == {0, 1, 2, 3}


# ---------------------------------------------------------------------- local store
def test_local_store_and_oci_layout_crawl(world: World, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITAUDIT_HOME", str(world.tmp / "home"))
    db = tmp_path / "local.db"
    stats = crawl(None, db, options=world.options)
    assert stats.target == "local" and stats.status == "complete"
    assert stats.errors == 0   # the store's copy of "broken" is intact
    conn = sqlite3.connect(db)
    kits = conn.execute("SELECT count(*) FROM manifests WHERE kind='modelkit'").fetchone()[0]
    assert kits == 6
    assert conn.execute("SELECT signed FROM manifests WHERE digest=?",
                        (world.digests["base:v1"],)).fetchone() == (1,)
    # legacy .sig/.att tags in the store are referrers, not tags
    assert conn.execute("SELECT count(*) FROM tags WHERE tag LIKE 'sha256-%'"
                        ).fetchone()[0] == 0
    tree = queries.lineage(db, f"{world.host}/audit/ft2:v1")
    assert tree["ancestors"][0]["ancestors"][0]["digest"] == world.digests["base:v1"]
    # the same store read as a plain OCI layout directory
    layout = tmp_path / "layout.db"
    st2 = crawl(f"oci:{world.tmp / 'home' / 'store'}", layout, options=world.options)
    assert st2.modelkits == 6
    assert _canonical(layout)["signatures"] == _canonical(db)["signatures"]
    out = CliRunner().invoke(main, ["crawl", "--db", str(tmp_path / "cli.db"), "--key",
                                    str(world.pub), "--policy", BASELINE, "--output",
                                    "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["modelkits"] == 6


def test_modelpack_and_unverified_crawl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A CNCF ModelPack artifact is a ModelKit too; without trust options signatures are
    recorded as found, unverified, and no policy is evaluated."""
    monkeypatch.setenv("KITAUDIT_HOME", str(tmp_path / "home"))
    store = Store(tmp_path / "home" / "store")
    ctx = tmp_path / "mp"
    ctx.mkdir()
    (ctx / "Kitfile").write_text(_kitfile("packed", "model.bin", []))
    (ctx / "model.bin").write_text("weights")
    res = pack(ctx, tags=["localhost/team/packed:v1"], store=store, use_model_pack=True)
    priv = ec.generate_private_key(ec.SECP256R1())
    sign_reference("localhost/team/packed:v1", KeySigner(keys.LoadedKey(priv, "k")),
                   store=store)
    db = tmp_path / "mp.db"
    stats = crawl("local", db)
    assert stats.modelkits == 1 and stats.errors == 0
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT format, signed, decision FROM manifests WHERE digest=?",
                        (res.digest,)).fetchone() == ("modelpack", 0, None)
    assert conn.execute("SELECT package_name FROM kitfiles").fetchone() == ("packed",)
    sigs = conn.execute("SELECT verified, attestation FROM signatures ORDER BY attestation"
                        ).fetchall()
    assert sigs == [(0, 0), (0, 1)]
    assert conn.execute("SELECT count(*) FROM policy_results").fetchone() == (0,)
    assert [r["reason"] for r in queries.unsigned(db).rows] == ["signature not verified"]


@pytest.mark.skipif(not Path("/usr/bin/skopeo").exists(), reason="skopeo is not installed")
def test_oci_layout_written_by_skopeo(world: World, tmp_path: Path) -> None:
    """A layout from another tool: ``ref.name`` is a bare tag, so the ModelKit belongs to
    ``localhost/<directory>``."""
    layout = tmp_path / "mirror"
    subprocess.run(["skopeo", "copy", "--src-tls-verify=false", "--preserve-digests",
                    f"docker://{world.ref('base')}:v1", f"oci:{layout}:v1"],
                   check=True, capture_output=True, timeout=120)
    db = tmp_path / "skopeo.db"
    stats = crawl(f"oci:{layout}", db)
    assert stats.modelkits == 1 and stats.errors == 0
    assert queries.sql(db, "SELECT repository, tag, digest FROM tags").rows == [
        {"repository": "localhost/mirror", "tag": "v1", "digest": world.digests["base:v1"]}]


def test_trust_options_change_and_reverify(world: World, tmp_path: Path) -> None:
    """New trust options (or policies) make every ModelKit be verified again; --reverify
    does it with the same options; the same options read nothing again."""
    db = tmp_path / "t.db"
    target = f"{world.host}/audit"
    plain = crawl(target, db, net=world.reg.net)
    assert plain.modelkits == 5
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM manifests WHERE decision IS NOT NULL"
                        ).fetchone() == (0,)
    conn.close()
    verified = crawl(target, db, options=world.options, net=world.reg.net)
    # only non-ModelKits (the image, unless an earlier test deleted it) are not read again
    assert verified.unchanged == plain.other_artifacts and verified.modelkits == 5
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM manifests WHERE decision IS NOT NULL"
                        ).fetchone() == (5,)
    assert conn.execute("SELECT count(DISTINCT verify_fingerprint) FROM crawls"
                        ).fetchone() == (2,)
    conn.close()
    same = crawl(target, db, options=world.options, net=world.reg.net)
    assert same.unchanged == 5 + plain.other_artifacts
    again = crawl(target, db, options=world.options, net=world.reg.net, reverify=True)
    assert again.unchanged == 0 and again.modelkits == 5
    with pytest.raises(NotFound):
        queries.history(db, "audit/never-crawled")


def test_base_models_are_verified_for_lineage_rules(world: World, tmp_path: Path) -> None:
    """The strict policy's base-model rule sees the base looked up and verified (as
    ``kitaudit verify`` does), not an unverified placeholder."""
    strict = str(ROOT / "policies" / "strict.yaml")
    opts = VerifyOptions(keys=[str(world.pub)], policies=[strict])
    db = tmp_path / "strict.db"
    crawl(f"{world.host}/audit", db, options=opts, net=world.reg.net)
    status = {(r["digest"], r["rule"]): r["status"] for r in queries.sql(
        db, "SELECT subject_digest AS digest, rule, status FROM policy_results").rows}
    d = world.digests
    assert status[(d["ft:v1"], "base-model-signed")] == "pass"
    assert status[(d["ft2:v1"], "base-model-signed")] == "pass"
    assert status[(d["solo:v1"], "base-model-signed")] == "pass"   # no base at all
    # the verdict per edge: the base found and its signature verified for the child
    edges = {r["child"]: (r["parent"], r["verified"]) for r in queries.sql(
        db, "SELECT child_digest AS child, parent_digest AS parent, verified "
            "FROM lineage_edges WHERE source = 'kitfile'").rows}
    assert edges[d["ft:v1"]] == (d["base:v1"], 1)
    assert edges[d["ft2:v1"]] == (d["ft:v1"], 1)
    tree = queries.lineage(db, d["ft2:v1"])
    assert tree["ancestors"][0]["verified_for_child"] is True
    assert queries.sql(db, "SELECT verified FROM lineage WHERE child_digest = ? AND "
                           "source = 'kitfile'", (d["ft:v1"],)).rows == [{"verified": 1}]
