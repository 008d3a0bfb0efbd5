"""The audit database: tables, indexes, views, full-text search and forward migrations.

Built with sqlite-utils. The schema is documented in ``docs/audit-db.md``; this module is
its single source. ``open_db(path)`` creates a new database or migrates an older one
forward (a database newer than this kitaudit is refused, never downgraded).

Conventions: digests are ``sha256:<hex>`` text; JSON columns hold compact JSON text;
times are RFC 3339 UTC text; booleans are 0/1 integers; ``repository`` is the full
``registry/repository`` name.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from kitaudit.errors import KitauditError

SCHEMA_VERSION = 8

TEXT, INT, REAL = str, int, float

# The version-1 tables, frozen: a later change never edits this, it adds a numbered
# migration below (``_ADDED_COLUMNS``, ``_ADDED_TABLES``, ``MIGRATIONS``) and bumps
# SCHEMA_VERSION. table -> (columns, primary key, foreign keys [(column, table, column)])
_TABLES: dict[str, tuple[dict[str, type], str | tuple[str, ...],
                         list[tuple[str, str, str]]]] = {
    "crawls": ({
        "id": INT, "run_id": TEXT, "target": TEXT, "shard": TEXT, "status": TEXT,
        "started_at": TEXT, "finished_at": TEXT, "resumed": INT,
        "repositories": INT, "tags": INT, "manifests": INT, "manifests_new": INT,
        "modelkits": INT, "other_artifacts": INT, "referrers": INT, "signatures": INT,
        "unchanged": INT, "errors": INT, "verify_fingerprint": TEXT, "options": TEXT,
        "kitaudit_version": TEXT,
    }, "id", []),
    "repositories": ({
        "name": TEXT, "registry": TEXT, "repository": TEXT, "first_seen_crawl": INT,
        "last_seen_crawl": INT, "last_done_crawl": INT, "status": TEXT, "tag_count": INT,
    }, "name", [("first_seen_crawl", "crawls", "id"), ("last_seen_crawl", "crawls", "id")]),
    "manifests": ({
        "digest": TEXT, "kind": TEXT, "format": TEXT, "media_type": TEXT,
        "artifact_type": TEXT, "size": INT, "config_digest": TEXT, "config_media_type": TEXT,
        "subject_digest": TEXT, "annotations": TEXT, "created": TEXT, "repository": TEXT,
        "first_seen_crawl": INT, "last_seen_crawl": INT, "referrers_fingerprint": TEXT,
        "verify_fingerprint": TEXT, "decision": TEXT, "signed": INT, "sbom_present": INT,
        "sbom_verified": INT, "verified_at": TEXT, "verify_error": TEXT, "complete": INT,
    }, "digest", [("first_seen_crawl", "crawls", "id")]),
    "tags": ({
        "repository": TEXT, "tag": TEXT, "digest": TEXT, "first_seen_crawl": INT,
        "last_seen_crawl": INT, "updated_at": TEXT,
    }, ("repository", "tag"), [("repository", "repositories", "name"),
                               ("digest", "manifests", "digest")]),
    "tag_history": ({
        "repository": TEXT, "tag": TEXT, "crawl_id": INT, "digest": TEXT, "seen_at": TEXT,
    }, ("repository", "tag", "crawl_id"), [("crawl_id", "crawls", "id")]),
    "layers": ({
        "manifest_digest": TEXT, "position": INT, "digest": TEXT, "media_type": TEXT,
        "size": INT, "kind": TEXT, "path": TEXT,
    }, ("manifest_digest", "position"), [("manifest_digest", "manifests", "digest")]),
    "kitfiles": ({
        "manifest_digest": TEXT, "config_digest": TEXT, "format": TEXT,
        "manifest_version": TEXT, "package_name": TEXT, "package_version": TEXT,
        "package_description": TEXT, "package_license": TEXT, "package_authors": TEXT,
        "model_name": TEXT, "model_path": TEXT, "model_license": TEXT,
        "model_framework": TEXT, "model_format": TEXT, "model_version": TEXT,
        "model_description": TEXT, "base_reference": TEXT, "kitfile": TEXT,
    }, "manifest_digest", [("manifest_digest", "manifests", "digest")]),
    "datasets": ({
        "manifest_digest": TEXT, "position": INT, "name": TEXT, "path": TEXT,
        "layer_digest": TEXT, "remote_path": TEXT, "remote_hash": TEXT, "license": TEXT,
        "description": TEXT,
    }, ("manifest_digest", "position"), [("manifest_digest", "manifests", "digest")]),
    "referrers": ({
        "subject_digest": TEXT, "digest": TEXT, "repository": TEXT, "artifact_type": TEXT,
        "media_type": TEXT, "size": INT, "source": TEXT, "predicate_type": TEXT,
        "created": TEXT, "annotations": TEXT,
    }, ("subject_digest", "digest"), [("subject_digest", "manifests", "digest")]),
    "signatures": ({
        "id": TEXT, "subject_digest": TEXT, "referrer_digest": TEXT, "kind": TEXT,
        "identity": TEXT, "issuer": TEXT, "key_id": TEXT, "predicate_type": TEXT,
        "created": TEXT, "source": TEXT, "verified": INT, "attestation": INT,
        "error": TEXT,
    }, "id", [("subject_digest", "manifests", "digest")]),
    "sboms": ({
        "subject_digest": TEXT, "referrer_digest": TEXT, "spec_version": TEXT,
        "serial_number": TEXT, "verified": INT, "attestation_digest": TEXT,
        "matches_manifest": INT, "mismatches": TEXT, "completeness": REAL,
        "licenses": TEXT, "model_name": TEXT, "signed_by": TEXT, "facts": TEXT,
    }, ("subject_digest", "referrer_digest"), [("subject_digest", "manifests", "digest")]),
    "lineage_edges": ({
        "id": TEXT, "child_digest": TEXT, "relation": TEXT, "parent_reference": TEXT,
        "parent_digest": TEXT, "parent_name": TEXT, "source": TEXT, "depth": INT,
        "resolved_by": TEXT,
    }, "id", [("child_digest", "manifests", "digest")]),
    "policy_results": ({
        "subject_digest": TEXT, "policy": TEXT, "rule": TEXT, "policy_fingerprint": TEXT,
        "severity": TEXT, "status": TEXT, "previous_status": TEXT, "reason": TEXT,
        "description": TEXT, "remediation": TEXT, "controls": TEXT, "waiver": TEXT,
        "expired_waivers": TEXT, "crawl_id": INT, "changed_crawl": INT,
        "evaluated_at": TEXT,
    }, ("subject_digest", "policy", "rule"), [("subject_digest", "manifests", "digest"),
                                              ("crawl_id", "crawls", "id")]),
    "errors": ({
        "id": INT, "crawl_id": INT, "repository": TEXT, "reference": TEXT, "digest": TEXT,
        "stage": TEXT, "status": INT, "error_type": TEXT, "message": TEXT, "at": TEXT,
    }, "id", [("crawl_id", "crawls", "id")]),
}

_INDEXES: list[tuple[str, list[str]]] = [
    ("crawls", ["target", "shard", "status"]),
    ("crawls", ["run_id"]),
    ("manifests", ["kind"]),
    ("manifests", ["subject_digest"]),
    ("manifests", ["repository"]),
    ("tags", ["digest"]),
    ("tag_history", ["crawl_id"]),
    ("tag_history", ["digest"]),
    ("layers", ["digest"]),
    ("kitfiles", ["package_name"]),
    ("datasets", ["layer_digest"]),
    ("datasets", ["name"]),
    ("referrers", ["digest"]),
    ("signatures", ["subject_digest", "verified"]),
    ("sboms", ["subject_digest"]),
    ("lineage_edges", ["child_digest"]),
    ("lineage_edges", ["parent_digest"]),
    ("lineage_edges", ["parent_reference"]),
    ("policy_results", ["status", "severity"]),
    ("policy_results", ["policy", "rule"]),
    ("errors", ["crawl_id"]),
]

# Views. ``modelkits`` is the convenient join most questions start from.
_VIEWS: dict[str, str] = {
    "modelkits": """
