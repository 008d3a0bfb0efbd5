"""``kitaudit db merge OUT SHARD...``: combine shard databases into one.

Each shard database is attached in turn and copied table by table in foreign-key order.
Crawl ids are renumbered (every shard starts at 1), and every column that names a crawl
is mapped to the new id. Rows keyed by digest are content-addressed, so a manifest seen by
two shards is the same row; a complete record wins over an incomplete one. Base-model
edges are resolved again at the end: a ModelKit in one shard may name a base model that
another shard crawled.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kitaudit.audit.crawl import resolve_lineage
from kitaudit.audit.schema import SCHEMA_VERSION, open_db, table_columns
from kitaudit.errors import KitauditError, UsageError

# columns that hold a crawl id, per table
_CRAWL_COLUMNS: dict[str, tuple[str, ...]] = {
    "repositories": ("first_seen_crawl", "last_seen_crawl", "last_done_crawl"),
    "manifests": ("first_seen_crawl", "last_seen_crawl"),
    "tags": ("first_seen_crawl", "last_seen_crawl"),
    "tag_history": ("crawl_id",),
    "policy_results": ("crawl_id", "changed_crawl"),
    "policy_history": ("crawl_id",),
    "referrer_sources": ("crawl_id",),
    "errors": ("crawl_id",),
}
# copy order (parents before children); how a conflict on the primary key is resolved
_ORDER: list[tuple[str, str]] = [
    ("repositories", "update"),
    ("manifests", "complete"),
    ("tags", "update"),
    ("tag_history", "ignore"),
    ("layers", "ignore"),
    ("kitfiles", "ignore"),
    ("datasets", "ignore"),
    ("referrers", "ignore"),
    ("signatures", "ignore"),
    ("sboms", "ignore"),
    ("lineage_edges", "ignore"),
    ("policy_results", "update"),
    ("policy_history", "ignore"),
    ("referrer_sources", "ignore"),
    ("errors", "append"),
]
_PK: dict[str, tuple[str, ...]] = {
    "repositories": ("name",), "manifests": ("digest",), "tags": ("repository", "tag"),
    "policy_results": ("subject_digest", "policy", "rule"),
}


@dataclass
class MergeStats:
    output: str
    shards: list[str]
    crawls: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    lineage_resolved: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"output": self.output, "shards": self.shards, "crawls": self.crawls,
                "rows": self.rows, "lineage_resolved": self.lineage_resolved}


def _check_shard(path: Path) -> None:
    if not path.is_file():
        raise UsageError(f"shard database {path} does not exist")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            version = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        raise KitauditError(f"{path} is not an audit database",
                            fix="give databases written by `kitaudit crawl`") from None
    if version is None or int(version) > SCHEMA_VERSION:
        raise KitauditError(f"{path} has schema version {version}; this kitaudit knows up "
                            f"to {SCHEMA_VERSION}", fix="upgrade kitaudit")
    if int(version) < SCHEMA_VERSION:
        open_db(path).conn.close()  # migrate the shard forward first


def merge(output: str | Path, shards: list[str | Path]) -> MergeStats:
    """Merge the shard databases into ``output`` (created, or added to)."""
    out_path = Path(output)
    paths = [Path(s) for s in shards]
    if not paths:
        raise UsageError("no shard databases given", fix="kitaudit db merge OUT SHARD...")
    for p in paths:
        if p.resolve() == out_path.resolve():
            raise UsageError(f"{p} is the output database", fix="merge into a new file")
        _check_shard(p)
    stats = MergeStats(str(out_path), [str(p) for p in paths])
    db = open_db(out_path)
    conn = db.conn
    columns = table_columns()
    try:
        conn.execute("PRAGMA foreign_keys=ON")
        for p in paths:
            conn.execute("ATTACH DATABASE ? AS shard", (str(p),))
            try:
                with conn:
                    _merge_one(conn, columns, stats)
            finally:
                conn.execute("DETACH DATABASE shard")
        with conn:
            stats.lineage_resolved = resolve_lineage(conn)
    finally:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
    return stats


def _merge_one(conn: sqlite3.Connection, columns: dict[str, list[str]],
               stats: MergeStats) -> None:
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS crawl_map (old INTEGER PRIMARY KEY, "
                 "new INTEGER)")
    conn.execute("DELETE FROM temp.crawl_map")
    crawl_cols = [c for c in columns["crawls"] if c != "id"]
    for row in conn.execute("SELECT id FROM shard.crawls ORDER BY id").fetchall():
        old = row[0]
        cur = conn.execute(
            f"INSERT INTO main.crawls ({', '.join(crawl_cols)}) "  # noqa: S608 - schema names
            f"SELECT {', '.join(crawl_cols)} FROM shard.crawls WHERE id = ?", (old,))
        conn.execute("INSERT INTO temp.crawl_map (old, new) VALUES (?, ?)",
                     (old, cur.lastrowid))
        stats.crawls += 1
    for table, mode in _ORDER:
        cols = [c for c in columns[table] if not (table == "errors" and c == "id")]
        mapped = set(_CRAWL_COLUMNS.get(table, ()))
        select = ", ".join(
            f"(SELECT new FROM temp.crawl_map WHERE old = s.{c})"  # noqa: S608 - schema names
            if c in mapped else f"s.{c}"
            for c in cols)
        names = ", ".join(cols)
        if mode in ("ignore", "append"):
            verb = "INSERT OR IGNORE" if mode == "ignore" else "INSERT"
            sql = f"{verb} INTO main.{table} ({names}) SELECT {select} FROM shard.{table} s"  # noqa: S608
        else:
            pk = _PK[table]
            sets = ", ".join(f"{c}=excluded.{c}" for c in cols if c not in pk)
            where = " WHERE main.manifests.complete = 0 AND excluded.complete = 1" \
                if mode == "complete" else ""
            sql = (f"INSERT INTO main.{table} ({names}) SELECT {select} FROM shard.{table} s "  # noqa: S608
                   f"WHERE true ON CONFLICT({', '.join(pk)}) DO UPDATE SET {sets}{where}")
        cur = conn.execute(sql)  # table and column names come from the schema
        stats.rows[table] = stats.rows.get(table, 0) + max(cur.rowcount, 0)
