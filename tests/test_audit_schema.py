"""The audit database schema: forward migrations, refusing newer databases, read-only
connections, the documented tables and views, and the CLI's usage errors."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from kitaudit._cli import main
from kitaudit.audit import queries
from kitaudit.audit.schema import (
    SCHEMA_VERSION,
    connect_readonly,
    current_version,
    describe,
    open_db,
)
from kitaudit.errors import KitauditError

TABLES = {"repositories", "tags", "tag_history", "manifests", "layers", "kitfiles",
          "datasets", "referrers", "signatures", "sboms", "lineage_edges",
          "policy_results", "policy_history", "referrer_sources", "crawls", "errors",
          "schema_version"}
VIEWS = {"unsigned", "lineage", "policy_violations", "dataset_usage", "modelkits",
         "tag_changes", "shared_datasets"}


def test_new_database_has_every_table_view_and_fts(tmp_path: Path) -> None:
    db = open_db(tmp_path / "a.db")
    assert TABLES <= set(db.table_names())
    assert VIEWS == set(db.view_names())
    assert {"kitfiles_fts", "datasets_fts", "repositories_fts"} <= set(db.table_names())
    assert current_version(db) == SCHEMA_VERSION
    fks = {(fk.table, fk.column, fk.other_table) for fk in db["tags"].foreign_keys}
    assert ("tags", "digest", "manifests") in fks
    assert db["manifests"].pks == ["digest"]
    assert set(describe()["tables"]) == TABLES - {"schema_version"}
    db.conn.close()


def test_forward_migration_from_version_1(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = open_db(path, target=1)
    assert current_version(db) == 1 and "shared_datasets" not in db.view_names()
    db.conn.close()
    db = open_db(path)
    assert current_version(db) == SCHEMA_VERSION
    assert "shared_datasets" in db.view_names()
    versions = [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    db.conn.close()


def _columns_match_describe(db: object) -> None:
    for name, spec in describe()["tables"].items():
        table = db[name]  # type: ignore[index]
        assert list(table.columns_dict) == list(spec["columns"]), name
        pk = spec["primary_key"]
        assert table.pks == ([pk] if isinstance(pk, str) else list(pk)), name


@pytest.mark.parametrize("interim", [False, True])
def test_migrating_a_version_2_database_made_with_the_old_ddl(tmp_path: Path,
                                                              interim: bool) -> None:
    """A v2 database as the v2 code wrote it (tag_history without signed/decision), and
    one written between releases (the columns already there, version still 2): both
    reach SCHEMA_VERSION with every documented column, their rows kept."""
    path = tmp_path / "v2.db"
    db = open_db(path, target=2)
    assert current_version(db) == 2
    assert "signed" not in db["tag_history"].columns_dict
    if interim:
        db["tag_history"].add_column("signed", int)  # type: ignore[union-attr]
        db["tag_history"].add_column("decision", str)  # type: ignore[union-attr]
    with db.conn:
        db.execute("INSERT INTO crawls (id, target, status, started_at) "
                   "VALUES (1, 'reg.example', 'complete', '2026-01-01T00:00:00Z')")
        db.execute("INSERT INTO tag_history (repository, tag, crawl_id, digest, seen_at) "
                   "VALUES ('reg.example/a', 'v1', 1, 'sha256:' || hex(zeroblob(32)), "
                   "'2026-01-01T00:00:00Z')")
        db.execute("INSERT INTO crawls (id, target, status, started_at) "
                   "VALUES (2, 'reg.example', 'complete', '2026-01-02T00:00:00Z')")
        db.execute("INSERT INTO manifests (digest, kind) VALUES ('sha256:aa', 'modelkit')")
        db.execute("INSERT INTO repositories (name, last_seen_crawl) "
                   "VALUES ('reg.example/a', 2)")
        db.execute("INSERT INTO policy_results (subject_digest, policy, rule, status, "
                   "previous_status, crawl_id, changed_crawl) "
                   "VALUES ('sha256:aa', 'baseline', 'signed', 'pass', 'fail', 2, 2)")
    db.conn.close()
    db = open_db(path)
    # the history the old columns tell: fail until crawl 2, pass from crawl 2
    assert db.execute("SELECT crawl_id, status FROM policy_history ORDER BY crawl_id"
                      ).fetchall() == [(1, "fail"), (2, "pass")]
    # the lineage view shows each edge's verdict (v8)
    assert "verified" in db["lineage"].columns_dict
    # the target of the repository: from the crawl that last listed it
    assert db.execute("SELECT target FROM repositories").fetchall() == [("reg.example",)]
    assert current_version(db) == SCHEMA_VERSION
    _columns_match_describe(db)
    assert db.execute("SELECT tag, signed, decision FROM tag_history").fetchall() == [
        ("v1", None, None)]
    versions = [r[0] for r in db.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    db.conn.close()


def test_new_database_matches_the_described_schema(tmp_path: Path) -> None:
    db = open_db(tmp_path / "new.db")
    _columns_match_describe(db)
    db.conn.close()


def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db = open_db(path)
    db.execute("INSERT INTO schema_version (version, applied_at, description) "
               "VALUES (99, 'x', 'future')")
    db.conn.commit()
    db.conn.close()
    with pytest.raises(KitauditError, match="newer"):
        open_db(path)
    with pytest.raises(KitauditError, match="schema version 99"):
        connect_readonly(path)


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_text("hello, not sqlite" * 100)
    with pytest.raises(KitauditError, match="not a usable audit database"):
        open_db(bad)
    with pytest.raises(KitauditError, match="does not exist"):
        connect_readonly(tmp_path / "missing.db")


def test_readonly_connection_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    open_db(path).conn.close()
    conn = connect_readonly(path)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("INSERT INTO crawls (target) VALUES ('x')")
    conn.close()
    assert queries.sql(path, "SELECT count(*) AS n FROM crawls").rows == [{"n": 0}]
    with pytest.raises(KitauditError):
        queries.sql(path, "SELECT * FROM no_such_table")


def test_crawl_takes_the_same_trust_flags_as_verify() -> None:
    """The crawler uses verify's trust options (one declaration, the same flag names)."""
    def flags(name: str) -> set[str]:
        cmd = main.commands[name]
        return {o for p in cmd.params
                for o in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}

    trust = {"--key", "--certificate-identity", "--certificate-identity-regexp",
             "--certificate-oidc-issuer", "--certificate-oidc-issuer-regexp",
             "--trusted-root", "--offline", "--staging", "--policy", "--param",
             "--waivers", "--no-sbom-required"}
    assert trust <= flags("verify") and trust <= flags("crawl")
    remote = {"--plain-http", "--http", "--tls-verify", "--no-tls-verify", "--tls-cert",
              "--proxy"}
    assert remote <= flags("crawl")


