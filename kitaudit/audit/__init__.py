"""The auditor: crawl registries, the local store or OCI layouts into SQLite and answer
lineage, dataset, signing and policy questions. See docs/audit-db.md.

Public API (imported lazily)::

    crawl(target, db_path, *, options=None, concurrency=8, shard=None, progress=None,
          net=None, run_id=None, reverify=False) -> CrawlStats
    merge(output, shards) -> MergeStats
    lineage(db, ref) -> dict ; uses(db, dataset) ; unsigned(db)
    violations(db, policy=None, severity=None) ; history(db, "repo[:tag]") ; sql(db, query)
    open_db(path) ; open_source(target, net=None)
"""

from __future__ import annotations

from kitaudit._lazy import lazy_exports

_EXPORTS = {
    "crawl": "kitaudit.audit.crawl",
    "CrawlStats": "kitaudit.audit.crawl",
    "parse_shard": "kitaudit.audit.crawl",
    "shard_of": "kitaudit.audit.crawl",
    "resolve_lineage": "kitaudit.audit.crawl",
    "merge": "kitaudit.audit.merge",
    "MergeStats": "kitaudit.audit.merge",
    "lineage": "kitaudit.audit.queries",
    "uses": "kitaudit.audit.queries",
    "unsigned": "kitaudit.audit.queries",
    "violations": "kitaudit.audit.queries",
    "history": "kitaudit.audit.queries",
    "sql": "kitaudit.audit.queries",
    "QueryResult": "kitaudit.audit.queries",
    "open_db": "kitaudit.audit.schema",
    "SCHEMA_VERSION": "kitaudit.audit.schema",
    "open_source": "kitaudit.audit.sources",
    "RegistrySource": "kitaudit.audit.sources",
    "LayoutSource": "kitaudit.audit.sources",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
