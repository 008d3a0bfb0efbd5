"""Crawl a registry, the local store or an OCI layout into the audit database.

One pass, per repository (in a thread pool of ``concurrency`` workers):

1. list the tags (``Link`` pagination); tags ``sha256-<hex>`` (referrers fallback index)
   and ``sha256-<hex>.sig``/``.att`` (cosign's legacy tags) are the referrers of that
   subject, not tags of their own;
2. resolve each tag to a digest: a tag seen before is checked with ``HEAD`` (cheap), a
   new one is fetched with ``GET`` (which gives the digest too);
3. every digest not fully recorded yet is read: manifest, config (Kitfile), layers,
   referrers (referrers API or fallback index, legacy tags; Sigstore bundle and
   CycloneDX layers fetched), the ML-BOM facts, then verification and the policies
   through :mod:`kitaudit.audit._verify`. A digest already recorded is read again only
   when its referrers changed (the fallback tag or a legacy tag points elsewhere, or the
   referrers API lists other digests) or the trust options/policies changed;
4. the repository's tags and this crawl's tag history are written and committed.

All database writes happen on the calling thread (SQLite has one writer); workers only
fetch and verify. A failing repository or manifest (HTTP 500 after retries, 401,
malformed JSON, a digest that does not match) becomes a row in ``errors`` and the crawl
goes on. A crawl interrupted at any point (crash, ^C, kill) is resumed by the next crawl
of the same target and shard: repositories it finished are skipped, manifests it
recorded are not fetched again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import queue
import re
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kitaudit import mediatypes as mt
from kitaudit.audit._verify import Outcome, Verifier, dumps
from kitaudit.audit.schema import now_iso, open_db
from kitaudit.audit.sources import BLOB_LIMIT, FetchedManifest, Source, open_source
from kitaudit.errors import KitauditError, UsageError

log = logging.getLogger("kitaudit.audit")

MAX_REFERRERS = 100
MAX_LEGACY_LAYERS = 50
COMMIT_EVERY = 200          # records between commits inside a large repository
FETCHED_TYPES = (mt.SIGSTORE_BUNDLE_V03, mt.CYCLONEDX_JSON)
_REFERRER_TAG = re.compile(r"^sha256-([0-9a-f]{64})(?:\.(sig|att|sbom))?$")


# ---------------------------------------------------------------------- results
@dataclass
class CrawlStats:
    """The counts of one crawl (also its row in ``crawls``)."""

    crawl_id: int = 0
    run_id: str = ""
    target: str = ""
    shard: str | None = None
    status: str = "running"
    started_at: str = ""
    finished_at: str | None = None
    resumed: int = 0
    repositories: int = 0
    repositories_total: int = 0
    tags: int = 0
    manifests: int = 0
    manifests_new: int = 0
    modelkits: int = 0
    other_artifacts: int = 0
    referrers: int = 0
    signatures: int = 0
    unchanged: int = 0
    errors: int = 0
    reevaluated: int = 0        # descendants verified again: a base model's signatures changed
    requests: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Record:
    """Everything read about one manifest, ready to be written."""

    repository: str
    digest: str
    reference: str
    kind: str = "other"                 # modelkit | index | referrer | other | error
    format: str | None = None
    media_type: str | None = None
    artifact_type: str | None = None
    size: int = 0
    manifest: dict[str, Any] = field(default_factory=dict)
    config_digest: str | None = None
    config_media_type: str | None = None
    kitfile: Any = None
    layers: list[dict[str, Any]] = field(default_factory=list)
    referrers: list[dict[str, Any]] = field(default_factory=list)   # descriptor rows
    fetched: list[Any] = field(default_factory=list)                 # for verify
    sbom_facts: dict[str, Any] | None = None
    sbom_referrer: str | None = None
    referrers_fingerprint: str | None = None
    # every repository whose referrers were read: repository -> (fingerprint, count)
    sources: dict[str, tuple[str | None, int]] = field(default_factory=dict)
    outcome: Outcome = field(default_factory=Outcome)
    errors: list[tuple[str, Exception]] = field(default_factory=list)


@dataclass
class _Repo:
    name: str
    tags: list[str] = field(default_factory=list)
    ref_tags: dict[str, list[str]] = field(default_factory=dict)   # subject → tags
    digests: dict[str, str | None] = field(default_factory=dict)   # tag → digest
    fetched: dict[str, FetchedManifest] = field(default_factory=dict)
    outstanding: int = 0
    listed: bool = False
    failed: bool = False
    unchanged: list[str] = field(default_factory=list)
    failed_digests: set[str] = field(default_factory=set)


# ---------------------------------------------------------------------- helpers
def shard_of(repository: str, n: int) -> int:
    """The stable shard (0..n-1) of a repository: sha256 of its full name, mod ``n``."""
    return int(hashlib.sha256(repository.encode()).hexdigest()[:16], 16) % n


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` → (I, N), 0 ≤ I < N."""
    if not text:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise UsageError(f"--shard {text!r} is not I/N with 0 <= I < N",
                         fix="e.g. --shard 0/4 (with a Kubernetes Indexed Job: "
                             "--shard $JOB_COMPLETION_INDEX/4)")
    return int(m.group(1)), int(m.group(2))


def _status_of(err: BaseException) -> int | None:
    status = getattr(err, "status", None)
    return int(status) if isinstance(status, int) else None


def _fp(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:32]


@contextlib.contextmanager
def _db_lock(db_path: Path) -> Iterator[None]:
    lock_path = db_path.with_name(db_path.name + ".crawl-lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise KitauditError(f"another crawl is writing {db_path}",
                                fix="wait for it to finish, or crawl into another --db "
                                    "and merge") from None
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- workers
def _fetch_referrer(source: Source, repo: str, desc: dict[str, Any], *, legacy: bool,
                    fm: FetchedManifest | None = None) -> tuple[dict[str, Any],
                                                                 dict[str, bytes]]:
    """A referrer's manifest and the blobs verification needs (the bundle or BOM layer;
    every layer of a legacy tag manifest)."""
    fm = fm or source.manifest(repo, desc["digest"])
    doc = fm.data()
    layers = [d for d in doc.get("layers") or [] if isinstance(d, dict)]
    wanted = layers[:MAX_LEGACY_LAYERS] if legacy else \
        [d for d in layers if d.get("mediaType") in FETCHED_TYPES][:1]
    blobs: dict[str, bytes] = {}
    for layer in wanted:
        digest = layer.get("digest")
        if isinstance(digest, str) and int(layer.get("size") or 0) <= BLOB_LIMIT:
            blobs[digest] = source.blob(repo, digest)
    return doc, blobs


def _referrer_row(desc: dict[str, Any], doc: dict[str, Any], source_name: str,
                  repo: str) -> dict[str, Any]:
    ann = {**(doc.get("annotations") or {}), **(desc.get("annotations") or {})}
    predicate = ann.get(mt.ANN_BUNDLE_PREDICATE) or ann.get("predicateType")
    if not predicate:
        for layer in doc.get("layers") or []:
            p = (layer.get("annotations") or {}).get("predicateType")
            if p:
                predicate = p
                break
    return {
        "digest": desc["digest"], "repository": repo,
        "artifact_type": desc.get("artifactType") or doc.get("artifactType")
        or (doc.get("config") or {}).get("mediaType"),
        "media_type": desc.get("mediaType") or doc.get("mediaType"),
        "size": int(desc.get("size") or 0), "source": source_name,
        "predicate_type": predicate, "created": ann.get(mt.ANN_CREATED),
        "annotations": dumps(ann) if ann else None,
    }