SELECT m.digest, m.format, m.repository,
  (SELECT group_concat(t.repository || ':' || t.tag, ', ') FROM tags t
     WHERE t.digest = m.digest) AS tags,
  k.package_name, k.package_version, k.package_description, k.package_license,
  k.model_name, k.model_license, k.base_reference,
  m.signed, m.sbom_present, m.sbom_verified, m.decision, m.created,
  m.first_seen_crawl, m.last_seen_crawl
FROM manifests m LEFT JOIN kitfiles k ON k.manifest_digest = m.digest
WHERE m.kind = 'modelkit'""",
    "unsigned": """
SELECT m.digest, m.repository,
  (SELECT group_concat(t.repository || ':' || t.tag, ', ') FROM tags t
     WHERE t.digest = m.digest) AS tags,
  k.package_name,
  (SELECT count(*) FROM signatures s WHERE s.subject_digest = m.digest) AS signatures_found,
  CASE WHEN EXISTS (SELECT 1 FROM signatures s WHERE s.subject_digest = m.digest)
       THEN 'signature not verified' ELSE 'no signature' END AS reason
FROM manifests m LEFT JOIN kitfiles k ON k.manifest_digest = m.digest
WHERE m.kind = 'modelkit' AND NOT EXISTS (
  SELECT 1 FROM signatures s WHERE s.subject_digest = m.digest AND s.verified = 1
    AND s.attestation = 0)""",
    "lineage": """
