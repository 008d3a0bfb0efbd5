"""Build the compliance report's data from a crawled audit database.

The result is plain JSON-ready data following the schema in ``docs/report.md``
(:data:`REPORT_SCHEMA_VERSION`; keys are only ever added within a version). Every number
is read from the database; what the database does not record is listed in
``not_recorded`` instead of being guessed.

Terms used throughout:

* **in scope**: ModelKits (``manifests.kind = 'modelkit'``) that a current tag points to
  or that the latest crawl of their target saw, in the repositories selected by
  ``repositories`` (globs) and ``target``;
* **violation**: a rule result with status ``fail`` or ``error`` (it denies or could not
  decide); ``warn`` results are *warnings* and counted apart; ``waived`` failures are
  neither;
* **baseline** (``since``): ``"last"`` is the previous complete crawl of each target in
  scope, ``"crawl:ID"`` that crawl, a path a previous report's JSON file.
"""

from __future__ import annotations

import fnmatch
import json
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from kitaudit.errors import KitauditError, UsageError

REPORT_SCHEMA_VERSION = 1
REPORT_KIND = "kitaudit-compliance-report"
CONTROLS_NOTE = ("Control references (EU AI Act articles and annexes, NIST AI RMF "
                 "subcategories, ISO/IEC 42001 Annex A controls) are taken from secondary "
                 "sources, not from the official texts; check them against the "
                 "authoritative documents before relying on them.")
FRAMEWORKS: dict[str, str] = {
    "eu-ai-act": "EU AI Act",
    "nist-ai-rmf": "NIST AI RMF",
    "iso-42001": "ISO/IEC 42001 Annex A",
}
VIOLATION = ("fail", "error")
STATUSES = ("pass", "fail", "warn", "waived", "error")
EXPIRING_DAYS = 30
TRUST_KEYS = ("keys", "certificate_identity", "certificate_identity_regexp",
              "certificate_oidc_issuer", "certificate_oidc_issuer_regexp", "trusted_root",
              "offline", "staging", "policies", "params", "waivers", "require_sbom")


# ---------------------------------------------------------------------- helpers
def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _loads(text: Any, default: Any) -> Any:
    if text is None or text == "":
        return default
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return default


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}


def _in(values: Iterable[Any]) -> tuple[str, list[Any]]:
    vals = list(values)
    return ",".join("?" * len(vals)) or "NULL", vals


def _chunks(values: Sequence[Any], n: int = 500) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), n):
        yield values[i:i + n]


def _rows(conn: sqlite3.Connection, sql: str, keys: Sequence[Any]) -> list[sqlite3.Row]:
    """Run ``sql`` (with one ``{in}`` placeholder) over ``keys`` in chunks."""
    out: list[sqlite3.Row] = []
    for part in _chunks(list(keys)):
        marks, vals = _in(part)
        out.extend(conn.execute(sql.format(**{"in": marks}), vals).fetchall())
    return out


def _signer_text(s: dict[str, Any]) -> str:
    if s.get("identity"):
        issuer = f" ({s['issuer']})" if s.get("issuer") else ""
        return f"{s['identity']}{issuer}"
    if s.get("key_id"):
        return f"key sha256:{s['key_id'][:16]}"
    return f"{s.get('kind') or 'unknown'} signer (identity not recorded)"


def fail_on_triggered(report: dict[str, Any], fail_on: str | None) -> bool:
    """True when the ``--fail-on`` condition holds: ``violations`` (any violation in
    scope) or ``new-violations`` (a violation that was not there at the baseline; with
    no baseline every violation is new)."""
    if not fail_on:
        return False
    s = report["summary"]
    if fail_on == "violations":
        return bool(s["violations"])
    if fail_on == "new-violations":
        new = s["new_violations"]
        return bool(s["violations"] if new is None else new)
    raise UsageError(f"unknown --fail-on value {fail_on!r}",
                     fix="use --fail-on violations or --fail-on new-violations")


def _trust_material(opts: dict[str, Any]) -> dict[str, Any]:
    """The trust material of a crawl, named by identity: ``crawls.options`` from audit
    schema v5 on (``format`` 2: key ids and cosign hints, trusted-root and waivers
    digests, policy fingerprints); earlier crawls recorded file paths, shown as they are.
    ``keys``, ``policies``, ``trusted_root`` and ``waivers`` stay display strings."""
    keys = opts.get("keys") or []
    key_ids = [k for k in keys if isinstance(k, dict)]
    out: dict[str, Any] = {
        "keys": [f"sha256:{k.get('key_id', '')[:16]} (hint {k.get('hint')}"
                 + (f", {k['name']})" if k.get("name") else ")")
                 if isinstance(k, dict) else str(k) for k in keys],
        "key_ids": [{"key_id": k.get("key_id"), "hint": k.get("hint"),
                     "name": k.get("name")} for k in key_ids],
    }
    pols = opts.get("policies") or []
    out["policies"] = [f"{p.get('name')} ({str(p.get('fingerprint') or '')[:19]})"
                       if isinstance(p, dict) else str(p) for p in pols]
    out["policy_fingerprints"] = [{"name": p.get("name"), "fingerprint": p.get("fingerprint")}
                                  for p in pols if isinstance(p, dict)]
    root = opts.get("trusted_root")
    if isinstance(root, dict):
        text = root.get("source") or ""
        if root.get("digest"):
            text = f"{root.get('name') or 'file'} ({root['digest']})"
        out["trusted_root"] = text or None
        out["trusted_root_digest"] = root.get("digest")
    else:
        out["trusted_root_digest"] = None
    waivers = opts.get("waivers")
    if isinstance(waivers, dict):
        out["waivers"] = (f"{waivers.get('name')}: {waivers.get('count')} waivers"
                          + (f" ({waivers['digest']})" if waivers.get("digest") else ""))
        out["waivers_digest"] = waivers.get("digest")
    else:
        out["waivers_digest"] = None
    out["identified"] = opts.get("format") == 2
    return out