def _list_referrers(source: Source, repo: str, digest: str, ref_tags: list[str],
                    tag_digests: dict[str, str | None]) -> tuple[
                        list[tuple[dict[str, Any], bool, str, FetchedManifest | None]], str]:
    """(referrer descriptors with legacy flag and source, fingerprint of the set)."""
    hexpart = digest.split(":", 1)[1]
    out: list[tuple[dict[str, Any], bool, str, FetchedManifest | None]] = []
    fp_parts: list[Any] = []
    if source.has_referrers_api:
        descs = source.referrers(repo, digest)
        name = "referrer"
        for d in descs:
            if isinstance(d, dict) and isinstance(d.get("digest"), str):
                out.append((d, False, name, None))
        fp_parts.append(sorted(d["digest"] for d, *_ in out))
    else:
        tag = f"sha256-{hexpart}"
        if tag in ref_tags:
            index = source.manifest(repo, tag)
            fp_parts.append([tag, index.digest])
            doc = index.data()
            if not isinstance(doc.get("manifests"), list):
                raise KitauditError(f"tag {tag} in {repo} is not an image index",
                                    fix="something else uses the referrers fallback tag")
            for d in doc["manifests"]:
                if isinstance(d, dict) and isinstance(d.get("digest"), str):
                    out.append((d, False, "fallback-tag", None))
    for suffix in ("sig", "att"):
        tag = f"sha256-{hexpart}.{suffix}"
        if tag in ref_tags:
            fm = source.manifest(repo, tag)
            fp_parts.append([tag, fm.digest])
            desc = {"mediaType": fm.media_type, "digest": fm.digest, "size": len(fm.raw),
                    "tag": tag}
            out.append((desc, True, "legacy-tag", fm))
    return out, _fp(fp_parts)


def _referrers_fingerprint_cheap(source: Source, repo: str, digest: str,
                                 ref_tags: list[str],
                                 tag_digests: dict[str, str | None]) -> str | None:
    """The fingerprint from what is already known (fallback mode: the referrer tags'
    digests from HEAD); None when a request is needed (referrers API)."""
    if source.has_referrers_api and source.kind == "registry":
        return None
    hexpart = digest.split(":", 1)[1]
    parts: list[Any] = []
    if source.has_referrers_api:
        parts.append(sorted(d["digest"] for d in source.referrers(repo, digest)
                            if isinstance(d, dict) and isinstance(d.get("digest"), str)))
    else:
        tag = f"sha256-{hexpart}"
        if tag in ref_tags:
            if tag_digests.get(tag) is None:
                return "?"
            parts.append([tag, tag_digests[tag]])
    for suffix in ("sig", "att"):
        tag = f"sha256-{hexpart}.{suffix}"
        if tag in ref_tags:
            if tag_digests.get(tag) is None:
                return "?"
            parts.append([tag, tag_digests[tag]])
    return _fp(parts)


Copy = tuple[str, list[str], dict[str, str | None]]   # repository, referrer tags, tags


def _read_manifest(source: Source, verifier: Verifier, repo: str, digest: str,
                   reference: str, fetched: FetchedManifest | None,
                   ref_tags: list[str], tag_digests: dict[str, str | None],
                   copies: list[Copy] | None = None) -> _Record:
    """Worker: read everything about one manifest (never raises for content problems;
    they are recorded in ``errors``). ``copies``: other repositories holding the same
    digest whose referrers count too (their union is verified)."""
    rec = _Record(repository=repo, digest=digest, reference=reference)
    try:
        fm = fetched or source.manifest(repo, digest)
        if fm.digest != digest:
            raise KitauditError(f"{reference} now points to {fm.digest}, not {digest}")
        doc = fm.data()
    except Exception as err:
        rec.kind = "error"
        rec.errors.append(("manifest", err))
        return rec
    rec.manifest = doc
    rec.size = len(fm.raw)
    rec.media_type = fm.media_type
    rec.artifact_type = doc.get("artifactType")
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    rec.config_digest = config.get("digest")
    rec.config_media_type = config.get("mediaType")
    if "manifests" in doc and "layers" not in doc:
        rec.kind = "index"
        return rec
    from kitaudit import modelkit

    if not modelkit.is_modelkit(doc):
        rec.kind = "referrer" if isinstance(doc.get("subject"), dict) else "other"
        return rec
    rec.kind = "modelkit"
    rec.format = "modelpack" if (rec.config_media_type == mt.MODELPACK_CONFIG or
                                 rec.artifact_type == mt.MODELPACK_ARTIFACT_TYPE) else "kitops"
    config_bytes = b"{}"
    try:
        if rec.config_digest:
            config_bytes = source.blob(repo, rec.config_digest, 4 << 20)
        rec.kitfile, rec.format = modelkit.kitfile_from_config(doc, config_bytes)
    except Exception as err:
        rec.errors.append(("kitfile", err))
    try:
        mapped = {id(le.descriptor): le for le in modelkit.map_layers(doc, rec.kitfile)}
    except Exception:
        mapped = {}
    for i, desc in enumerate(doc.get("layers") or []):
        if not isinstance(desc, dict):
            continue
        le = mapped.get(id(desc))
        rec.layers.append({"position": i, "digest": desc.get("digest"),
                           "media_type": desc.get("mediaType"),
                           "size": int(desc.get("size") or 0),
                           "kind": le.kind if le else None,
                           "path": le.path if le else
                           (desc.get("annotations") or {}).get(mt.ANN_FILEPATH)})
    # referrers
    found: list[tuple[dict[str, Any], bool, str, FetchedManifest | None, str]] = []
    for where, rtags, tdigests in [(repo, ref_tags, tag_digests), *(copies or [])]:
        try:
            listed, fp = _list_referrers(source, where, digest, rtags, tdigests)
        except Exception as err:
            rec.errors.append(("referrers", err))
            continue
        if where == repo:
            rec.referrers_fingerprint = fp
        rec.sources[where] = (fp, len(listed))
        seen = {d["digest"] for d, *_ in found}
        found.extend((d, legacy, name, fm_r, where) for d, legacy, name, fm_r in listed
                     if d["digest"] not in seen)   # the same referrer copied along: once
    bom: dict[str, Any] | None = None
    for desc, legacy, source_name, fm_ref, from_repo in found[:MAX_REFERRERS]:
        at = desc.get("artifactType")
        wanted = legacy or at in FETCHED_TYPES or not at
        if not verifier.enabled and (legacy or at == mt.SIGSTORE_BUNDLE_V03):
            wanted = False  # nothing to verify with: the descriptor says enough
        doc_r: dict[str, Any] = {}
        if wanted:
            try:
                doc_r, blobs = _fetch_referrer(source, from_repo, desc, legacy=legacy,
                                               fm=fm_ref)
            except Exception as err:
                rec.errors.append(("referrer", err))
                continue
            if verifier.enabled:
                rec.fetched.append(verifier.fetched_referrer(desc, doc_r, blobs,
                                                             legacy=legacy,
                                                             source=source_name))
            rtype = at or doc_r.get("artifactType")
            if rtype == mt.CYCLONEDX_JSON and bom is None:
                for data in blobs.values():
                    try:
                        parsed = json.loads(data)
                    except ValueError:
                        continue
                    if isinstance(parsed, dict):
                        bom = parsed
                        rec.sbom_referrer = desc["digest"]
                        break
        if legacy and fm_ref is not None and not doc_r:
            doc_r = fm_ref.data()
        rec.referrers.append({**_referrer_row(desc, doc_r, source_name, from_repo),
                              "_bundle": bool(legacy or (at or doc_r.get("artifactType"))
                                              == mt.SIGSTORE_BUNDLE_V03),
                              "_legacy_kind": (desc.get("tag") or "").rsplit(".", 1)[-1]
                              if legacy else None})
    if bom is not None:
        try:
            from kitaudit import mlbom

            rec.sbom_facts = mlbom.facts(bom)
        except Exception as err:
            rec.errors.append(("sbom", err))
    if verifier.enabled:
        try:
            rec.outcome = verifier.verify(
                reference=reference, digest=digest, manifest=fm.raw,
                config_bytes=config_bytes, referrers=rec.fetched,
                referrers_api=source.has_referrers_api and source.kind == "registry")
        except Exception as err:
            rec.outcome = Outcome(error=f"{type(err).__name__}: {err}")
        if rec.outcome.error:
            rec.errors.append(("verify", KitauditError(rec.outcome.error)))
    rec.fetched = []  # blobs are not kept
    return rec