SELECT e.child_digest, c.repository AS child_repository, ck.package_name AS child_name,
  e.relation, e.parent_reference, e.parent_digest,
  p.repository AS parent_repository,
  coalesce(pk.package_name, e.parent_name) AS parent_name,
  e.source, e.depth, e.resolved_by
FROM lineage_edges e
JOIN manifests c ON c.digest = e.child_digest
LEFT JOIN kitfiles ck ON ck.manifest_digest = e.child_digest
LEFT JOIN manifests p ON p.digest = e.parent_digest
LEFT JOIN kitfiles pk ON pk.manifest_digest = e.parent_digest""",
    "policy_violations": """
SELECT r.subject_digest AS digest, m.repository,
  (SELECT group_concat(t.repository || ':' || t.tag, ', ') FROM tags t
     WHERE t.digest = r.subject_digest) AS tags,
  k.package_name, r.policy, r.rule, r.severity, r.status, r.reason, r.remediation,
  r.controls, r.previous_status, r.crawl_id, r.changed_crawl, r.evaluated_at
FROM policy_results r
JOIN manifests m ON m.digest = r.subject_digest
LEFT JOIN kitfiles k ON k.manifest_digest = r.subject_digest
WHERE r.status IN ('fail', 'warn', 'error')""",
    "dataset_usage": """
SELECT d.name AS dataset, d.path, d.layer_digest, d.remote_path, d.license,
  d.manifest_digest AS digest, m.repository,
  (SELECT group_concat(t.repository || ':' || t.tag, ', ') FROM tags t
     WHERE t.digest = d.manifest_digest) AS tags,
  k.package_name,
  (SELECT count(DISTINCT d2.manifest_digest) FROM datasets d2
     WHERE d2.layer_digest = d.layer_digest) AS modelkits_with_same_layer,
  (SELECT count(DISTINCT d3.manifest_digest) FROM datasets d3
     WHERE d3.name = d.name AND d.name != '') AS modelkits_with_same_name
FROM datasets d
JOIN manifests m ON m.digest = d.manifest_digest
LEFT JOIN kitfiles k ON k.manifest_digest = d.manifest_digest""",
    "tag_changes": """