# ---------------------------------------------------------------------- build
def build_report(db_path: str | Path, *, since: str | Path | None = None,
                 policies: Sequence[str | Path] = (), waivers: str | Path | None = None,
                 repositories: Sequence[str] = (), target: str | None = None,
                 title: str | None = None, now: datetime | None = None,
                 expiring_days: int = EXPIRING_DAYS) -> dict[str, Any]:
    """Read the audit database at ``db_path`` and return the report data.

    ``since``: ``None`` or ``"none"`` (no comparison), ``"last"`` (the previous complete
    crawl of each target), ``"crawl:ID"`` or the path of a previous ``report.json``.
    ``policies``: policy files; when given, only these policies are reported and their
    rules (with controls) are listed even when no ModelKit was evaluated against them.
    ``waivers``: a waivers file; all its waivers are listed with their expiry, used or not.
    ``repositories``: globs over ``registry/repository`` (``*`` matches across ``/``).
    ``target``: only crawls of this target (as recorded in ``crawls.target``).
    """
    from kitaudit import __version__
    from kitaudit.audit.schema import connect_readonly

    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if since is not None and str(since) == "none":
        since = None
    conn = connect_readonly(db_path)
    try:
        # one read transaction: a crawl writing meanwhile (WAL) does not change what
        # this report sees half-way through
        conn.execute("BEGIN")
        b = _Builder(conn, now=now, repositories=repositories, target=target,
                     expiring_days=expiring_days)
        b.load_scope()
        b.load_modelkits()
        policy_meta = b.load_policies(policies)
        baseline = b.baseline(since)
        report: dict[str, Any] = {
            "schema_version": REPORT_SCHEMA_VERSION,
            "kind": REPORT_KIND,
            "title": title or "ModelKit compliance report",
            "generated_at": _iso(now),
            "kitaudit_version": __version__,
            "database": {"path": str(db_path), "schema_version": b.db_version},
            "scope": b.scope_section(),
            "period": b.period_section(baseline),
            "policy_set": policy_meta,
            "trust": b.trust_section(),
            "controls_note": CONTROLS_NOTE,
            "frameworks": dict(FRAMEWORKS),
        }
        controls = b.controls_section(policy_meta)
        changes = b.changes_section(baseline)
        report["summary"] = b.summary_section(policy_meta, changes)
        report["controls"] = controls
        report["inventory"] = b.inventory_section()
        report["changes"] = changes
        report["waivers"] = b.waivers_section(waivers)
        report["lineage"] = b.lineage_section()
        report["charts"] = b.charts_section()
        report["errors"] = b.errors_section()
        report["not_recorded"] = b.not_recorded
        return report
    finally:
        conn.close()