# ---------------------------------------------------------------------- writer
class _Writer:
    """Writes records on the calling thread."""

    def __init__(self, conn: sqlite3.Connection, crawl_id: int, stats: CrawlStats) -> None:
        self.conn = conn
        self.crawl_id = crawl_id
        self.stats = stats
        self.pending = 0
        # ModelKits whose verified signatures differ from what was recorded before (or
        # that are new): their descendants' base-model results may be stale
        self.trust_changed: set[str] = set()

    def error(self, *, repository: str | None, reference: str | None, digest: str | None,
              stage: str, err: BaseException) -> None:
        msg = str(err).splitlines()[0][:500] if str(err) else type(err).__name__
        self.conn.execute(
            "INSERT INTO errors (crawl_id, repository, reference, digest, stage, status, "
            "error_type, message, at) VALUES (?,?,?,?,?,?,?,?,?)",
            (self.crawl_id, repository, reference, digest, stage, _status_of(err),
             type(err).__name__, msg, now_iso()))
        self.stats.errors += 1
        log.warning("%s %s: %s", stage, reference or repository, msg)

    def ensure_manifest(self, digest: str, repository: str) -> None:
        self.conn.execute(
            "INSERT INTO manifests (digest, kind, repository, first_seen_crawl, "
            "last_seen_crawl, complete) VALUES (?, 'error', ?, ?, ?, 0) "
            "ON CONFLICT(digest) DO NOTHING", (digest, repository, self.crawl_id,
                                               self.crawl_id))

    def _signature_state(self, digest: str) -> tuple[Any, ...] | None:
        row = self.conn.execute("SELECT kind FROM manifests WHERE digest = ?",
                                (digest,)).fetchone()
        if row is None or row[0] != "modelkit":
            return None
        return (bool(self.conn.execute(
            "SELECT 1 FROM signatures WHERE subject_digest = ? AND attestation = 0",
            (digest,)).fetchone()), sorted(
            (r[0] or "", r[1] or "", r[2] or "") for r in self.conn.execute(
                "SELECT identity, issuer, key_id FROM signatures WHERE subject_digest = ? "
                "AND verified = 1 AND attestation = 0", (digest,))))

    def record(self, rec: _Record, verify_fp: str, *, count: bool = True) -> None:
        c = self.conn
        before = self._signature_state(rec.digest) if rec.kind == "modelkit" else None
        for stage, err in rec.errors:
            self.error(repository=rec.repository, reference=rec.reference, digest=rec.digest,
                       stage=stage, err=err)
        out = rec.outcome
        verified_sigs = [s for s in out.signatures
                         if s.get("verified") and not s.get("attestation")]
        sbom = out.sbom or {}
        complete = 0 if rec.kind == "error" or any(
            stage in ("manifest", "referrers", "referrer") for stage, _ in rec.errors) else 1
        ann = rec.manifest.get("annotations") if isinstance(
            rec.manifest.get("annotations"), dict) else None
        subject = rec.manifest.get("subject") if isinstance(
            rec.manifest.get("subject"), dict) else {}
        row = (rec.digest, rec.kind, rec.format, rec.media_type, rec.artifact_type, rec.size,
               rec.config_digest, rec.config_media_type, subject.get("digest"),
               dumps(ann), (ann or {}).get(mt.ANN_CREATED), rec.repository, self.crawl_id,
               self.crawl_id, rec.referrers_fingerprint, verify_fp, out.decision,
               1 if verified_sigs else 0,
               1 if (rec.sbom_referrer or sbom.get("present")) else 0,
               1 if sbom.get("verified") else 0,
               now_iso() if out.decision or out.signatures else None, out.error, complete)
        c.execute(
            "INSERT INTO manifests (digest, kind, format, media_type, artifact_type, size, "
            "config_digest, config_media_type, subject_digest, annotations, created, "
            "repository, first_seen_crawl, last_seen_crawl, referrers_fingerprint, "
            "verify_fingerprint, decision, signed, sbom_present, sbom_verified, verified_at, "
            "verify_error, complete) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(digest) DO UPDATE SET kind=excluded.kind, format=excluded.format, "
            "media_type=excluded.media_type, artifact_type=excluded.artifact_type, "
            "size=excluded.size, config_digest=excluded.config_digest, "
            "config_media_type=excluded.config_media_type, "
            "subject_digest=excluded.subject_digest, annotations=excluded.annotations, "
            "created=excluded.created, last_seen_crawl=excluded.last_seen_crawl, "
            "referrers_fingerprint=excluded.referrers_fingerprint, "
            "verify_fingerprint=excluded.verify_fingerprint, decision=excluded.decision, "
            "signed=excluded.signed, sbom_present=excluded.sbom_present, "
            "sbom_verified=excluded.sbom_verified, verified_at=excluded.verified_at, "
            "verify_error=excluded.verify_error, complete=excluded.complete", row)
        if not count:
            pass
        elif rec.kind == "modelkit":
            self.stats.modelkits += 1
        elif rec.kind != "error":
            self.stats.other_artifacts += 1
        if rec.kind != "modelkit":
            return
        d = rec.digest
        for table in ("layers", "kitfiles", "datasets", "referrers", "signatures", "sboms",
                      "lineage_edges"):
            col = {"layers": "manifest_digest", "kitfiles": "manifest_digest",
                   "datasets": "manifest_digest", "lineage_edges": "child_digest"}.get(
                       table, "subject_digest")
            c.execute(f"DELETE FROM {table} WHERE {col} = ?", (d,))  # noqa: S608 - fixed names
        c.executemany(
            "INSERT INTO layers (manifest_digest, position, digest, media_type, size, kind, "
            "path) VALUES (?,?,?,?,?,?,?)",
            [(d, la["position"], la["digest"], la["media_type"], la["size"], la["kind"],
              la["path"]) for la in rec.layers])
        if rec.kitfile is not None:
            self._kitfile(rec)
        self._referrers(rec)
        self._sbom(rec)
        self._lineage(rec)
        self._policy(rec)
        c.executemany(
            "INSERT OR REPLACE INTO referrer_sources (subject_digest, repository, "
            "fingerprint, referrers, crawl_id) VALUES (?,?,?,?,?)",
            [(d, r, fp, n, self.crawl_id) for r, (fp, n) in rec.sources.items()])
        if self._signature_state(d) != before:
            self.trust_changed.add(d)

    def _kitfile(self, rec: _Record) -> None:
        from kitaudit import kitfile as kf

        k = rec.kitfile
        pkg = k.package
        model = k.model
        base = model.path if model is not None and kf.is_modelkit_reference(
            model.path or "") else None
        try:
            kit_json = k.to_json()
        except Exception:
            kit_json = None
        self.conn.execute(
            "INSERT INTO kitfiles (manifest_digest, config_digest, format, manifest_version, "
            "package_name, package_version, package_description, package_license, "
            "package_authors, model_name, model_path, model_license, model_framework, "
            "model_format, model_version, model_description, base_reference, kitfile) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (rec.digest, rec.config_digest, rec.format, k.manifest_version, pkg.name,
             pkg.version, pkg.description, pkg.license, dumps(list(pkg.authors or [])),
             model.name if model else None, model.path if model else None,
             model.license if model else None, model.framework if model else None,
             getattr(model, "format", None) if model else None,
             model.version if model else None, model.description if model else None,
             base, kit_json))
        layer_of_path = {la["path"]: la["digest"] for la in rec.layers if la["kind"] == "dataset"}
        rows = []
        for i, ds in enumerate(k.datasets):
            layer = (ds.digest or layer_of_path.get(ds.path)) if ds.path else ds.digest
            rows.append((rec.digest, i, ds.name, ds.path, layer or None,
                         ds.remote_path or None, ds.remote_hash or None, ds.license or None,
                         ds.description or None))
        self.conn.executemany(
            "INSERT INTO datasets (manifest_digest, position, name, path, layer_digest, "
            "remote_path, remote_hash, license, description) VALUES (?,?,?,?,?,?,?,?,?)",
            rows)

    def _referrers(self, rec: _Record) -> None:
        c = self.conn
        self.stats.referrers += len(rec.referrers)
        c.executemany(
            "INSERT OR IGNORE INTO referrers (subject_digest, digest, repository, "
            "artifact_type, media_type, size, source, predicate_type, created, annotations) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(rec.digest, r["digest"], r["repository"], r["artifact_type"], r["media_type"],
              r["size"], r["source"], r["predicate_type"], r["created"], r["annotations"])
             for r in rec.referrers])
        rows = []
        for i, s in enumerate(rec.outcome.signatures):
            ref_digest = s.get("referrer")
            key = _fp([rec.digest, ref_digest, i, s.get("attestation"), s.get("verified"),
                       s.get("kind"), s.get("identity"), s.get("key_id"), s.get("created")])
            rows.append((key, rec.digest, ref_digest, s.get("kind"), s.get("identity"),
                         s.get("issuer"), s.get("key_id"), s.get("predicate_type"),
                         s.get("created"), s.get("source"), 1 if s.get("verified") else 0,
                         1 if s.get("attestation") else 0, s.get("error")))
        covered = {r[2] for r in rows if r[2]}
        for r in rec.referrers:
            # not verified (no trust options): the signature referrers as found
            if not r["_bundle"] or r["digest"] in covered:
                continue
            is_att = r["_legacy_kind"] == "att" or (
                r["predicate_type"] not in (None, mt.PREDICATE_COSIGN_SIGN)
                and r["source"] != "legacy-tag")
            key = _fp([rec.digest, r["digest"], "unverified"])
            rows.append((key, rec.digest, r["digest"], None, None, None, None,
                         r["predicate_type"], r["created"], r["source"], 0,
                         1 if is_att else 0, None))
        c.executemany(
            "INSERT OR IGNORE INTO signatures (id, subject_digest, referrer_digest, kind, "
            "identity, issuer, key_id, predicate_type, created, source, verified, "
            "attestation, error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        self.stats.signatures += sum(1 for r in rows if r[10] and not r[11])

    def _sbom(self, rec: _Record) -> None:
        sbom = rec.outcome.sbom or {}
        facts = rec.sbom_facts
        if facts is None and not sbom.get("present"):
            return
        facts = facts or {}
        referrer = rec.sbom_referrer or sbom.get("digest") or ""
        completeness = sbom.get("completeness") if sbom.get("verified") else None
        if completeness is None and facts.get("completeness") is not None:
            completeness = float(facts["completeness"]) / 100.0
        licenses = sbom.get("licenses") or facts.get("licenses") or []
        self.conn.execute(
            "INSERT OR REPLACE INTO sboms (subject_digest, referrer_digest, spec_version, "
            "serial_number, verified, attestation_digest, matches_manifest, mismatches, "
            "completeness, licenses, model_name, signed_by, facts) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (rec.digest, referrer, sbom.get("spec_version") or facts.get("spec_version"),
             facts.get("serial_number"), 1 if sbom.get("verified") else 0,
             sbom.get("digest") if sbom.get("verified") else None,
             None if not sbom.get("verified") else (1 if sbom.get("matches_manifest") else 0),
             dumps(sbom.get("mismatches") or []), completeness, dumps(sorted(licenses)),
             ((facts.get("model") or {}).get("name")), dumps(sbom.get("signed_by") or []),
             dumps(facts) if facts else None))

    def _lineage(self, rec: _Record) -> None:
        from kitaudit import kitfile as kf
        from kitaudit import reference

        rows = []

        def norm(text: str) -> str:
            try:
                return str(reference.parse_for_command(text))
            except KitauditError:
                return text

        model = rec.kitfile.model if rec.kitfile is not None else None
        if model is not None and model.path and kf.is_modelkit_reference(model.path):
            ref = norm(model.path)
            digest = ref.split("@", 1)[1] if "@" in ref else None
            rows.append(("kitfile", ref, digest, None, 1, "digest" if digest else None))
        for anc in (rec.sbom_facts or {}).get("ancestors") or []:
            ref = anc.get("reference") or anc.get("purl") or anc.get("name") or ""
            if anc.get("reference"):
                ref = norm(anc["reference"])
            digest = anc.get("digest")
            if digest and not str(digest).startswith("sha256:"):
                digest = None
            rows.append(("mlbom", ref, digest, anc.get("name"), int(anc.get("depth") or 1),
                         "digest" if digest else None))
        # what verification found for each base model (lineage.base_models): the digest
        # it resolved to and whether a trusted signature covers it
        checked: dict[str, tuple[str | None, bool]] = {}
        for b in (rec.outcome.lineage or {}).get("base_models") or []:
            if not isinstance(b, dict):
                continue
            found = (str(b.get("digest") or "") or None, bool(b.get("verified")))
            if b.get("reference"):
                checked[norm(str(b["reference"]))] = found
            if b.get("digest"):
                checked.setdefault(str(b["digest"]), found)
        evaluated = rec.outcome.lineage is not None and bool(rec.outcome.results)
        out = []
        for src, ref, dg, name, depth, how in rows:
            hit = checked.get(ref) or (checked.get(dg) if dg else None)
            verified = None if not evaluated else (1 if hit and hit[1] else 0)
            edge_id = _fp([rec.digest, src, ref, dg, depth])
            if dg is None and hit and hit[0]:
                dg, how = hit[0], "lookup"
            out.append((edge_id, rec.digest, "base-model", ref, dg, name, src, depth, how,
                        verified))
        self.conn.executemany(
            "INSERT OR IGNORE INTO lineage_edges (id, child_digest, relation, "
            "parent_reference, parent_digest, parent_name, source, depth, resolved_by, "
            "verified) VALUES (?,?,?,?,?,?,?,?,?,?)", out)

    def _policy(self, rec: _Record) -> None:
        out = rec.outcome
        if not out.results:
            return
        fps = {p.get("name"): p.get("fingerprint") for p in out.policies}
        when = out.evaluated_at or now_iso()
        c = self.conn
        for r in out.results:
            key = (rec.digest, r.get("policy"), r.get("rule"))
            prev = c.execute("SELECT status, changed_crawl FROM policy_results WHERE "
                             "subject_digest=? AND policy=? AND rule=?", key).fetchone()
            status = r.get("status")
            if prev is None:
                previous, changed = None, self.crawl_id
            elif prev[0] != status:
                previous, changed = prev[0], self.crawl_id
            else:
                previous, changed = None, prev[1]
                old = c.execute("SELECT previous_status FROM policy_results WHERE "
                                "subject_digest=? AND policy=? AND rule=?", key).fetchone()
                previous = old[0] if old else None
            c.execute(
                "INSERT INTO policy_results (subject_digest, policy, rule, policy_fingerprint, "
                "severity, status, previous_status, reason, description, remediation, "
                "controls, waiver, expired_waivers, crawl_id, changed_crawl, evaluated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT(subject_digest, policy, rule) DO UPDATE SET "
                "policy_fingerprint=excluded.policy_fingerprint, severity=excluded.severity, "
                "status=excluded.status, previous_status=excluded.previous_status, "
                "reason=excluded.reason, description=excluded.description, "
                "remediation=excluded.remediation, controls=excluded.controls, "
                "waiver=excluded.waiver, expired_waivers=excluded.expired_waivers, "
                "crawl_id=excluded.crawl_id, changed_crawl=excluded.changed_crawl, "
                "evaluated_at=excluded.evaluated_at",
                (*key, fps.get(r.get("policy")), r.get("severity"), status, previous,
                 r.get("reason"), r.get("description"), r.get("remediation"),
                 dumps(r.get("controls") or []), dumps(r.get("waiver")),
                 dumps(r.get("expired_waivers") or []), self.crawl_id, changed, when))
            if changed == self.crawl_id:
                self._history(key, status, when)
        # rules no longer in the evaluated policies are dropped
        names = sorted({str(r.get("policy")) for r in out.results})
        keep = {(r.get("policy"), r.get("rule")) for r in out.results}
        for pol, rule in c.execute("SELECT policy, rule FROM policy_results WHERE "
                                   "subject_digest=?", (rec.digest,)).fetchall():
            if pol in names and (pol, rule) not in keep:
                c.execute("DELETE FROM policy_results WHERE subject_digest=? AND policy=? "
                          "AND rule=?", (rec.digest, pol, rule))
                self._history((rec.digest, pol, rule), "removed", when)

    def _history(self, key: tuple[Any, ...], status: str | None, when: str) -> None:
        """One row of ``policy_history``: ``key``'s status from this crawl on."""
        self.conn.execute(
            "INSERT OR REPLACE INTO policy_history (subject_digest, policy, rule, crawl_id, "
            "status, evaluated_at) VALUES (?,?,?,?,?,?)", (*key, self.crawl_id, status, when))

    def finish_repository(self, repo: _Repo) -> None:
        c = self.conn
        cid = self.crawl_id
        registry, _, path = repo.name.partition("/")
        c.execute(
            "INSERT INTO repositories (name, registry, repository, first_seen_crawl, "
            "last_seen_crawl, last_done_crawl, status, tag_count, target) "
            "VALUES (?,?,?,?,?,?,?,?,?) "
            "ON CONFLICT(name) DO UPDATE SET last_seen_crawl=excluded.last_seen_crawl, "
            "last_done_crawl=excluded.last_done_crawl, status=excluded.status, "
            "tag_count=excluded.tag_count, target=excluded.target",
            (repo.name, registry, path, cid, cid, cid, "error" if repo.failed else "ok",
             len(repo.tags), self.stats.target))
        when = now_iso()
        seen = [(t, d) for t, d in repo.digests.items() if t in set(repo.tags) and d]
        for _tag, digest in seen:
            self.ensure_manifest(digest, repo.name)
        c.executemany(
            "INSERT INTO tags (repository, tag, digest, first_seen_crawl, last_seen_crawl, "
            "updated_at) VALUES (?,?,?,?,?,?) ON CONFLICT(repository, tag) DO UPDATE SET "
            "digest=excluded.digest, last_seen_crawl=excluded.last_seen_crawl, "
            "updated_at=CASE WHEN tags.digest = excluded.digest THEN tags.updated_at "
            "ELSE excluded.updated_at END",
            [(repo.name, t, d, cid, cid, when) for t, d in seen])
        c.executemany(
            "INSERT OR REPLACE INTO tag_history (repository, tag, crawl_id, digest, seen_at, "
            "signed, decision) VALUES (?,?,?,?,?,(SELECT signed FROM manifests WHERE "
            "digest=?),(SELECT decision FROM manifests WHERE digest=?))",
            [(repo.name, t, cid, d, when, d, d) for t, d in seen])
        if repo.listed:  # tags gone from the registry (a failed HEAD keeps its tag)
            listed = set(repo.tags)
            gone = [(repo.name, t) for (t,) in c.execute(
                "SELECT tag FROM tags WHERE repository=?", (repo.name,)) if t not in listed]
            c.executemany("DELETE FROM tags WHERE repository=? AND tag=?", gone)
        if repo.unchanged:
            c.executemany("UPDATE manifests SET last_seen_crawl=? WHERE digest=?",
                          [(cid, d) for d in repo.unchanged])
        self.stats.repositories += 1
        self.stats.tags += len(seen)
        self.save_stats()
        c.commit()
        self.pending = 0

    def save_stats(self) -> None:
        s = self.stats
        self.conn.execute(
            "UPDATE crawls SET repositories=?, tags=?, manifests=?, manifests_new=?, "
            "modelkits=?, other_artifacts=?, referrers=?, signatures=?, unchanged=?, "
            "errors=? WHERE id=?",
            (s.repositories, s.tags, s.manifests, s.manifests_new, s.modelkits,
             s.other_artifacts, s.referrers, s.signatures, s.unchanged, s.errors,
             self.crawl_id))