SELECT h.repository, h.tag, h.crawl_id, c.started_at, h.digest,
  h.previous_digest
FROM (SELECT repository, tag, crawl_id, digest,
        lag(digest) OVER (PARTITION BY repository, tag ORDER BY crawl_id) AS previous_digest
      FROM tag_history) h
JOIN crawls c ON c.id = h.crawl_id
WHERE h.previous_digest IS NULL OR h.previous_digest != h.digest""",
}

# Version 2 adds this view (kept as a separate migration so that migrating works and
# is tested on a real step).
_V2_VIEWS: dict[str, str] = {
    "shared_datasets": """
SELECT coalesce(nullif(d.layer_digest, ''), d.remote_path, d.name) AS dataset_key,
  group_concat(DISTINCT d.name) AS names,
  count(DISTINCT d.manifest_digest) AS modelkits
FROM datasets d
GROUP BY dataset_key
HAVING count(DISTINCT d.manifest_digest) > 1""",
}

# Columns added after version 1: (version, table, column, type). A migration adds each
# one unless it is there already (databases written between releases may have it).
_ADDED_COLUMNS: list[tuple[int, str, str, type]] = [
    (3, "tag_history", "signed", INT),
    (3, "tag_history", "decision", TEXT),
    (5, "repositories", "target", TEXT),
    (6, "lineage_edges", "verified", INT),
]

# Tables added after version 1: version -> {table: (columns, primary key, foreign keys)}.
_ADDED_TABLES: dict[int, dict[str, tuple[dict[str, type], str | tuple[str, ...],
                                         list[tuple[str, str, str]]]]] = {
    4: {"policy_history": ({
        "subject_digest": TEXT, "policy": TEXT, "rule": TEXT, "crawl_id": INT,
        "status": TEXT, "evaluated_at": TEXT,
    }, ("subject_digest", "policy", "rule", "crawl_id"),
        [("subject_digest", "manifests", "digest"), ("crawl_id", "crawls", "id")])},
    7: {"referrer_sources": ({
        "subject_digest": TEXT, "repository": TEXT, "fingerprint": TEXT, "referrers": INT,
        "crawl_id": INT,
    }, ("subject_digest", "repository"),
        [("subject_digest", "manifests", "digest"), ("crawl_id", "crawls", "id")])},
}

# Indexes added after version 1: (version, table, columns).
_ADDED_INDEXES: list[tuple[int, str, list[str]]] = [
    (4, "policy_history", ["crawl_id"]),
    (5, "repositories", ["target"]),
]

# Version 8: the ``lineage`` view shows whether each base's signature verified for the
# child (``lineage_edges.verified``, v6).
_V8_VIEWS: dict[str, str] = {
    "lineage": """
SELECT e.child_digest, c.repository AS child_repository, ck.package_name AS child_name,
  e.relation, e.parent_reference, e.parent_digest,
  p.repository AS parent_repository,
  coalesce(pk.package_name, e.parent_name) AS parent_name,
  e.source, e.depth, e.resolved_by, e.verified
