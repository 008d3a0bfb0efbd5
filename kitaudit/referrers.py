"""OCI 1.1 referrers: signatures, SBOMs and attestations attached to a manifest.

Listing: the referrers API (``GET /v2/<repo>/referrers/<digest>``, Content-Type checked,
``Link`` pagination followed, ``artifactType`` filtered again client-side since server
filtering is optional) and, when the registry has no API (404), the fallback tag
``sha256-<hex>`` holding an image index.

Attaching: push the referrer manifest by digest; the registry supports the API when
the PUT answers ``OCI-Subject`` *and* a probe of the endpoint answers an index (ECR
sends the header without the API). Otherwise update the fallback index: read it (with
its ETag), skip duplicates, append a descriptor with the referrer's ``artifactType``
and annotations, PUT it back with ``If-Match`` when an ETag was given, and re-read to
detect a lost update (retrying a few times).

The local store keeps referrers too: :func:`local_referrers`, :func:`attach_local`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kitaudit import mediatypes as mt
from kitaudit.digest import check_digest, sha256_bytes
from kitaudit.errors import KitauditError, NotFound, RegistryError

log = logging.getLogger("kitaudit.referrers")

FALLBACK_ATTEMPTS = 6


def fallback_tag(digest: str) -> str:
    """``sha256:<hex>`` → ``sha256-<hex>`` (the referrers tag schema)."""
    check_digest(digest)
    algo, hexpart = digest.split(":", 1)
    return f"{algo}-{hexpart}"


def referrer_manifest(subject: Mapping[str, Any], artifact_type: str,
                      layers: list[Mapping[str, Any]], *,
                      annotations: Mapping[str, str] | None = None,
                      config: Mapping[str, Any] | None = None) -> bytes:
    """Serialise an OCI image manifest that refers to ``subject``.

    Without ``config`` the empty descriptor is used (its ``{}`` blob must be uploaded
    too: distribution checks every referenced blob exists).
    """
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": dict(config) if config else {"mediaType": mt.OCI_EMPTY, "size": 2,
                                                "digest": mt.OCI_EMPTY_DIGEST},
        "layers": [dict(layer) for layer in layers],
    }
    if annotations:
        doc["annotations"] = dict(annotations)
    doc["subject"] = {k: subject[k] for k in ("mediaType", "digest", "size") if k in subject}
    return json.dumps(doc, separators=(",", ":")).encode()


def descriptor_of(manifest_raw: bytes, media_type: str | None = None) -> dict[str, Any]:
    """The index entry for a referrer: mediaType, digest, size, artifactType, annotations."""
    doc = _parse_json(manifest_raw, "referrer manifest")
    desc: dict[str, Any] = {
        "mediaType": media_type or doc.get("mediaType") or mt.OCI_MANIFEST,
        "digest": sha256_bytes(manifest_raw),
        "size": len(manifest_raw),
    }
    artifact_type = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
    if artifact_type:
        desc["artifactType"] = artifact_type
    if doc.get("annotations"):
        desc["annotations"] = dict(doc["annotations"])
    return desc


def _parse_json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        raise KitauditError(f"{what} is not JSON")
    if not isinstance(doc, dict):
        raise KitauditError(f"{what} is not a JSON object")
    return doc


def _subject_of(raw: bytes) -> dict[str, Any]:
    doc = _parse_json(raw, "referrer manifest")
    subject = doc.get("subject")
    if not isinstance(subject, dict) or not isinstance(subject.get("digest"), str):
        raise KitauditError("a referrer manifest needs a subject descriptor")
    return subject


# ---------------------------------------------------------------------- listing
def list_referrers(client: Any, repo: str, digest: str,
                   artifact_type: str | None = None) -> list[dict[str, Any]]:
    """Descriptors of the referrers of ``digest`` in ``repo`` (API, else fallback tag)."""
    check_digest(digest)
    found = client.referrers_api(repo, digest, artifact_type)
    if found is None:
        found = _fallback_entries(client, repo, digest)
    if artifact_type:
        found = [d for d in found if d.get("artifactType") == artifact_type]
    return found


def _fallback_entries(client: Any, repo: str, digest: str) -> list[dict[str, Any]]:
    try:
        man = client.get_manifest(repo, fallback_tag(digest))
    except NotFound:
        return []
    doc = man.data
    if not isinstance(doc.get("manifests"), list):
        raise RegistryError(f"tag {fallback_tag(digest)} in {repo} is not an image index",
                            fix="something else uses the referrers fallback tag")
    return [d for d in doc["manifests"] if isinstance(d, dict)]


def list_remote_referrers(ref: Any, artifact_type: str | None = None,
                          **net: Any) -> tuple[str, list[dict[str, Any]]]:
    """(subject digest, referrer descriptors) for a remote reference (tag or digest)."""
    from kitaudit.registry.transfer import open_client, parse_ref, to_net

    pref = parse_ref(ref)
    with open_client(pref.registry, to_net(net)) as client:
        digest = client.resolve(pref.repository, pref.reference)
        return digest, list_referrers(client, pref.repository, digest, artifact_type)


# ---------------------------------------------------------------------- attaching
@dataclass
class AttachResult:
    digest: str
    method: str  # "api" or "fallback" (or "present" when already listed)

    def to_dict(self) -> dict[str, str]:
        return {"digest": self.digest, "method": self.method}


def attach(client: Any, repo: str, manifest_raw: bytes,
           media_type: str | None = None) -> AttachResult:
    """Push a referrer manifest (its blobs must already be in ``repo``) and make it
    discoverable: by the referrers API when the registry has one, else via the
    fallback index."""
    subject = _subject_of(manifest_raw)
    digest = sha256_bytes(manifest_raw)
    desc = descriptor_of(manifest_raw, media_type)
    resp = client.put_manifest(repo, digest, manifest_raw, desc["mediaType"])
    if _api_supported(client, repo, resp):
        return AttachResult(digest, "api")
    return AttachResult(digest, update_fallback_index(client, repo, subject["digest"], desc))


def _api_supported(client: Any, repo: str, put_response: Any) -> bool:
    cache: dict[str, bool] = client.referrers_support
    if repo in cache:
        return cache[repo]
    supported = False
    if put_response.headers.get("OCI-Subject"):
        supported = client.probe_referrers_api(repo)
    cache[repo] = supported
    return supported


def update_fallback_index(client: Any, repo: str, subject_digest: str,
                          desc: Mapping[str, Any]) -> str:
    """Add ``desc`` to the fallback index of ``subject_digest``. Returns "fallback", or
    "present" when it was already listed. Raises ``RegistryError`` when concurrent
    writers keep overwriting the index."""
    tag = fallback_tag(subject_digest)
    for attempt in range(FALLBACK_ATTEMPTS):
        etag: str | None = None
        attempt_exists = True
        try:
            current = client.get_manifest(repo, tag)
            index = current.data
            etag = current.etag
            if not isinstance(index.get("manifests"), list):
                raise RegistryError(f"tag {tag} in {repo} is not an image index",
                                    fix="something else uses the referrers fallback tag")
        except NotFound:
            attempt_exists = False
            index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
        if any(isinstance(d, dict) and d.get("digest") == desc["digest"]
               for d in index["manifests"]):
            return "present" if attempt == 0 else "fallback"
        index["manifests"].append(dict(desc))
        index.setdefault("mediaType", mt.OCI_INDEX)
        raw = json.dumps(index, separators=(",", ":")).encode()
        try:
            # If-Match on update; If-None-Match: * when creating the index
            client.put_manifest(repo, tag, raw, mt.OCI_INDEX, if_match=etag,
                                if_none_match=None if etag or attempt_exists else "*")
        except RegistryError as exc:
            if exc.status == 412:  # someone else wrote first: merge again
                _pause(attempt)
                continue
            raise
        # re-read: a registry ignoring If-Match may have let another writer win
        check = client.get_manifest(repo, tag).data
        if any(isinstance(d, dict) and d.get("digest") == desc["digest"]
               for d in check.get("manifests") or []):
            return "fallback"
        log.info("referrer %s lost from %s by a concurrent update; retrying",
                 desc["digest"], tag)
        _pause(attempt)
    raise RegistryError(f"could not add referrer {desc['digest']} to {tag}: concurrent "
                        "updates kept overwriting it",
                        fix="retry; the registry does not honour If-Match")


def _pause(attempt: int) -> None:
    time.sleep(random.random() * min(1.0, 0.05 * (2 ** attempt)))


def push_referrer(client: Any, repo: str, manifest_raw: bytes,
                  blobs: Mapping[str, bytes] | None = None) -> AttachResult:
    """Upload the referrer's blobs (``{digest: bytes}``; the empty ``{}`` config is
    added automatically), then :func:`attach` it."""
    doc = _parse_json(manifest_raw, "referrer manifest")
    payloads = dict(blobs or {})
    payloads.setdefault(mt.OCI_EMPTY_DIGEST, mt.OCI_EMPTY_DATA)
    for d in [doc.get("config") or {}, *(doc.get("layers") or [])]:
        digest = d.get("digest")
        if not digest:
            continue
        if digest not in payloads:
            if client.has_blob(repo, digest):
                continue
            raise NotFound(f"referrer blob {digest} was not given and is not in {repo}")
        client.upload_bytes(repo, payloads[digest])
    return attach(client, repo, manifest_raw)


def push_referrer_from_store(client: Any, store: Any, repo: str,
                             manifest_raw: bytes) -> AttachResult:
    """Push a referrer stored locally (its blobs from the store) and attach it."""
    doc = _parse_json(manifest_raw, "referrer manifest")
    for d in [doc.get("config") or {}, *(doc.get("layers") or [])]:
        digest = d.get("digest")
        if not digest or client.has_blob(repo, digest):
            continue
        if digest == mt.OCI_EMPTY_DIGEST and not store.has_blob(digest):
            client.upload_bytes(repo, mt.OCI_EMPTY_DATA)
            continue
        size = store.blob_size(digest)
        client.upload_blob(repo, digest, size, store.blob_path(digest))
    return attach(client, repo, manifest_raw)


def attach_remote(ref: Any, manifest_raw: bytes, blobs: Mapping[str, bytes] | None = None,
                  **net: Any) -> AttachResult:
    """Attach a referrer to a remote ModelKit (``ref``'s registry and repository)."""
    from kitaudit.registry.transfer import open_client, parse_ref, to_net

    pref = parse_ref(ref)
    with open_client(pref.registry, to_net(net)) as client:
        return push_referrer(client, pref.repository, manifest_raw, blobs)


# ---------------------------------------------------------------------- local store
def local_referrers(store: Any, digest: str,
                    artifact_type: str | None = None) -> list[dict[str, Any]]:
    """Referrers of ``digest`` recorded in the local store."""
    return store.referrers(digest, artifact_type)


def attach_local(store: Any, manifest_raw: bytes,
                 blobs: Mapping[str, bytes] | None = None) -> str:
    """Store a referrer (and its small blobs) in the local store beside its subject."""
    for data in (blobs or {}).values():
        store.put_blob(data)
    doc = _parse_json(manifest_raw, "referrer manifest")
    if (doc.get("config") or {}).get("digest") == mt.OCI_EMPTY_DIGEST:
        store.put_blob(mt.OCI_EMPTY_DATA)
    return store.add_referrer(manifest_raw)
