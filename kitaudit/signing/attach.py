"""Sign a ModelKit reference and attach the signatures: local store or registry.

``sign_reference(ref, signer)`` resolves REF (the local store first; a reference to
another registry that is not stored locally, or ``remote=True``, goes to the
registry), finds its ML-BOM referrer (``application/vnd.cyclonedx+json``) if there is
one, signs the manifest and the ML-BOM with :func:`kitaudit.signing.sign_modelkit`, and
attaches everything: locally with ``store.put_blob`` + ``store.add_referrer``, remotely
with :func:`kitaudit.referrers.push_referrer` (referrers API or fallback tag).

Nothing is attached unless every signature was made. If attaching fails part-way, the
signed referrers are kept in ``$KITAUDIT_HOME/pending-signatures/`` and the next run for
the same subject, ML-BOM, format and signer attaches those same bundles (no new Rekor
entries, no duplicates) and then drops the journal.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kitaudit.errors import KitauditError, NotFound
from kitaudit.signing.cosign import SignedReferrer
from kitaudit.signing.signer import Signer, sign_modelkit


@dataclass
class SignResult:
    reference: str
    subject: str
    signer: str
    location: str  # "local" | "remote"
    sbom_signed: bool
    reused_pending: bool
    attached: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "subject": self.subject, "signer": self.signer,
                "location": self.location, "sbomSigned": self.sbom_signed,
                "reusedPending": self.reused_pending, "attached": self.attached}


# ---------------------------------------------------------------------------
# pending-signature journal

def _pending_dir() -> Path:
    from kitaudit.store import default_home

    return Path(default_home()) / "pending-signatures"


def _pending_key(subject: str, sbom: bytes | None, fmt: str, signer_id: str) -> str:
    h = hashlib.sha256()
    for part in (subject, hashlib.sha256(sbom).hexdigest() if sbom is not None else "-",
                 fmt, signer_id):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def _signer_id(signer: Signer) -> str:
    fp = getattr(signer, "fingerprint", None)
    return str(fp()) if callable(fp) else signer.description


def _save_pending(path: Path, refs: list[SignedReferrer]) -> None:
    doc = [{"manifest": base64.b64encode(r.manifest_bytes).decode(),
            "bundle": base64.b64encode(r.bundle_bytes).decode(),
            "predicateType": r.predicate_type, "artifactType": r.artifact_type,
            "blobs": {d: base64.b64encode(b).decode() for d, b in r.blobs.items()},
            "tag": r.tag, "format": r.format} for r in refs]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _load_pending(path: Path) -> list[SignedReferrer] | None:
    try:
        doc = json.loads(path.read_text())
        return [SignedReferrer(
            manifest_bytes=base64.b64decode(d["manifest"]),
            bundle_bytes=base64.b64decode(d["bundle"]), predicate_type=d["predicateType"],
            artifact_type=d["artifactType"],
            blobs={k: base64.b64decode(v) for k, v in d["blobs"].items()},
            tag=d["tag"], format=d["format"]) for d in doc]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def sign_with_journal(subject_desc: dict[str, Any], sbom: bytes | None, signer: Signer, *,
                      signature_format: str = "bundle", docker_reference: str | None = None,
                      created: datetime | None = None
                      ) -> tuple[list[SignedReferrer], Path, bool]:
    """Sign (or reuse what an interrupted earlier run signed). Returns (referrers,
    journal path, reused). Delete the journal once everything is attached."""
    digest = subject_desc["digest"]
    key = _pending_key(digest, sbom, signature_format, _signer_id(signer))
    path = _pending_dir() / f"{key}.json"
    pending = _load_pending(path) if path.exists() else None
    if pending:
        return pending, path, True
    refs = sign_modelkit(digest, subject_desc, sbom=sbom, signer=signer, created=created,
                         signature_format=signature_format, docker_reference=docker_reference)
    try:
        _save_pending(path, refs)
    except OSError:
        pass  # the journal only helps re-runs; signing itself succeeded
    return refs, path, False


def _done(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


# ---------------------------------------------------------------------------
# local store

def attach_local(store: Any, refs: list[SignedReferrer], docker_reference: str
                 ) -> list[dict[str, Any]]:
    """Store signed referrers in the local store (legacy ``.sig``/``.att`` manifests are
    tagged ``<registry/repo>:sha256-<hex>.sig``)."""
    out = []
    for r in refs:
        for data in r.blobs.values():
            store.put_blob(data)
        if r.tag is None:
            digest = store.add_referrer(r.manifest_bytes)
            out.append({"digest": digest, "predicateType": r.predicate_type,
                        "format": r.format, "method": "local"})
        else:
            digest = store.put_manifest(r.manifest_bytes, tags=[f"{docker_reference}:{r.tag}"])
            out.append({"digest": digest, "predicateType": r.predicate_type,
                        "format": r.format, "tag": r.tag, "method": "local"})
    return out


def _local_sbom(store: Any, name: str, subject: str) -> bytes | None:
    """The ML-BOM stored as a referrer of ``subject`` (kitaudit.mlbom picks among several)."""
    from kitaudit import mlbom

    try:
        stored = mlbom.load_mlbom(f"{name}@{subject}", store=store)
    except NotFound:
        return None
    return bytes(stored.bom)


def sign_local(store: Any, ref: str, signer: Signer, *, signature_format: str = "bundle",
               created: datetime | None = None) -> SignResult:
    """Sign a ModelKit in the local store and store the signatures beside it."""
    from kitaudit.reference import parse_for_command

    parsed = parse_for_command(ref)
    name = str(parsed) if parsed.digest is None else parsed.digest
    desc = store.resolve(name)
    subject = {"mediaType": desc["mediaType"], "size": desc["size"], "digest": desc["digest"]}
    sbom = _local_sbom(store, parsed.name, desc["digest"])
    refs, journal, reused = sign_with_journal(subject, sbom, signer,
                                              signature_format=signature_format,
                                              docker_reference=parsed.name, created=created)
    attached = attach_local(store, refs, parsed.name)
    _done(journal)
    return SignResult(str(parsed), desc["digest"], signer.description, "local",
                      sbom is not None, reused, attached)


# ---------------------------------------------------------------------------
# registry

def _push_legacy(client: Any, repo: str, r: SignedReferrer) -> dict[str, Any]:
    from kitaudit import mediatypes as mt
    from kitaudit.signing import cosign as c

    assert r.tag is not None
    new_doc = json.loads(r.manifest_bytes)
    new_layers = [(d, r.blobs[d["digest"]]) for d in new_doc["layers"]]
    try:
        existing = client.get_manifest(repo, r.tag, accept=(mt.OCI_MANIFEST,
                                                            mt.DOCKER_MANIFEST_V2)).data
    except NotFound:
        existing = None
    merged = c.merge_legacy_layers(existing, new_layers)
    manifest, blobs = c.legacy_manifest(merged)
    for data in blobs.values():
        client.upload_bytes(repo, data)
    client.put_manifest(repo, r.tag, manifest, mt.OCI_MANIFEST)
    return {"digest": c.sha256_bytes(manifest), "predicateType": r.predicate_type,
            "format": "legacy", "tag": r.tag, "method": "tag"}


def sign_remote(ref: str, signer: Signer, *, signature_format: str = "bundle",
                created: datetime | None = None, **net: Any) -> SignResult:
    """Sign a ModelKit in a registry and attach the signatures there."""
    from kitaudit import mlbom, referrers
    from kitaudit.reference import parse_for_command
    from kitaudit.registry.transfer import _net, open_client, resolve_remote

    parsed = parse_for_command(ref)
    desc = resolve_remote(parsed, **net)
    subject = {"mediaType": desc["mediaType"], "size": desc["size"], "digest": desc["digest"]}
    pinned = f"{parsed.name}@{desc['digest']}"
    try:
        sbom: bytes | None = mlbom.load_mlbom(pinned, remote=True, **net).bom
    except NotFound:
        sbom = None
    refs, journal, reused = sign_with_journal(subject, sbom, signer,
                                              signature_format=signature_format,
                                              docker_reference=parsed.name, created=created)
    attached = []
    with open_client(parsed.registry, _net(net)) as client:
        for r in refs:
            if r.tag is None:
                res = referrers.push_referrer(client, parsed.repository, r.manifest_bytes,
                                              r.blobs)
                attached.append({"digest": res.digest, "predicateType": r.predicate_type,
                                 "format": r.format, "method": res.method})
            else:
                attached.append(_push_legacy(client, parsed.repository, r))
    _done(journal)
    return SignResult(str(parsed), desc["digest"], signer.description, "remote",
                      sbom is not None, reused, attached)


def sign_reference(ref: str, signer: Signer, *, store: Any = None, remote: bool = False,
                   signature_format: str = "bundle", created: datetime | None = None,
                   **net: Any) -> SignResult:
    """Sign REF where it is: the local store when it is there (unless ``remote``), else
    the registry it names."""
    from kitaudit.reference import parse_for_command

    parsed = parse_for_command(ref)
    if not remote:
        from kitaudit.store import default_store

        store = store or default_store()
        name = str(parsed) if parsed.digest is None else parsed.digest
        try:
            store.resolve(name)
        except NotFound:
            if parsed.registry == "localhost":
                raise NotFound(f"{ref} is not in the local store",
                               fix="pack it first, or pass a registry reference") from None
        else:
            return sign_local(store, ref, signer, signature_format=signature_format,
                              created=created)
    try:
        return sign_remote(ref, signer, signature_format=signature_format, created=created,
                           **net)
    except ImportError as err:  # pragma: no cover - registry module missing
        raise KitauditError(f"remote signing is unavailable: {err}") from None