FROM lineage_edges e
JOIN manifests c ON c.digest = e.child_digest
LEFT JOIN kitfiles ck ON ck.manifest_digest = e.child_digest
LEFT JOIN manifests p ON p.digest = e.parent_digest
LEFT JOIN kitfiles pk ON pk.manifest_digest = e.parent_digest""",
}

_FTS: list[tuple[str, list[str]]] = [
    ("kitfiles", ["package_name", "package_description", "model_name", "model_description"]),
    ("datasets", ["name", "description"]),
    ("repositories", ["name"]),
]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _migrate_1(db: sqlite_utils.Database) -> None:
    for name, (columns, pk, fks) in _TABLES.items():
        db[name].create(columns, pk=pk, foreign_keys=fks, if_not_exists=True)  # type: ignore[union-attr]
    for table, cols in _INDEXES:
        db[table].create_index(cols, if_not_exists=True)  # type: ignore[union-attr]
    for name, sql in _VIEWS.items():
        db.create_view(name, sql.strip(), replace=True)
    for table, cols in _FTS:
        db[table].enable_fts(cols, create_triggers=True, replace=True)  # type: ignore[union-attr]


def _migrate_2(db: sqlite_utils.Database) -> None:
    for name, sql in _V2_VIEWS.items():
        db.create_view(name, sql.strip(), replace=True)


def _migrate_8(db: sqlite_utils.Database) -> None:
    for name, sql in _V8_VIEWS.items():
        db.create_view(name, sql.strip(), replace=True)


def _add(version: int) -> Callable[[sqlite_utils.Database], None]:
    """The step of ``version``: its new tables, columns and indexes (each only if absent)."""

    def step(db: sqlite_utils.Database) -> None:
        for name, (columns, pk, fks) in _ADDED_TABLES.get(version, {}).items():
            db[name].create(columns, pk=pk, foreign_keys=fks, if_not_exists=True)  # type: ignore[union-attr]
        for v, table, column, kind in _ADDED_COLUMNS:
            if v == version and column not in db[table].columns_dict:
                db[table].add_column(column, kind)  # type: ignore[union-attr]
        for v, table, cols in _ADDED_INDEXES:
            if v == version:
                db[table].create_index(cols, if_not_exists=True)  # type: ignore[union-attr]
        for data_step in _BACKFILL.get(version, ()):
            data_step(db)

    return step


def _backfill_policy_history(db: sqlite_utils.Database) -> None:
    """Results recorded before version 4: the current status from the crawl that last
    changed it and, when known, the status before that change one crawl earlier (the
    best the old columns tell)."""
    db.execute(
        "INSERT OR IGNORE INTO policy_history (subject_digest, policy, rule, crawl_id, "
        "status, evaluated_at) SELECT subject_digest, policy, rule, "
        "coalesce(changed_crawl, crawl_id), status, evaluated_at FROM policy_results "
        "WHERE coalesce(changed_crawl, crawl_id) IS NOT NULL")
    db.execute(
        "INSERT OR IGNORE INTO policy_history (subject_digest, policy, rule, crawl_id, "
        "status, evaluated_at) SELECT r.subject_digest, r.policy, r.rule, "
        "(SELECT max(c.id) FROM crawls c WHERE c.id < r.changed_crawl), "
        "r.previous_status, NULL FROM policy_results r WHERE r.previous_status IS NOT NULL "
        "AND EXISTS (SELECT 1 FROM crawls c WHERE c.id < r.changed_crawl)")


def _backfill_repository_target(db: sqlite_utils.Database) -> None:
    db.execute("UPDATE repositories SET target = (SELECT c.target FROM crawls c "
               "WHERE c.id = repositories.last_seen_crawl) WHERE target IS NULL")


# Data filled in by a migration for rows written before it: version -> steps.
_BACKFILL: dict[int, list[Callable[[sqlite_utils.Database], None]]] = {
    4: [_backfill_policy_history],
    5: [_backfill_repository_target],
}


MIGRATIONS: list[tuple[int, str, Callable[[sqlite_utils.Database], None]]] = [
    (1, "initial schema", _migrate_1),
    (2, "shared_datasets view", _migrate_2),
    (3, "tag_history.signed and tag_history.decision", _add(3)),
    (4, "policy_history table (each rule's status from the crawl it changed in)", _add(4)),
    (5, "repositories.target (the crawl target that last listed it)", _add(5)),
    (6, "lineage_edges.verified (the base model's signature verified for the child)",
     _add(6)),
    (7, "referrer_sources table (referrers read per repository of a digest)", _add(7)),
    (8, "lineage view with lineage_edges.verified", _migrate_8),
]


def current_version(db: sqlite_utils.Database) -> int:
    if "schema_version" not in db.table_names():
        return 0
    row = db.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(db: sqlite_utils.Database, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations up to ``target``; returns the version reached."""
    version = current_version(db)
    if version > SCHEMA_VERSION:
        raise KitauditError(f"audit database schema version {version} is newer than this "
                            f"kitaudit knows ({SCHEMA_VERSION})",
                            fix="upgrade kitaudit, or crawl into a new database")
    if "schema_version" not in db.table_names():
        db["schema_version"].create({"version": int, "applied_at": str,  # type: ignore[union-attr]
                                     "description": str}, pk="version")
    for number, description, step in MIGRATIONS:
        if version < number <= target:
            with db.conn:
                step(db)
                db["schema_version"].insert({"version": number, "applied_at": now_iso(),  # type: ignore[union-attr]
                                             "description": description})
            version = number
    return version