# ---------------------------------------------------------------------- lineage
def resolve_lineage(conn: sqlite3.Connection) -> int:
    """Fill ``parent_digest`` of base-model edges from the recorded tags: by digest in the
    reference, by the exact ``registry/repository:tag``, else by ``repository:tag`` in
    any registry when exactly one digest matches; an edge resolved by an exact tag
    follows the tag when it moves. Returns the edges newly resolved."""
    # a tag that moved: an edge resolved through it follows it
    conn.execute(
        "UPDATE lineage_edges SET parent_digest = (SELECT t.digest FROM tags t WHERE "
        "t.repository || ':' || t.tag = lineage_edges.parent_reference) "
        "WHERE resolved_by IN ('tag', 'lookup') AND EXISTS (SELECT 1 FROM tags t WHERE "
        "t.repository || ':' || t.tag = lineage_edges.parent_reference "
        "AND t.digest != lineage_edges.parent_digest)")
    before = conn.execute("SELECT count(*) FROM lineage_edges WHERE parent_digest IS NULL"
                          ).fetchone()[0]
    conn.execute(
        "UPDATE lineage_edges SET parent_digest = substr(parent_reference, "
        "instr(parent_reference, '@') + 1), resolved_by = 'digest' "
        "WHERE parent_digest IS NULL AND instr(parent_reference, '@sha256:') > 0")
    conn.execute(
        "UPDATE lineage_edges SET parent_digest = (SELECT t.digest FROM tags t WHERE "
        "t.repository || ':' || t.tag = lineage_edges.parent_reference), resolved_by = 'tag' "
        "WHERE parent_digest IS NULL AND EXISTS (SELECT 1 FROM tags t WHERE "
        "t.repository || ':' || t.tag = lineage_edges.parent_reference)")
    # the same repository path and tag in another registry (a kit packed against
    # localhost/... and pushed elsewhere), when unambiguous
    rows = conn.execute(
        "SELECT e.id, group_concat(DISTINCT t.digest) FROM lineage_edges e JOIN tags t ON "
        "substr(t.repository, instr(t.repository, '/') + 1) || ':' || t.tag = "
        "substr(e.parent_reference, instr(e.parent_reference, '/') + 1) "
        "WHERE e.parent_digest IS NULL GROUP BY e.id").fetchall()
    for edge_id, digests in rows:
        if digests and "," not in digests:
            conn.execute("UPDATE lineage_edges SET parent_digest=?, resolved_by='tag-path' "
                         "WHERE id=?", (digests, edge_id))
    after = conn.execute("SELECT count(*) FROM lineage_edges WHERE parent_digest IS NULL"
                         ).fetchone()[0]
    return int(before - after)


