"""Questions answered from the audit database (read-only connections only).

Every function takes the database path first and returns plain data (lists of dicts,
or a tree of dicts for :func:`lineage`), so the CLI prints it as a table, JSON or CSV and
the report reads the same answers.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kitaudit.audit.schema import connect_readonly
from kitaudit.errors import KitauditError, NotFound, UsageError

MAX_DEPTH = 32


@dataclass
class QueryResult:
    """Rows of a tabular answer."""

    columns: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_list(self) -> list[dict[str, Any]]:
        return list(self.rows)


def _rows(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] = ()) -> QueryResult:
    cur = conn.execute(sql, params)
    cols = [d[0] for d in cur.description or []]
    return QueryResult(cols, [dict(zip(cols, r, strict=True)) for r in cur.fetchall()])


def _tags_of(conn: sqlite3.Connection, digest: str) -> list[str]:
    return [f"{r}:{t}" for r, t in conn.execute(
        "SELECT repository, tag FROM tags WHERE digest=? ORDER BY repository, tag", (digest,))]


def resolve(conn: sqlite3.Connection, ref: str) -> str:
    """A digest from ``sha256:…``, ``repo@sha256:…``, ``registry/repo:tag``, ``repo:tag``
    (any registry, when unambiguous) or a package name."""
    text = ref.strip()
    if "@" in text:
        text = text.rsplit("@", 1)[1]
    if text.startswith("sha256:"):
        if conn.execute("SELECT 1 FROM manifests WHERE digest=?", (text,)).fetchone():
            return text
        rows = conn.execute("SELECT digest FROM manifests WHERE digest LIKE ? LIMIT 2",
                            (text + "%",)).fetchall()
        if len(rows) == 1:
            return str(rows[0][0])
        raise NotFound(f"{ref} is not in the audit database",
                       fix="crawl the registry that holds it")
    repo, _, tag = text.rpartition(":") if ":" in text.rsplit("/", 1)[-1] else (text, "", "")
    tag = tag or "latest"
    row = conn.execute("SELECT digest FROM tags WHERE repository=? AND tag=?",
                       (repo, tag)).fetchone()
    if row:
        return str(row[0])
    rows = conn.execute(
        "SELECT DISTINCT digest FROM tags WHERE (repository = ? OR repository LIKE ?) AND tag=?",
        (f"localhost/{repo}", f"%/{repo}", tag)).fetchall()
    if len(rows) == 1:
        return str(rows[0][0])
    if len(rows) > 1:
        raise UsageError(f"{ref} matches ModelKits in several registries",
                         fix="give the full registry/repository:tag or the digest")
    rows = conn.execute("SELECT DISTINCT manifest_digest FROM kitfiles WHERE package_name=?",
                        (ref,)).fetchall()
    if len(rows) == 1:
        return str(rows[0][0])
    raise NotFound(f"{ref} is not in the audit database",
                   fix="see `kitaudit query sql \"SELECT * FROM modelkits\"`")


def _node(conn: sqlite3.Connection, digest: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT m.repository, m.kind, m.signed, m.decision, k.package_name, "
        "k.package_version FROM manifests m LEFT JOIN kitfiles k ON "
        "k.manifest_digest = m.digest WHERE m.digest=?", (digest,)).fetchone()
    if row is None:
        return {"digest": digest, "repository": None, "tags": [], "name": None,
                "version": None, "signed": None, "decision": None, "crawled": False}
    return {"digest": digest, "repository": row["repository"], "tags": _tags_of(conn, digest),
            "name": row["package_name"], "version": row["package_version"],
            "signed": bool(row["signed"]), "decision": row["decision"], "crawled": True}


def _parents(conn: sqlite3.Connection, digest: str) -> list[dict[str, Any]]:
    """Direct base models of ``digest`` (one entry per parent, sources merged)."""
    out: dict[str, dict[str, Any]] = {}
    for r in conn.execute(
            "SELECT * FROM lineage_edges "
            "WHERE child_digest=? AND relation='base-model' AND depth=1 "
            "ORDER BY source", (digest,)):
        key = r["parent_digest"] or r["parent_reference"]
        entry = out.setdefault(key, {"reference": r["parent_reference"],
                                     "digest": r["parent_digest"],
                                     "name": r["parent_name"], "sources": [],
                                     "verified_for_child": None})
        entry["sources"].append(r["source"])
        # the base's signature verified for this child's lineage rules (schema v6)
        verified = r["verified"] if "verified" in r.keys() else None
        if verified is not None:
            entry["verified_for_child"] = bool(verified) or bool(entry["verified_for_child"])
        entry["name"] = entry["name"] or r["parent_name"]
    return list(out.values())


def _ancestors(conn: sqlite3.Connection, digest: str, seen: set[str],
               depth: int = 1) -> list[dict[str, Any]]:
    out = []
    for p in _parents(conn, digest):
        node = {**(_node(conn, p["digest"]) if p["digest"] else
                   {"digest": None, "repository": None, "tags": [], "name": p["name"],
                    "crawled": False}),
                "reference": p["reference"], "sources": p["sources"], "depth": depth,
                "verified_for_child": p["verified_for_child"]}
        node["name"] = node.get("name") or p["name"]
        if p["digest"] and p["digest"] not in seen and depth < MAX_DEPTH:
            seen.add(p["digest"])
            node["ancestors"] = _ancestors(conn, p["digest"], seen, depth + 1)
        else:
            node["ancestors"] = []
        out.append(node)
    return out


def _descendants(conn: sqlite3.Connection, digest: str, seen: set[str],
                 depth: int = 1) -> list[dict[str, Any]]:
    children = [r[0] for r in conn.execute(
        "SELECT DISTINCT child_digest FROM lineage_edges WHERE parent_digest=? AND "
        "relation='base-model' AND depth=1 ORDER BY child_digest", (digest,))]
    out = []
    for child in children:
        if child in seen or depth >= MAX_DEPTH:
            continue
        seen.add(child)
        node = {**_node(conn, child), "depth": depth}
        node["descendants"] = _descendants(conn, child, seen, depth + 1)
        out.append(node)
    return out


def lineage(db: str | Path, ref: str) -> dict[str, Any]:
    """The ModelKit ``ref`` with its ancestors (base models, nearest first, each with its
    own ancestors) and its descendants (ModelKits built on it, recursively)."""
    with _open(db) as conn:
        digest = resolve(conn, ref)
        root = _node(conn, digest)
        root["ancestors"] = _ancestors(conn, digest, {digest})
        root["descendants"] = _descendants(conn, digest, {digest})
        return root


def lineage_lines(tree: dict[str, Any]) -> list[str]:
    """The lineage tree as indented text lines."""

    def label(n: dict[str, Any]) -> str:
        name = n.get("name") or n.get("reference") or "?"
        where = ", ".join(n.get("tags") or []) or n.get("reference") or n.get("repository") \
            or ""
        digest = (n.get("digest") or "unresolved")[:19]
        signed = "" if n.get("signed") is None else (" signed" if n["signed"] else " unsigned")
        return f"{name} {digest} {where}{signed}".rstrip()

    lines = [label(tree)]

    def walk(nodes: list[dict[str, Any]], key: str, arrow: str, indent: int) -> None:
        for n in nodes:
            lines.append("  " * indent + f"{arrow} " + label(n))
            walk(n.get(key) or [], key, arrow, indent + 1)

    for key, arrow in (("ancestors", "↑"), ("descendants", "↓")):
        if tree.get(key):
            lines.append(f"  {key}:")
            walk(tree[key], key, arrow, 2)
    return lines


def uses(db: str | Path, dataset: str) -> QueryResult:
    """Every ModelKit containing ``dataset``: matched by layer digest, by name, by path
    or by remote path (URL)."""
    with _open(db) as conn:
        return _rows(conn, """