def connect(path: str | Path) -> sqlite3.Connection:
    """A read-write connection with the settings the crawler relies on."""
    conn = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def open_db(path: str | Path, *, target: int = SCHEMA_VERSION) -> sqlite_utils.Database:
    """Open (create or migrate forward) the audit database at ``path``."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        raise KitauditError(f"directory {p.parent} does not exist",
                            fix="create it, or pass another --db path")
    try:
        conn = connect(p)
        db = sqlite_utils.Database(conn)
        migrate(db, target)
    except sqlite3.DatabaseError as err:
        raise KitauditError(f"{p} is not a usable audit database: {err}",
                            fix="pass a new --db path, or remove the file") from None
    return db


def connect_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection (``file:...?mode=ro``): writes fail inside SQLite."""
    p = Path(path)
    if not p.is_file():
        raise KitauditError(f"audit database {p} does not exist",
                            fix="run `kitaudit crawl TARGET --db PATH` first")
    from urllib.parse import quote

    conn = sqlite3.connect(f"file:{quote(str(p.resolve()))}?mode=ro", uri=True,
                           check_same_thread=False)
    conn.row_factory = sqlite3.Row
    try:
        version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
    except sqlite3.DatabaseError:
        conn.close()
        raise KitauditError(f"{p} is not an audit database",
                            fix="run `kitaudit crawl TARGET --db PATH` first") from None
    if version is None or int(version) > SCHEMA_VERSION:
        conn.close()
        raise KitauditError(f"{p} has schema version {version}; this kitaudit reads "
                            f"up to {SCHEMA_VERSION}", fix="upgrade kitaudit")
    return conn


def _final_tables() -> dict[str, tuple[dict[str, type], str | tuple[str, ...],
                                      list[tuple[str, str, str]]]]:
    """The tables at SCHEMA_VERSION: version 1 plus every addition."""
    out = {name: (dict(cols), pk, list(fks)) for name, (cols, pk, fks) in _TABLES.items()}
    for version in sorted(_ADDED_TABLES):
        for name, (cols, pk, fks) in _ADDED_TABLES[version].items():
            out[name] = (dict(cols), pk, list(fks))
    for _v, table, column, kind in _ADDED_COLUMNS:
        out[table][0][column] = kind
    for _v, table, pk in _CHANGED_KEYS:
        cols, _old, fks = out[table]
        out[table] = (cols, pk, fks)
    return out


# Primary keys changed after version 1: (version, table, new primary key).
_CHANGED_KEYS: list[tuple[int, str, tuple[str, ...]]] = []


def table_columns() -> dict[str, list[str]]:
    """Column names of every table at SCHEMA_VERSION (for docs and merge)."""
    return {name: list(cols) for name, (cols, _pk, _fk) in _final_tables().items()}


def describe() -> dict[str, Any]:
    """The schema as data: tables (columns, primary key, foreign keys), views."""
    return {
        "version": SCHEMA_VERSION,
        "tables": {name: {"columns": {c: t.__name__ for c, t in cols.items()},
                          "primary_key": pk, "foreign_keys": fks}
                   for name, (cols, pk, fks) in _final_tables().items()},
        "views": sorted([*_VIEWS, *_V2_VIEWS]),
    }