# ---------------------------------------------------------------------- crawl
ProgressFn = Callable[[CrawlStats], None]


def crawl(target: str | Source | None, db_path: str | os.PathLike[str], *,
          options: Any = None, concurrency: int = 8, shard: tuple[int, int] | None = None,
          progress: ProgressFn | None = None, net: Any = None, run_id: str | None = None,
          reverify: bool = False) -> CrawlStats:
    """Crawl ``target`` (registry ``host[:port][/prefix]``, ``None``/``"local"`` for the
    local store, ``oci:DIR`` for an OCI layout, or a ready :class:`Source`) into the
    audit database at ``db_path``.

    ``options``: a :class:`kitaudit.verify.VerifyOptions` (trust material, policies,
    waivers) or ``None`` (record signatures without verifying them). ``shard=(i, n)``
    crawls only the repositories whose stable hash is ``i`` mod ``n``. ``progress`` is
    called with the running counts. ``net``: network options (``NetOptions`` or a dict).
    ``reverify`` re-verifies every ModelKit even when nothing changed.
    """
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    db_path = Path(db_path)
    source = target if (target is not None and not isinstance(target, str)) else \
        open_source(target, net=net, concurrency=concurrency)
    verifier = Verifier(options, base_lookup=_base_lookup(source, net))
    try:
        with _db_lock(db_path) if db_path.parent.exists() else contextlib.nullcontext():
            db = open_db(db_path)
            try:
                return _crawl(source, db.conn, verifier, concurrency=concurrency,
                              shard=shard, progress=progress, run_id=run_id,
                              reverify=reverify, options=options)
            finally:
                db.conn.close()
    finally:
        if source is not target:
            source.close()