SELECT d.dataset, d.path, d.layer_digest, d.remote_path, d.license, d.digest, d.tags,
  d.package_name, d.repository
FROM dataset_usage d
WHERE d.layer_digest = ? OR d.dataset = ? OR d.path = ? OR d.remote_path = ?
ORDER BY d.repository, d.tags, d.path""", (dataset, dataset, dataset, dataset))


def unsigned(db: str | Path) -> QueryResult:
    """ModelKits without a verified signature (and why: none found, or not verified)."""
    with _open(db) as conn:
        return _rows(conn, "SELECT * FROM unsigned ORDER BY repository, tags, digest")


def violations(db: str | Path, policy: str | None = None,
               severity: str | None = None) -> QueryResult:
    """Failing, warning and erroring rule results; filtered by policy and by the rule
    severity (``deny``/``warn``)."""
    if severity is not None and severity not in ("deny", "warn"):
        raise UsageError(f"unknown severity {severity!r}", fix="use deny or warn")
    sql = ("SELECT digest, repository, tags, package_name, policy, rule, severity, status, "
           "reason, remediation, previous_status, changed_crawl FROM policy_violations "
           "WHERE 1=1")
    params: list[Any] = []
    if policy:
        sql += " AND policy = ?"
        params.append(policy)
    if severity:
        sql += " AND severity = ?"
        params.append(severity)
    sql += " ORDER BY repository, tags, policy, rule"
    with _open(db) as conn:
        return _rows(conn, sql, tuple(params))


def history(db: str | Path, what: str) -> QueryResult:
    """Where ``REPO[:TAG]`` pointed at every crawl that saw it (``changed`` marks a move)."""
    text = what.strip()
    repo, tag = text, None
    last = text.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = text.rpartition(":")
    with _open(db) as conn:
        names = [repo]
        if not conn.execute("SELECT 1 FROM tag_history WHERE repository=? LIMIT 1",
                            (repo,)).fetchone():
            names = [r[0] for r in conn.execute(
                "SELECT DISTINCT repository FROM tag_history WHERE repository = ? OR "
                "repository LIKE ?", (f"localhost/{repo}", f"%/{repo}"))]
            if not names:
                raise NotFound(f"{repo} has no tag history in the audit database",
                               fix="crawl it first")
        marks = ",".join("?" * len(names))
        sql = ("SELECT h.repository, h.tag, h.crawl_id, c.started_at AS crawled_at, h.digest, "  # noqa: S608
               "CASE WHEN lag(h.digest) OVER (PARTITION BY h.repository, h.tag ORDER BY "
               "h.crawl_id) IS NULL THEN 'first seen' WHEN lag(h.digest) OVER (PARTITION BY "
               "h.repository, h.tag ORDER BY h.crawl_id) != h.digest THEN 'moved' ELSE '' "
               "END AS change FROM tag_history h JOIN crawls c ON c.id = h.crawl_id "
               f"WHERE h.repository IN ({marks})")
        params: list[Any] = list(names)
        if tag:
            sql += " AND h.tag = ?"
            params.append(tag)
        sql += " ORDER BY h.repository, h.tag, h.crawl_id"
        return _rows(conn, sql, tuple(params))


def sql(db: str | Path, query: str, params: tuple[Any, ...] = ()) -> QueryResult:
    """Run one SQL statement on a read-only connection (writes fail inside SQLite)."""
    with _open(db) as conn:
        try:
            return _rows(conn, query, params)
        except sqlite3.Warning as err:  # e.g. several statements
            raise UsageError(f"SQL: {err}", fix="give one statement") from None
        except sqlite3.Error as err:
            raise KitauditError(f"SQL: {err}",
                                fix="the database is read-only here; see docs/audit-db.md "
                                    "for the tables and views") from None


class _open:
    def __init__(self, db: str | Path) -> None:
        self.conn = connect_readonly(db)

    def __enter__(self) -> sqlite3.Connection:
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()