class _Builder:
    def __init__(self, conn: sqlite3.Connection, *, now: datetime,
                 repositories: Sequence[str], target: str | None,
                 expiring_days: int) -> None:
        self.conn = conn
        self.now = now
        self.repo_globs = list(repositories)
        self.target = target
        self.expiring_days = expiring_days
        self.not_recorded: list[str] = []
        self.tables = _tables(conn)
        self.db_version = int(conn.execute(
            "SELECT max(version) FROM schema_version").fetchone()[0] or 0)
        self.sig_cols = _columns(conn, "signatures")
        self.kits: dict[str, dict[str, Any]] = {}
        self.results: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._states: dict[str, dict[str, dict[str, Any]]] = {}

    # -------------------------------------------------------------- scope
    def _repo_ok(self, name: str | None) -> bool:
        if not name:
            return False
        return not self.repo_globs or any(fnmatch.fnmatchcase(name, g) for g in self.repo_globs)

    def load_scope(self) -> None:
        c = self.conn
        crawls = [dict(r) for r in c.execute("SELECT * FROM crawls ORDER BY id")
                  if not self.target or r["target"] == self.target]
        if not crawls:
            if self.target:
                raise KitauditError(f"the audit database has no crawl of {self.target}",
                                    fix="check --target against `kitaudit query sql "
                                        "\"SELECT DISTINCT target FROM crawls\"`")
            raise KitauditError("the audit database has no crawl yet",
                                fix="run `kitaudit crawl TARGET --db PATH` first")
        self.crawls = crawls
        # the latest crawl of every (target, shard): complete if there is one
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for cr in crawls:
            key = (cr["target"], cr.get("shard") or "")
            prev = latest.get(key)
            if cr["status"] == "complete" or prev is None or prev["status"] != "complete":
                latest[key] = cr
        self.current = sorted(latest.values(), key=lambda r: r["id"])
        self.current_ids = {cr["id"] for cr in self.current}
        for cr in self.current:
            if cr["status"] != "complete":
                self.not_recorded.append(
                    f"crawl {cr['id']} of {cr['target']} is {cr['status']}: the report "
                    "shows what it had recorded")
        targets = {cr["target"] for cr in self.current}
        target_of_crawl = {cr["id"]: cr["target"] for cr in crawls}
        self.repos: dict[str, dict[str, Any]] = {}
        self.gone_repos: list[str] = []
        for r in c.execute("SELECT * FROM repositories ORDER BY name"):
            row = dict(r)
            if not self._repo_ok(row["name"]):
                continue
            # a repository the latest crawl of its target did not list any more is gone
            # (``repositories.target`` from audit schema v5; before: via its last crawl)
            target = row.get("target") or target_of_crawl.get(row["last_seen_crawl"])
            if row["last_seen_crawl"] not in self.current_ids:
                if target in targets:
                    self.gone_repos.append(row["name"])
                continue
            self.repos[row["name"]] = row
        self.tags: list[dict[str, Any]] = [
            dict(r) for r in c.execute("SELECT * FROM tags ORDER BY repository, tag")
            if r["repository"] in self.repos]

    def load_modelkits(self) -> None:
        c = self.conn
        tagged: dict[str, list[str]] = defaultdict(list)
        for t in self.tags:
            tagged[t["digest"]].append(f"{t['repository']}:{t['tag']}")
        seen = {r[0] for r in _rows(c, "SELECT digest FROM manifests WHERE kind = 'modelkit' "
                                       "AND last_seen_crawl IN ({in})", sorted(self.current_ids))}
        digests = sorted(set(tagged) | seen)
        rows = _rows(c, "SELECT m.*, k.package_name, k.package_version, "
                        "k.package_description, k.package_license, k.model_name, "
                        "k.model_license, k.base_reference, k.model_path "
                        "FROM manifests m LEFT JOIN kitfiles k ON k.manifest_digest = m.digest "
                        "WHERE m.kind = 'modelkit' AND m.digest IN ({in})", digests)
        self.other_count = 0
        for r in rows:
            row = dict(r)
            if not tagged.get(row["digest"]) and not self._repo_ok(row["repository"]):
                continue
            row["tags"] = sorted(tagged.get(row["digest"], []))
            self.kits[row["digest"]] = row
        self.other_count = sum(1 for t in self.tags if t["digest"] not in self.kits)
        keys = sorted(self.kits)
        self.signatures: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in _rows(c, "SELECT * FROM signatures WHERE subject_digest IN ({in})", keys):
            self.signatures[r["subject_digest"]].append(dict(r))
        self.sboms: dict[str, dict[str, Any]] = {}
        for r in _rows(c, "SELECT * FROM sboms WHERE subject_digest IN ({in}) "
                          "ORDER BY verified", keys):
            self.sboms[r["subject_digest"]] = dict(r)   # a verified one wins
        self.datasets: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in _rows(c, "SELECT * FROM datasets WHERE manifest_digest IN ({in}) "
                          "ORDER BY manifest_digest, position", keys):
            self.datasets[r["manifest_digest"]].append(dict(r))
        self.edges: list[dict[str, Any]] = [dict(r) for r in _rows(
            c, "SELECT * FROM lineage_edges WHERE child_digest IN ({in}) "
               "ORDER BY child_digest, depth, source", keys)]
        parsed: dict[str | None, Any] = {}   # the same JSON texts repeat for every kit

        def cached(text: str | None, default: Any) -> Any:
            if text not in parsed:
                parsed[text] = _loads(text, default)
            return parsed[text]

        for r in _rows(c, "SELECT * FROM policy_results WHERE subject_digest IN ({in}) "
                          "ORDER BY policy, rule", keys):
            row = dict(r)
            row["controls"] = cached(row["controls"], [])
            row["waiver"] = _loads(row["waiver"], None)
            row["expired_waivers"] = cached(row["expired_waivers"], [])
            self.results[row["subject_digest"]].append(row)
        self.edges_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for e in self.edges:
            self.edges_of[e["child_digest"]].append(e)
        if not self.kits:
            self.not_recorded.append("no ModelKit in scope: check the crawl target, "
                                     "--repository and --target")

    # -------------------------------------------------------------- policies
    def load_policies(self, paths: Sequence[str | Path]) -> dict[str, Any]:
        recorded: dict[str, dict[str, Any]] = {}
        for rows in self.results.values():
            for r in rows:
                p = recorded.setdefault(r["policy"], {"fingerprints": Counter(), "rules": {}})
                p["fingerprints"][r["policy_fingerprint"]] += 1
                p["rules"].setdefault(r["rule"], {
                    "id": r["rule"], "description": r["description"] or "",
                    "severity": r["severity"], "controls": r["controls"],
                    "remediation": r["remediation"] or ""})
        policies: list[dict[str, Any]] = []
        self.rule_order: list[tuple[str, str]] = []
        if paths:
            from kitaudit.policy import load_policies

            for pol in load_policies([str(p) for p in paths]):
                fp = pol.fingerprint()
                rec = recorded.get(pol.name)
                db_fps = sorted(f for f in (rec or {}).get("fingerprints", {}) if f)
                entry = {
                    "name": pol.name, "description": pol.description or "",
                    "source": pol.source or "", "fingerprint": fp,
                    "evaluated_fingerprints": db_fps,
                    "matches_database": db_fps == [fp] if db_fps else None,
                    "rules": [{"id": r.id, "description": r.description,
                               "severity": r.severity,
                               "controls": [c.to_dict() for c in r.controls],
                               "remediation": r.remediation} for r in pol.rules],
                }
                if db_fps and db_fps != [fp]:
                    self.not_recorded.append(
                        f"policy {pol.name}: the database holds results of another version "
                        f"(fingerprint {', '.join(f[:19] for f in db_fps)}) than "
                        f"{pol.source} ({fp[:19]}); re-crawl to evaluate this version")
                if rec is None:
                    self.not_recorded.append(
                        f"policy {pol.name} was not evaluated by any crawl in scope: crawl "
                        f"with --policy {pol.source} to get results")
                policies.append(entry)
        else:
            for name in sorted(recorded):
                rec = recorded[name]
                fps = sorted(f for f in rec["fingerprints"] if f)
                policies.append({
                    "name": name, "description": "", "source": "",
                    "fingerprint": fps[0] if len(fps) == 1 else None,
                    "evaluated_fingerprints": fps, "matches_database": None,
                    "rules": list(rec["rules"].values())})
            if not policies:
                self.not_recorded.append(
                    "no policy results in the database: crawl with trust options and "
                    "--policy to evaluate policies")
        names = {p["name"] for p in policies}
        if paths:  # only the given policies are reported
            for d in list(self.results):
                self.results[d] = [r for r in self.results[d] if r["policy"] in names]
        for p in policies:
            for r in p["rules"]:
                self.rule_order.append((p["name"], r["id"]))
        combined = None
        if policies and all(p["fingerprint"] for p in policies):
            import hashlib

            combined = "sha256:" + hashlib.sha256("\n".join(
                f"{p['name']}={p['fingerprint']}" for p in policies).encode()).hexdigest()
        return {"policies": policies, "fingerprint": combined,
                "version_note": "A policy's version is its fingerprint: it changes whenever "
                                "a rule or parameter changes."}

    # -------------------------------------------------------------- baseline
    def baseline(self, since: str | Path | None) -> dict[str, Any] | None:
        if since is None:
            return None
        text = str(since)
        if text == "last":
            ids = []
            for cur in self.current:
                prev = [cr for cr in self.crawls if cr["target"] == cur["target"]
                        and (cr.get("shard") or "") == (cur.get("shard") or "")
                        and cr["id"] < cur["id"] and cr["status"] == "complete"]
                if prev:
                    ids.append(prev[-1]["id"])
            if not ids:
                return {"kind": "none", "label": "no previous crawl", "crawl_ids": [],
                        "at": None}
            return self._crawl_baseline(ids, "last")
        if text.startswith("crawl:"):
            try:
                cid = int(text.split(":", 1)[1])
            except ValueError:
                raise UsageError(f"--since {text}: not a crawl id",
                                 fix="use --since crawl:ID with a number") from None
            if not any(cr["id"] == cid for cr in self.crawls):
                raise UsageError(f"--since {text}: no such crawl in the database")
            return self._crawl_baseline([cid], text)
        path = Path(text)
        if path.is_dir():
            path = path / "report.json"
        try:
            prev = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise UsageError(f"--since {text}: cannot read {path}: {err.strerror}",
                             fix="give `last`, `crawl:ID` or a previous report.json") from None
        except ValueError:
            raise UsageError(f"--since {text}: {path} is not JSON",
                             fix="give the report.json written by `kitaudit report`") from None
        if not isinstance(prev, dict) or prev.get("kind") != REPORT_KIND:
            raise UsageError(f"--since {text}: {path} is not a kitaudit report",
                             fix="give the report.json written by `kitaudit report`")
        return {"kind": "report", "label": f"report of {prev.get('generated_at')}",
                "path": str(path), "at": prev.get("generated_at"),
                "crawl_ids": [c.get("id") for c in prev.get("scope", {}).get("crawls", [])],
                "report": prev}

    def _crawl_baseline(self, ids: list[int], label: str) -> dict[str, Any]:
        rows = [cr for cr in self.crawls if cr["id"] in ids]
        at = max((cr["finished_at"] or cr["started_at"] or "") for cr in rows) or None
        return {"kind": "crawl", "label": f"crawl {', '.join(map(str, ids))} ({label})",
                "crawl_ids": ids, "at": at}

    # -------------------------------------------------------------- sections
    def scope_section(self) -> dict[str, Any]:
        return {
            "targets": sorted({cr["target"] for cr in self.current}),
            "repository_filter": self.repo_globs,
            "target_filter": self.target,
            "repositories": len(self.repos),
            "tags": len(self.tags),
            "modelkits": len(self.kits),
            "other_artifacts_tagged": self.other_count,
            "crawls": [{"id": cr["id"], "run_id": cr["run_id"], "target": cr["target"],
                        "shard": cr.get("shard"), "status": cr["status"],
                        "started_at": cr["started_at"], "finished_at": cr["finished_at"],
                        "kitaudit_version": cr.get("kitaudit_version")}
                       for cr in self.current],
        }

    def period_section(self, baseline: dict[str, Any] | None) -> dict[str, Any]:
        end = max((cr["finished_at"] or cr["started_at"] or "") for cr in self.current)
        first = min((cr["started_at"] or "") for cr in self.crawls)
        return {"from": baseline["at"] if baseline else None, "to": end or None,
                "first_crawl_at": first or None,
                "baseline": None if baseline is None else
                {k: v for k, v in baseline.items() if k != "report"}}

    def trust_section(self) -> dict[str, Any]:
        out: list[dict[str, Any]] = []
        for cr in self.current:
            opts = _loads(cr.get("options"), None)
            entry: dict[str, Any] = {"crawl_id": cr["id"], "target": cr["target"],
                                     "verify_fingerprint": cr.get("verify_fingerprint")}
            entry["verified"] = isinstance(opts, dict)
            entry["note"] = "" if isinstance(opts, dict) else (
                "crawled without trust options: signatures were recorded but not verified "
                "and no policy was evaluated")
            opts = opts if isinstance(opts, dict) else {}
            for key in TRUST_KEYS:
                entry[key] = opts.get(key)
            entry.update(_trust_material(opts))
            out.append(entry)
        return {"crawls": out,
                "note": "Signatures and ML-BOM attestations count as verified only when "
                        "they verified against this trust material during the crawl."}

    # -------------------------------------------------------------- kits
    def _kit_signed(self, digest: str) -> list[dict[str, Any]]:
        return [s for s in self.signatures.get(digest, [])
                if s["verified"] and not s["attestation"]]

    def _sbom_state(self, digest: str) -> dict[str, Any]:
        s = self.sboms.get(digest)
        kit = self.kits[digest]
        if s is None:
            return {"present": bool(kit.get("sbom_present")), "verified": False,
                    "matches_manifest": None, "valid": False, "completeness": None,
                    "spec_version": None, "digest": None}
        verified = bool(s["verified"])
        matches = None if s["matches_manifest"] is None else bool(s["matches_manifest"])
        return {"present": True, "verified": verified, "matches_manifest": matches,
                "valid": verified and matches is True,
                "completeness": s["completeness"], "spec_version": s["spec_version"],
                "digest": s["attestation_digest"] or s["referrer_digest"] or None,
                "mismatches": _loads(s["mismatches"], [])}

    def _policy_state(self, digest: str) -> dict[str, dict[str, Any]]:
        if digest not in self._states:
            self._states[digest] = self._compute_policy_state(digest)
        return self._states[digest]

    def _compute_policy_state(self, digest: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for r in self.results.get(digest, []):
            p = out.setdefault(r["policy"], {"status": "pass", "counts": Counter()})
            p["counts"][r["status"]] += 1
        for p in out.values():
            counts = p["counts"]
            p["status"] = "deny" if counts["fail"] or counts["error"] else \
                "warn" if counts["warn"] else "pass"
            p["counts"] = {s: counts.get(s, 0) for s in STATUSES}
        return out

    def inventory_section(self) -> list[dict[str, Any]]:
        users: dict[str, set[str]] = defaultdict(set)
        for d, rows in self.datasets.items():
            for ds in rows:
                key = ds["layer_digest"] or ds["remote_path"] or ""
                if key:
                    users[key].add(d)
        out = []
        for d in self._order():
            kit = self.kits[d]
            sigs = self._kit_signed(d)
            sbom = self._sbom_state(d)
            licences, lic_source = self._licences(d)
            bases = []
            seen: set[str] = set()
            for e in self.edges_of.get(d, []):
                key = e["parent_digest"] or e["parent_reference"]
                if key in seen:
                    continue
                seen.add(key)
                bases.append({"reference": e["parent_reference"], "digest": e["parent_digest"],
                              "name": e["parent_name"], "source": e["source"],
                              "depth": e["depth"], "in_scope": e["parent_digest"] in self.kits,
                              "verified": None if e.get("verified") is None
                              else bool(e["verified"])})
            datasets = [{"name": ds["name"], "path": ds["path"], "license": ds["license"],
                         "layer_digest": ds["layer_digest"], "remote_path": ds["remote_path"],
                         "shared_with": len(users.get(ds["layer_digest"] or
                                                      ds["remote_path"] or "", set()) - {d})}
                        for ds in self.datasets.get(d, [])]
            out.append({
                "digest": d, "repository": kit["repository"], "tags": kit["tags"],
                "name": kit.get("package_name") or kit.get("model_name") or "",
                "version": kit.get("package_version") or "",
                "description": kit.get("package_description") or "",
                "format": kit.get("format"), "created": kit.get("created"),
                "signed": bool(sigs),
                "signers": [{"kind": s["kind"], "identity": s["identity"],
                             "issuer": s["issuer"], "key_id": s["key_id"],
                             "source": s["source"], "text": _signer_text(s)} for s in sigs],
                "unverified_signatures": sum(1 for s in self.signatures.get(d, [])
                                             if not s["verified"]),
                "licenses": licences, "licenses_source": lic_source,
                "base_models": bases, "datasets": datasets, "sbom": sbom,
                "decision": kit.get("decision"), "verify_error": kit.get("verify_error"),
                "policies": self._policy_state(d),
                "first_seen_crawl": kit.get("first_seen_crawl"),
                "last_seen_crawl": kit.get("last_seen_crawl"),
            })
        return out

    def _order(self) -> list[str]:
        return sorted(self.kits, key=lambda d: (self.kits[d]["repository"] or "",
                                                self.kits[d]["tags"], d))

    def _licences(self, digest: str) -> tuple[list[str], str]:
        s = self.sboms.get(digest)
        if s is not None and s["verified"]:
            return sorted(set(_loads(s["licenses"], []))), "mlbom"
        kit = self.kits[digest]
        found = {kit.get("package_license"), kit.get("model_license"),
                 *(ds["license"] for ds in self.datasets.get(digest, []))}
        return sorted(x for x in found if x), "kitfile"

    # -------------------------------------------------------------- controls
    def controls_section(self, policy_meta: dict[str, Any]) -> list[dict[str, Any]]:
        by_rule: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for rows in self.results.values():
            for r in rows:
                by_rule[(r["policy"], r["rule"])].append(r)
        meta = {(p["name"], r["id"]): r for p in policy_meta["policies"] for r in p["rules"]}
        order = list(self.rule_order) + sorted(k for k in by_rule if k not in self.rule_order)
        out = []
        for key in order:
            rows = by_rule.get(key, [])
            m = meta.get(key) or {}
            first = rows[0] if rows else {}
            counts = Counter(r["status"] for r in rows)
            controls = m.get("controls") or first.get("controls") or []
            entry = {
                "policy": key[0], "rule": key[1],
                "description": m.get("description") or first.get("description") or "",
                "severity": m.get("severity") or first.get("severity") or "",
                "remediation": " ".join((m.get("remediation") or
                                         first.get("remediation") or "").split()),
                "controls": [{"framework": c.get("framework"),
                              "framework_name": FRAMEWORKS.get(c.get("framework", ""),
                                                               c.get("framework")),
                              "ref": c.get("ref")} for c in controls],
                "counts": {s: counts.get(s, 0) for s in STATUSES},
                "evaluated": len(rows),
                "failing": [self._subject(r) for r in sorted(
                    rows, key=lambda r: (self.kits[r["subject_digest"]]["repository"] or "",
                                         r["subject_digest"]))
                    if r["status"] in ("fail", "error", "warn")],
                "waived": [self._subject(r) for r in rows if r["status"] == "waived"],
            }
            out.append(entry)
        return out

    def _subject(self, r: dict[str, Any]) -> dict[str, Any]:
        kit = self.kits[r["subject_digest"]]
        out = {"digest": r["subject_digest"], "repository": kit["repository"],
               "tags": kit["tags"], "name": kit.get("package_name") or "",
               "status": r["status"], "reason": r["reason"] or ""}
        if r.get("waiver"):
            w = r["waiver"]
            out["waiver"] = {"owner": w.get("owner"), "expires": w.get("expires"),
                             "reason": w.get("reason")}
        return out

    # -------------------------------------------------------------- changes
    def _violations_now(self) -> set[tuple[str, str, str]]:
        return {(d, r["policy"], r["rule"]) for d, rows in self.results.items()
                for r in rows if r["status"] in VIOLATION}

    def _violations_at(self, cutoff: int) -> set[tuple[str, str, str]]:
        """The violations in scope as they stood after crawl ``cutoff``: exact from
        ``policy_history`` (each rule's status from the crawl it changed in); a database
        without it keeps only the current and the previous status."""
        out: set[tuple[str, str, str]] = set()
        if "policy_history" in self.tables:
            keys = sorted(self.kits)
            latest: dict[tuple[str, str, str], tuple[int, str | None]] = {}
            for r in _rows(self.conn, "SELECT subject_digest, policy, rule, crawl_id, status "
                                      "FROM policy_history WHERE subject_digest IN ({in})",
                           keys):
                key = (r["subject_digest"], r["policy"], r["rule"])
                if r["crawl_id"] <= cutoff and r["crawl_id"] >= latest.get(key, (-1, None))[0]:
                    latest[key] = (r["crawl_id"], r["status"])
            for key, (_cid, status) in latest.items():
                if status in VIOLATION:
                    out.add(key)
            return out
        for d, rows in self.results.items():
            for r in rows:
                changed = r["changed_crawl"] or 0
                was = r["status"] if changed <= cutoff else r["previous_status"]
                if was in VIOLATION:
                    out.add((d, r["policy"], r["rule"]))
        if any(r["changed_crawl"] and r["changed_crawl"] > cutoff + 1
               for rows in self.results.values() for r in rows):
            self.not_recorded.append(
                "policy results keep only the current and the previous status (a database "
                "older than schema version 4): a rule that changed more than once since the "
                "baseline crawl is compared with its status before the last change")
        return out

    def changes_section(self, baseline: dict[str, Any] | None) -> dict[str, Any]:
        empty: dict[str, Any] = {"baseline": None, "new": [], "removed": [], "retagged": [],
                                 "tags_added": [], "tags_removed": [], "newly_failing": [],
                                 "newly_passing": [], "note": ""}
        if baseline is None:
            empty["note"] = "no comparison asked for (--since)"
            return empty
        empty["baseline"] = {k: v for k, v in baseline.items() if k != "report"}
        if baseline["kind"] == "none":
            empty["note"] = ("no previous complete crawl to compare with: this is the first "
                             "report of these targets")
            return empty
        now_tags = {(t["repository"], t["tag"]): t["digest"] for t in self.tags
                    if t["digest"] in self.kits}
        if baseline["kind"] == "report":
            prev = baseline["report"]
            then_tags: dict[tuple[str, str], str] = {}
            then_kits: dict[str, dict[str, Any]] = {}
            for item in prev.get("inventory", []):
                then_kits[item["digest"]] = item
                for ref in item.get("tags", []):
                    repo, _, tag = ref.rpartition(":")
                    then_tags[(repo, tag)] = item["digest"]
            then_violations = {(f["digest"], c["policy"], c["rule"])
                               for c in prev.get("controls", [])
                               for f in c.get("failing", []) if f.get("status") in VIOLATION}
        else:
            ids = baseline["crawl_ids"]
            then_tags = {(r["repository"], r["tag"]): r["digest"] for r in _rows(
                self.conn, "SELECT h.repository, h.tag, h.digest FROM tag_history h "
                           "JOIN manifests m ON m.digest = h.digest AND m.kind = 'modelkit' "
                           "WHERE h.crawl_id IN ({in})", ids) if self._repo_ok(r["repository"])}
            then_kits = {}
            then_violations = self._violations_at(max(ids))
        then_digests = set(then_tags.values()) | set(then_kits)
        now_digests = set(self.kits)
        changes: dict[str, Any] = dict(empty)
        changes["new"] = [self._kit_brief(d) for d in self._order() if d not in then_digests]
        removed = sorted(then_digests - now_digests)
        changes["removed"] = [self._removed_brief(d, then_tags, then_kits) for d in removed]
        changes["retagged"] = [
            {"repository": repo, "tag": tag, "from": then_tags[(repo, tag)], "to": dg}
            for (repo, tag), dg in sorted(now_tags.items())
            if (repo, tag) in then_tags and then_tags[(repo, tag)] != dg]
        changes["tags_added"] = [{"repository": r, "tag": t, "digest": dg}
                                 for (r, t), dg in sorted(now_tags.items())
                                 if (r, t) not in then_tags]
        changes["tags_removed"] = [{"repository": r, "tag": t, "digest": dg}
                                   for (r, t), dg in sorted(then_tags.items())
                                   if (r, t) not in now_tags]
        now_v = self._violations_now()
        res = {(d, r["policy"], r["rule"]): r for d, rows in self.results.items() for r in rows}
        changes["newly_failing"] = [
            {**self._subject(res[k]), "policy": k[1], "rule": k[2],
             "new_modelkit": k[0] not in then_digests}
            for k in sorted(now_v - then_violations)]
        changes["newly_passing"] = [
            {**self._subject(res[k]), "policy": k[1], "rule": k[2]}
            for k in sorted(then_violations - now_v) if k in res]
        return changes

    def _kit_brief(self, d: str) -> dict[str, Any]:
        kit = self.kits[d]
        return {"digest": d, "repository": kit["repository"], "tags": kit["tags"],
                "name": kit.get("package_name") or "", "signed": bool(self._kit_signed(d))}

    def _removed_brief(self, d: str, then_tags: dict[tuple[str, str], str],
                       then_kits: dict[str, dict[str, Any]]) -> dict[str, Any]:
        tags = sorted(f"{r}:{t}" for (r, t), dg in then_tags.items() if dg == d)
        name = (then_kits.get(d) or {}).get("name") or ""
        if not name:
            row = self.conn.execute("SELECT package_name FROM kitfiles WHERE "
                                    "manifest_digest = ?", (d,)).fetchone()
            name = row[0] if row and row[0] else ""
        repo = tags[0].rpartition(":")[0] if tags else (then_kits.get(d) or {}).get(
            "repository", "")
        return {"digest": d, "repository": repo, "tags": tags, "name": name}

    # -------------------------------------------------------------- summary
    def summary_section(self, policy_meta: dict[str, Any],
                        changes: dict[str, Any]) -> dict[str, Any]:
        n = len(self.kits)
        signed = sum(1 for d in self.kits if self._kit_signed(d))
        sb = [self._sbom_state(d) for d in self.kits]
        per_policy = []
        for p in policy_meta["policies"]:
            states = Counter()
            for d in self.kits:
                st = self._policy_state(d).get(p["name"])
                states[st["status"] if st else "not-evaluated"] += 1
            per_policy.append({"policy": p["name"], "pass": states["pass"],
                               "warn": states["warn"], "deny": states["deny"],
                               "not_evaluated": states["not-evaluated"],
                               "passing": states["pass"] + states["warn"]})
        statuses = Counter(r["status"] for rows in self.results.values() for r in rows)
        has_baseline = changes.get("baseline") is not None and \
            changes["baseline"].get("kind") != "none"
        errors = self._errors()
        return {
            "modelkits": n, "repositories": len(self.repos), "tags": len(self.tags),
            "signed": signed, "unsigned": n - signed,
            "signed_share": round(signed / n, 4) if n else None,
            "sbom_present": sum(1 for s in sb if s["present"]),
            "sbom_signed": sum(1 for s in sb if s["verified"]),
            "sbom_valid": sum(1 for s in sb if s["valid"]),
            "policies": per_policy,
            "violations": statuses["fail"] + statuses["error"],
            "warnings": statuses["warn"], "waived": statuses["waived"],
            "modelkits_with_violations": sum(
                1 for rows in self.results.values()
                if any(r["status"] in VIOLATION for r in rows)),
            "new_violations": len(changes["newly_failing"]) if has_baseline else None,
            "resolved_violations": len(changes["newly_passing"]) if has_baseline else None,
            "new_modelkits": len(changes["new"]) if has_baseline else None,
            "crawl_errors": len(errors),
        }

    # -------------------------------------------------------------- waivers
    def waivers_section(self, path: str | Path | None) -> list[dict[str, Any]]:
        found: dict[tuple[Any, ...], dict[str, Any]] = {}

        def key(w: dict[str, Any]) -> tuple[Any, ...]:
            return (w.get("rule"), w.get("policy"), w.get("repository"), w.get("digest"),
                    str(w.get("expires")))

        def entry(w: dict[str, Any]) -> dict[str, Any]:
            k = key(w)
            if k not in found:
                found[k] = {"rule": w.get("rule"), "policy": w.get("policy"),
                            "repository": w.get("repository"), "digest": w.get("digest"),
                            "reason": w.get("reason") or "", "owner": w.get("owner") or "",
                            "expires": str(w.get("expires") or ""),
                            "applied_to": [], "expired_for": []}
            return found[k]

        if path is not None:
            from kitaudit.policy import load_waivers

            for w in load_waivers(path):
                entry(w.to_dict())
        for d, rows in self.results.items():
            for r in rows:
                if r.get("waiver"):
                    entry(r["waiver"])["applied_to"].append(
                        {"digest": d, "policy": r["policy"], "rule": r["rule"]})
                for w in r.get("expired_waivers") or []:
                    entry(w)["expired_for"].append(
                        {"digest": d, "policy": r["policy"], "rule": r["rule"]})
        today = self.now.date()
        out = []
        for w in found.values():
            try:
                exp = date.fromisoformat(w["expires"])
            except ValueError:
                exp = None
            if exp is None:
                w["status"], w["days_left"] = "unknown", None
            else:
                days = (exp - today).days
                w["days_left"] = days
                w["status"] = "expired" if days < 0 else \
                    "expiring" if days <= self.expiring_days else "active"
            out.append(w)
        out.sort(key=lambda w: (w["expires"], w["rule"] or ""))
        return out

    # -------------------------------------------------------------- lineage
    def lineage_section(self) -> dict[str, Any]:
        nodes: dict[str, dict[str, Any]] = {}
        edges = []
        for d in self._order():
            kit = self.kits[d]
            label = kit.get("package_name") or (kit["tags"][0] if kit["tags"] else d[:19])
            nodes[d] = {"id": d, "label": label, "digest": d, "tags": kit["tags"],
                        "kind": "modelkit", "signed": bool(self._kit_signed(d)),
                        "violations": sum(1 for r in self.results.get(d, [])
                                          if r["status"] in VIOLATION)}
        seen: set[tuple[str, str]] = set()
        for e in self.edges:
            parent = e["parent_digest"] or e["parent_reference"] or ""
            if not parent or (parent, e["child_digest"]) in seen:
                continue
            if (e["depth"] or 1) != 1:
                continue  # only direct edges; the chain follows from them
            seen.add((parent, e["child_digest"]))
            if parent not in nodes:
                row = None
                if e["parent_digest"]:
                    row = self.conn.execute(
                        "SELECT m.repository, k.package_name FROM manifests m LEFT JOIN "
                        "kitfiles k ON k.manifest_digest = m.digest WHERE m.digest = ?",
                        (e["parent_digest"],)).fetchone()
                nodes[parent] = {
                    "id": parent, "label": (row[1] if row and row[1] else None)
                    or e["parent_name"] or e["parent_reference"] or parent[:19],
                    "digest": e["parent_digest"], "tags": [],
                    "reference": e["parent_reference"],
                    "kind": "external" if row is None else "out-of-scope",
                    "signed": None, "violations": None}
            edges.append({"from": parent, "to": e["child_digest"], "source": e["source"],
                          "reference": e["parent_reference"],
                          "resolved": bool(e["parent_digest"])})
        # dataset sharing: which ModelKits share a dataset layer
        shared: dict[str, list[str]] = defaultdict(list)
        names: dict[str, str] = {}
        for d, rows in self.datasets.items():
            for ds in rows:
                k = ds["layer_digest"] or ds["remote_path"]
                if k:
                    shared[k].append(d)
                    names.setdefault(k, ds["name"] or ds["path"] or k[:19])
        return {"nodes": list(nodes.values()), "edges": edges,
                "shared_datasets": [{"key": k, "name": names[k], "modelkits": sorted(set(v))}
                                    for k, v in sorted(shared.items()) if len(set(v)) > 1]}

    # -------------------------------------------------------------- charts
    def charts_section(self) -> dict[str, Any]:
        targets = {cr["target"] for cr in self.current}
        crawls = [cr for cr in self.crawls if cr["target"] in targets
                  and cr["status"] == "complete"]
        # tag_history.signed is the ModelKit's signed state at that crawl (exact);
        # without it, signatures.first_seen_crawl; else today's signatures (approximate)
        snapshot = "signed" in _columns(self.conn, "tag_history")
        has_first_seen = "first_seen_crawl" in self.sig_cols
        snap_col = "h.signed" if snapshot else "NULL AS signed"
        series = []
        for cr in crawls[-60:]:
            at_crawl: dict[str, Any] = {}
            for r in self.conn.execute(
                    f"SELECT h.repository, h.digest, {snap_col} FROM tag_history h "  # noqa: S608
                    "JOIN manifests m ON m.digest = h.digest "
                    "WHERE h.crawl_id = ? AND m.kind = 'modelkit'", (cr["id"],)):
                if self._repo_ok(r["repository"]):
                    prev = at_crawl.get(r["digest"])
                    at_crawl[r["digest"]] = r["signed"] if prev is None else \
                        max(prev, r["signed"] or 0)
            if not at_crawl:
                continue
            if all(v is not None for v in at_crawl.values()):
                signed, exact = sum(1 for v in at_crawl.values() if v), True
            else:
                cols = "subject_digest, first_seen_crawl" if has_first_seen else \
                    "subject_digest, 0 AS first_seen_crawl"
                rows = _rows(self.conn, f"SELECT {cols} FROM signatures WHERE "  # noqa: S608
                             "verified = 1 AND attestation = 0 AND subject_digest IN ({in})",
                             sorted(at_crawl))
                signed = len({r[0] for r in rows if (r[1] or 0) <= cr["id"]})
                exact = has_first_seen or cr["id"] in self.current_ids
            series.append({"crawl_id": cr["id"], "at": cr["finished_at"] or cr["started_at"],
                           "modelkits": len(at_crawl), "signed": signed,
                           "coverage": round(signed / len(at_crawl), 4), "exact": exact})
        if any(not p["exact"] for p in series):
            self.not_recorded.append(
                "signing coverage of earlier crawls: the database does not record the signed "
                "state at those crawls, so they count today's signatures over the ModelKits "
                "tagged then (marked approximate)")
        return {"signing_coverage": series, "violations_by_rule": self._rule_counts()}

    def _rule_counts(self) -> list[dict[str, Any]]:
        counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        for rows in self.results.values():
            for r in rows:
                counts[(r["policy"], r["rule"])][r["status"]] += 1
        out = [{"policy": p, "rule": r, "fail": c["fail"], "error": c["error"],
                "warn": c["warn"], "waived": c["waived"]}
               for (p, r), c in counts.items()
               if c["fail"] or c["error"] or c["warn"] or c["waived"]]
        out.sort(key=lambda x: (-(x["fail"] + x["error"]), -x["warn"], x["policy"], x["rule"]))
        return out

    # -------------------------------------------------------------- errors
    def _errors(self) -> list[dict[str, Any]]:
        if not hasattr(self, "_err_cache"):
            ids = sorted(self.current_ids)
            self._err_cache = [
                {k: r[k] for k in ("crawl_id", "repository", "reference", "digest", "stage",
                                   "status", "error_type", "message", "at")}
                for r in _rows(self.conn, "SELECT * FROM errors WHERE crawl_id IN ({in}) "
                                          "ORDER BY id", ids)
                if r["repository"] is None or self._repo_ok(r["repository"])]
        return self._err_cache

    def errors_section(self) -> list[dict[str, Any]]:
        return self._errors()