def test_cli_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["crawl", "local", "--db", str(tmp_path / "x.db"),
                               "--policy", "policies/baseline.yaml"])
    assert out.exit_code == 2 and "trust options" in out.output
    out = runner.invoke(main, ["crawl", "local", "--db", str(tmp_path / "x.db"),
                               "--key", "k.pub", "--param", "no-equals-sign"])
    assert out.exit_code == 2 and "--param" in out.output, out.output
    out = runner.invoke(main, ["crawl", "local", "--db", str(tmp_path / "x.db"),
                               "--shard", "3/2"])
    assert out.exit_code == 2 and "--shard" in out.output
    out = runner.invoke(main, ["crawl", "https://example.com", "--db",
                               str(tmp_path / "x.db")])
    assert out.exit_code == 2 and "not a URL" in out.output
    out = runner.invoke(main, ["db", "merge", str(tmp_path / "o.db"),
                               str(tmp_path / "missing.db")])
    assert out.exit_code == 2 and "does not exist" in out.output


@pytest.mark.skipif(importlib.util.find_spec("datasette") is not None,
                    reason="datasette is installed: browse would start a server")
def test_browse_without_datasette_says_how_to_install(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    open_db(path).conn.close()
    out = CliRunner().invoke(main, ["browse", "--db", str(path)])
    assert out.exit_code == 2
    assert "Datasette is not installed" in out.output and "kitaudit[browse]" in out.output