def _base_lookup(source: Source, net: Any) -> dict[str, Any] | None:
    """Where verification looks base models up: the registry crawled (and any other
    the references name), or the local store; other layouts: nowhere."""
    if source.kind == "registry":
        if net is None:
            kwargs: dict[str, Any] = {}
        elif isinstance(net, dict):
            kwargs = dict(net)
        else:
            kwargs = {f: getattr(net, f) for f in ("plain_http", "tls_verify", "tls_cert",
                                                  "cert", "key", "proxy")}
        return {"remote": True, "net": kwargs}
    if source.target == "local":
        from kitaudit.store import default_store

        return {"store": default_store(), "remote": False}
    return None


def _start(conn: sqlite3.Connection, source: Source, shard_text: str | None,
           run_id: str | None, verify_fp: str, trust: dict[str, Any] | None) -> CrawlStats:
    from kitaudit import __version__

    row = conn.execute(
        "SELECT id, run_id, started_at, resumed, repositories, tags, manifests, "
        "manifests_new, modelkits, other_artifacts, referrers, signatures, unchanged, errors, "
        "status FROM crawls WHERE target=? AND coalesce(shard, '')=? "
        "ORDER BY id DESC LIMIT 1", (source.target, shard_text or "")).fetchone()
    if row is not None and row[14] in ("running", "interrupted") and \
            (run_id is None or run_id == row[1]):
        stats = CrawlStats(crawl_id=row[0], run_id=row[1], target=source.target,
                           shard=shard_text, started_at=row[2], resumed=(row[3] or 0) + 1,
                           repositories=row[4] or 0, tags=row[5] or 0, manifests=row[6] or 0,
                           manifests_new=row[7] or 0, modelkits=row[8] or 0,
                           other_artifacts=row[9] or 0, referrers=row[10] or 0,
                           signatures=row[11] or 0, unchanged=row[12] or 0,
                           errors=row[13] or 0)
        conn.execute("UPDATE crawls SET status='running', resumed=? WHERE id=?",
                     (stats.resumed, stats.crawl_id))
        conn.commit()
        log.info("resuming crawl %d of %s", stats.crawl_id, source.target)
        return stats
    opts_text = dumps(trust)
    started = now_iso()
    run = run_id or f"{started[:19].replace(':', '').replace('-', '')}-{uuid.uuid4().hex[:8]}"
    cur = conn.execute(
        "INSERT INTO crawls (run_id, target, shard, status, started_at, resumed, "
        "repositories, tags, manifests, manifests_new, modelkits, other_artifacts, referrers, "
        "signatures, unchanged, errors, verify_fingerprint, options, kitaudit_version) "
        "VALUES (?,?,?,'running',?,0,0,0,0,0,0,0,0,0,0,0,?,?,?)",
        (run, source.target, shard_text, started, verify_fp, opts_text, __version__))
    conn.commit()
    return CrawlStats(crawl_id=int(cur.lastrowid or 0), run_id=run, target=source.target,
                      shard=shard_text, started_at=started)


def _crawl(source: Source, conn: sqlite3.Connection, verifier: Verifier, *, concurrency: int,
           shard: tuple[int, int] | None, progress: ProgressFn | None, run_id: str | None,
           reverify: bool, options: Any) -> CrawlStats:
    started = time.monotonic()
    shard_text = f"{shard[0]}/{shard[1]}" if shard else None
    verify_fp = verifier.fingerprint
    stats = _start(conn, source, shard_text, run_id, verify_fp, verifier.trust_record())
    cid = stats.crawl_id
    writer = _Writer(conn, cid, stats)
    # what is already recorded: digest -> (kind, referrers fingerprint, verify
    # fingerprint, the repository whose referrers were read)
    known: dict[str, tuple[str, str | None, str | None, str | None]] = {
        d: (k, rf, vf, r) for d, k, rf, vf, r in conn.execute(
            "SELECT digest, kind, referrers_fingerprint, verify_fingerprint, repository "
            "FROM manifests WHERE complete = 1")}
    recorded: set[str] = {d for (d,) in conn.execute("SELECT digest FROM manifests")}
    known_tags: set[tuple[str, str]] = set(conn.execute("SELECT repository, tag FROM tags"))
    done_repos = {r for (r,) in conn.execute(
        "SELECT name FROM repositories WHERE last_done_crawl = ?", (cid,))}
    verifier.seed(conn)
    # referrers read per (digest, repository): fingerprint and count, copies included
    sources: dict[tuple[str, str], tuple[str | None, int]] = {
        (d, r): (fp, n or 0) for d, r, fp, n in conn.execute(
            "SELECT subject_digest, repository, fingerprint, referrers FROM referrer_sources")}
    copies_with_referrers: dict[str, set[str]] = {}
    for (d, r), (_fp_r, n) in sources.items():
        if n:
            copies_with_referrers.setdefault(d, set()).add(r)
    claimed: dict[str, str] = {}               # digest -> the repository reading it now
    read_set: set[str] = set()                 # digests read (and written) in this crawl
    copy_changed: dict[str, set[str]] = {}     # digest -> copies whose referrers to read
    copy_stale: dict[str, set[str]] = {}       # digest -> copies seen with other options
    cold_copies: list[str] = []
    # per repository crawled: (referrer tags by subject, tag -> digest), for re-reading
    repo_refs: dict[str, tuple[dict[str, list[str]], dict[str, str | None]]] = {}
    # ModelKits read in this crawl -> whether their base-model lookups were current
    read_current: dict[str, bool] = {}

    try:
        repos = source.repositories()
    except Exception as err:
        writer.error(repository=None, reference=source.target, digest=None, stage="catalog",
                     err=err)
        _finish(conn, stats, "failed", started, source)
        raise KitauditError(f"cannot list the repositories of {source.target}: {err}",
                            fix=getattr(err, "fix", None) or
                            "give HOST/REPOSITORY to crawl one repository") from None
    if shard:
        repos = [r for r in repos if shard_of(r, shard[1]) == shard[0]]
    stats.repositories_total = len(repos)
    todo = [r for r in repos if r not in done_repos]
    if progress:
        progress(stats)

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kitaudit-crawl")
    pending: dict[Future[Any], tuple[str, _Repo, Any]] = {}
    repo_iter = iter(todo)
    states: dict[str, _Repo] = {}
    max_repos_active = max(4, concurrency * 2)

    completed: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()

    def submit(kind: str, repo: _Repo, ctx: Any, fn: Callable[..., Any], *args: Any) -> None:
        fut = pool.submit(fn, *args)
        pending[fut] = (kind, repo, ctx)
        repo.outstanding += 1
        fut.add_done_callback(completed.put)

    def start_more() -> None:
        while len(states) < max_repos_active:
            name = next(repo_iter, None)
            if name is None:
                return
            st = _Repo(name)
            states[name] = st
            submit("tags", st, None, source.list_tags, name)

    def finish(st: _Repo) -> None:
        repo_refs[st.name] = (st.ref_tags, st.digests)
        writer.finish_repository(st)
        states.pop(st.name, None)
        if progress:
            progress(stats)

    def after_resolve(st: _Repo) -> None:
        """All tags of ``st`` resolved: decide what to read."""
        by_digest: dict[str, str] = {}
        for tag in st.tags:
            d = st.digests.get(tag)
            if d and d not in by_digest:
                by_digest[d] = tag
        for digest, tag in by_digest.items():
            ref = f"{st.name}:{tag}"
            if digest in st.failed_digests and digest not in st.fetched:
                stats.manifests += 1
                continue  # already recorded as an error
            hexpart = digest.split(":", 1)[1] if ":" in digest else digest
            rtags = st.ref_tags.get(hexpart, [])
            stats.manifests += 1
            k = known.get(digest)
            if k is not None and not reverify:
                if k[0] != "modelkit" or k[3] != st.name:
                    st.unchanged.append(digest)
                    stats.unchanged += 1
                    if k[0] == "modelkit":
                        stats.modelkits += 1
                        # the same ModelKit in another repository (a copy): its referrers
                        # there are checked, and read with its home's when they changed
                        submit("copy", st, digest, _copy_referrers, source, st.name, digest,
                               rtags, st.digests)
                    else:
                        stats.other_artifacts += 1
                    continue
                try:
                    fp = _referrers_fingerprint_cheap(source, st.name, digest, rtags,
                                                      st.digests)
                except Exception:
                    fp = "?"
                if fp is None:
                    submit("check", st, (digest, ref, rtags), _check_api, source, st.name,
                           digest, rtags, st.digests)
                    continue
                if fp == k[1] and k[2] == verify_fp:
                    st.unchanged.append(digest)
                    stats.unchanged += 1
                    stats.modelkits += 1
                    continue
            elif claimed.get(digest, st.name) != st.name:
                # a copy of what another repository reads in this crawl: its referrers
                # (if it has any) are read with that read's, at the end
                if not source.has_referrers_api:
                    has_referrers = bool(rtags)
                elif source.kind != "registry":     # listed from memory
                    has_referrers = _copy_referrers(source, st.name, digest, rtags,
                                                    st.digests)[1] > 0
                else:
                    has_referrers = True
                if has_referrers:
                    copy_changed.setdefault(digest, set()).add(st.name)
                cold_copies.append(digest)
                continue
            elif digest not in recorded:
                stats.manifests_new += 1
                recorded.add(digest)
            claimed.setdefault(digest, st.name)
            submit("read", st, (digest, ref), _read_manifest, source, verifier, st.name,
                   digest, ref, st.fetched.pop(digest, None), rtags, st.digests)

    def handle(kind: str, st: _Repo, ctx: Any, fut: Future[Any]) -> None:
        st.outstanding -= 1
        err = fut.exception()
        if kind == "tags":
            if err is not None:
                writer.error(repository=st.name, reference=st.name, digest=None, stage="tags",
                             err=err)
                st.failed = True
            else:
                st.listed = True
                for tag in fut.result():
                    m = _REFERRER_TAG.match(tag)
                    if m:
                        st.ref_tags.setdefault(m.group(1), []).append(tag)
                    else:
                        st.tags.append(tag)
                for tag in st.tags:
                    if (st.name, tag) in known_tags:
                        submit("head", st, tag, source.head, st.name, tag)
                    else:
                        submit("get", st, tag, _get_tag, source, st.name, tag)
                for hexpart, rtags in st.ref_tags.items():
                    if "sha256:" + hexpart in known:
                        for tag in rtags:
                            submit("head", st, tag, source.head, st.name, tag)
        elif kind in ("head", "get"):
            tag = ctx
            if err is not None:
                writer.error(repository=st.name, reference=f"{st.name}:{tag}", digest=None,
                             stage="manifest", err=err)
                st.digests[tag] = None
            elif kind == "head":
                st.digests[tag] = fut.result()
            else:
                fm, digest, get_err = fut.result()
                st.digests[tag] = digest
                if fm is not None:
                    st.fetched[fm.digest] = fm
                if get_err is not None:
                    writer.error(repository=st.name, reference=f"{st.name}:{tag}",
                                 digest=digest, stage="manifest", err=get_err)
                    if digest:  # the tag is recorded; the manifest stays incomplete
                        st.failed_digests.add(digest)
            if st.digests.get(tag) and not _REFERRER_TAG.match(tag):
                verifier.note_tag(f"{st.name}:{tag}", str(st.digests[tag]))
            if st.outstanding == 0:
                after_resolve(st)
        elif kind == "check":
            digest, ref, rtags = ctx
            k = known[digest]
            fp = None if err is not None else fut.result()
            if fp is not None and fp == k[1] and k[2] == verify_fp:
                st.unchanged.append(digest)
                stats.unchanged += 1
                stats.modelkits += 1
            else:
                submit("read", st, (digest, ref), _read_manifest, source, verifier, st.name,
                       digest, ref, st.fetched.pop(digest, None), rtags, st.digests)
        elif kind == "copy":
            digest = ctx
            fp, n = ("?", 1) if err is not None else fut.result()
            prev = sources.get((digest, st.name))
            if (prev is None and n > 0) or (prev is not None and (prev[0] != fp or fp == "?")):
                copy_changed.setdefault(digest, set()).add(st.name)
            k = known.get(digest)
            if k is not None and k[2] != verify_fp:
                copy_stale.setdefault(digest, set()).add(st.name)
        elif kind == "read":
            digest, ref = ctx
            read_set.add(digest)
            if err is not None:  # a bug, not a content problem: still recorded
                writer.error(repository=st.name, reference=ref, digest=digest, stage="read",
                             err=err)
                writer.ensure_manifest(digest, st.name)
            else:
                rec: _Record = fut.result()
                writer.record(rec, verify_fp)
                if rec.kind == "modelkit" and verifier.enabled:
                    read_current[digest] = rec.outcome.bases_current and not rec.errors
                    if not rec.errors:
                        verifier.note_record(digest, rec.outcome)
                if rec.kind != "error" and not rec.errors:
                    home = known[digest][3] if digest in known else st.name
                    known[digest] = (rec.kind, rec.referrers_fingerprint, verify_fp, home)
            writer.pending += 1
            if writer.pending >= COMMIT_EVERY:
                writer.save_stats()
                conn.commit()
                writer.pending = 0
        if st.outstanding == 0 and st.name in states:
            finish(st)

    status = "interrupted"
    try:
        start_more()
        while pending:
            fut = completed.get()
            kind, st, ctx = pending.pop(fut)
            handle(kind, st, ctx, fut)
            start_more()
        _read_copies(pool, source, verifier, writer, verify_fp, repo_refs, known,
                     read_current, read_set, copy_changed, copy_stale,
                     copies_with_referrers)
        for digest in cold_copies:
            kind_seen = known.get(digest, ("error",))[0]
            if kind_seen == "modelkit":
                stats.modelkits += 1
            elif kind_seen != "error":
                stats.other_artifacts += 1
        writer.save_stats()
        conn.commit()
        resolve_lineage(conn)
        if verifier.enabled:
            _reevaluate_descendants(conn, pool, source, verifier, writer, verify_fp,
                                    repo_refs, read_current, known)
            resolve_lineage(conn)
        status = "complete"
    except BaseException:
        for fut in pending:
            fut.cancel()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(sqlite3.Error):
            _finish(conn, stats, status, started, source)
    if progress:
        progress(stats)
    return stats


def _tag_reference(repo: str, digest: str, digests: dict[str, str | None]) -> str:
    """``repo:tag`` for a tag of ``repo`` pointing at ``digest``, else ``repo@digest``."""
    tag = next((t for t, dg in sorted(digests.items()) if dg == digest
                and not _REFERRER_TAG.match(t)), None)
    return f"{repo}:{tag}" if tag else f"{repo}@{digest}"


def _write_rereads(todo: list[tuple[str, str, Future[Any]]], writer: _Writer,
                   verifier: Verifier, verify_fp: str, read_current: dict[str, bool],
                   known: dict[str, tuple[str, str | None, str | None, str | None]]
                   ) -> list[str]:
    """Write the records of reads made after the main pass (not counted again in the
    crawl's statistics); returns the digests written."""
    written = []
    for digest, ref, fut in todo:
        try:
            rec: _Record = fut.result()
        except Exception as err:
            writer.error(repository=None, reference=ref, digest=digest, stage="read",
                         err=err)
            continue
        writer.record(rec, verify_fp, count=False)
        if rec.kind == "modelkit" and verifier.enabled:
            read_current[digest] = rec.outcome.bases_current and not rec.errors
            if not rec.errors:
                verifier.note_record(digest, rec.outcome)
        if rec.kind != "error" and not rec.errors:
            known[digest] = (rec.kind, rec.referrers_fingerprint, verify_fp, rec.repository)
        written.append(digest)
    return written


def _copy_referrers(source: Source, repo: str, digest: str, rtags: list[str],
                    tag_digests: dict[str, str | None]) -> tuple[str | None, int]:
    """(fingerprint, count) of a copy's referrers in ``repo``: from the referrer tags
    already resolved (fallback), or listed (referrers API: one request)."""
    if not source.has_referrers_api:
        if not rtags:
            return _fp([]), 0
        return _referrers_fingerprint_cheap(source, repo, digest, rtags, tag_digests), \
            len(rtags)
    found, fp = _list_referrers(source, repo, digest, rtags, tag_digests)
    return fp, len(found)


def _read_copies(pool: ThreadPoolExecutor, source: Source, verifier: Verifier,
                 writer: _Writer, verify_fp: str,
                 repo_refs: dict[str, tuple[dict[str, list[str]], dict[str, str | None]]],
                 known: dict[str, tuple[str, str | None, str | None, str | None]],
                 read_current: dict[str, bool], read_set: set[str],
                 copy_changed: dict[str, set[str]], copy_stale: dict[str, set[str]],
                 copies_with_referrers: dict[str, set[str]]) -> None:
    """Read again, with the referrers of every repository holding them, the ModelKits
    whose copies (the same digest in another repository) have referrers of their own
    that changed, or that were read in this crawl from one repository while a copy has
    referrers. The union is verified: a signature attached only to a copy counts."""
    todo = []
    for digest in sorted(set(copy_changed) | set(copy_stale) | (read_set & set(
            copies_with_referrers))):
        k = known.get(digest)
        if k is None or k[0] != "modelkit":
            continue
        needed = set(copy_changed.get(digest, ()))
        if k[2] != verify_fp:
            needed |= copy_stale.get(digest, set())
        if digest in read_set:
            needed |= copies_with_referrers.get(digest, set())
        if not needed:
            continue
        repos = needed | copies_with_referrers.get(digest, set())
        home = k[3] if k[3] in repo_refs else next(
            (r for r in sorted(repos) if r in repo_refs), None)
        if home is None:
            continue
        hexpart = digest.split(":", 1)[1]
        extra: list[Copy] = []
        for r in sorted(repos - {home}):
            if r in repo_refs:
                ref_tags, digests = repo_refs[r]
                extra.append((r, ref_tags.get(hexpart, []), digests))
        if not extra and k[2] == verify_fp:
            continue
        ref_tags, digests = repo_refs[home]
        ref = _tag_reference(home, digest, digests)
        todo.append((digest, ref, pool.submit(_read_manifest, source, verifier, home, digest,
                                              ref, None, ref_tags.get(hexpart, []),
                                              digests, extra)))
    _write_rereads(todo, writer, verifier, verify_fp, read_current, known)


def _children_of(conn: sqlite3.Connection, parents: set[str]) -> set[str]:
    out: set[str] = set()
    items = sorted(parents)
    for i in range(0, len(items), 500):
        part = items[i:i + 500]
        out.update(r[0] for r in conn.execute(
            "SELECT DISTINCT child_digest FROM lineage_edges WHERE parent_digest IN "  # noqa: S608
            f"({','.join('?' * len(part))})", part))
    return out


def _reevaluate_descendants(conn: sqlite3.Connection, pool: ThreadPoolExecutor,
                            source: Source, verifier: Verifier, writer: _Writer,
                            verify_fp: str,
                            repo_refs: dict[str, tuple[dict[str, list[str]],
                                                       dict[str, str | None]]],
                            read_current: dict[str, bool],
                            known: dict[str, tuple[str, str | None, str | None, str | None]]
                            ) -> None:
    """Verify again the ModelKits derived from a base model whose signatures changed in
    this crawl (or that this crawl recorded first), unless they were read after it with
    current base-model facts. Their own referrers did not change, so the first pass
    kept their earlier results; a base signed (or its signature removed) changes their
    lineage rules. Repeats while re-read kits change in turn (bounded)."""
    cid = writer.crawl_id
    done: set[str] = set()
    changed = set(writer.trust_changed)
    for _round in range(8):
        if not changed:
            break
        writer.trust_changed = set()
        todo = []
        for child in sorted(_children_of(conn, changed) - done):
            done.add(child)
            if read_current.get(child):
                continue
            row = conn.execute("SELECT repository FROM manifests WHERE digest = ? AND "
                               "kind = 'modelkit' AND complete = 1", (child,)).fetchone()
            if row is None or row[0] not in repo_refs:
                continue   # not crawled this time (another shard or target)
            repo = row[0]
            ref_tags, digests = repo_refs[repo]
            ref = _tag_reference(repo, child, digests)
            hexpart = child.split(":", 1)[1]
            copies: list[Copy] = [   # its copies' referrers count too
                (r, repo_refs[r][0].get(hexpart, []), repo_refs[r][1]) for (r,) in conn.execute(
                    "SELECT repository FROM referrer_sources WHERE subject_digest = ? AND "
                    "referrers > 0 AND repository != ? ORDER BY repository", (child, repo))
                if r in repo_refs]
            todo.append((child, ref, pool.submit(_read_manifest, source, verifier, repo,
                                                 child, ref, None, ref_tags.get(hexpart, []),
                                                 digests, copies)))
        for child in _write_rereads(todo, writer, verifier, verify_fp, read_current, known):
            conn.execute(
                "UPDATE tag_history SET signed = (SELECT signed FROM manifests WHERE "
                "digest = ?), decision = (SELECT decision FROM manifests WHERE digest = ?) "
                "WHERE crawl_id = ? AND digest = ?", (child, child, cid, child))
            writer.stats.reevaluated += 1
        writer.save_stats()
        conn.commit()
        changed = set(writer.trust_changed)


def _get_tag(source: Source, repo: str, tag: str) -> tuple[
        FetchedManifest | None, str | None, Exception | None]:
    """GET a tag's manifest; when that fails, HEAD it so the tag's digest is known."""
    try:
        fm = source.manifest(repo, tag)
    except Exception as err:
        try:
            digest = source.head(repo, tag)
        except Exception:
            digest = None
        return None, digest, err
    return fm, fm.digest, None


def _check_api(source: Source, repo: str, digest: str, rtags: list[str],
               tag_digests: dict[str, str | None]) -> str:
    _found, fp = _list_referrers(source, repo, digest, rtags, tag_digests)
    return fp


def _finish(conn: sqlite3.Connection, stats: CrawlStats, status: str, started: float,
            source: Source) -> None:
    stats.status = status
    stats.finished_at = now_iso() if status in ("complete", "failed") else None
    stats.seconds = round(time.monotonic() - started, 3)
    stats.requests = int(getattr(source, "requests", 0))
    conn.execute("UPDATE crawls SET status=?, finished_at=? WHERE id=?",
                 (status, stats.finished_at, stats.crawl_id))
    _Writer(conn, stats.crawl_id, stats).save_stats()
    conn.commit()


__all__ = ["CrawlStats", "crawl", "parse_shard", "resolve_lineage", "shard_of"]
