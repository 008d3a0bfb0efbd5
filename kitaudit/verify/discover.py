"""Resolve a reference to a manifest digest and collect what refers to it.

Where REF is looked up (``remote=None``, the default): a ``localhost/...`` reference (or a
bare ``name:tag``) only in the local store; any other registry's reference in the local
store when it is stored there, else in its registry. ``remote=True`` always asks the
registry (what an admission check wants); ``remote=False`` never does.

What is collected, all checked against their digests while read:

* the manifest (by tag, or by digest: the registry's answer must hash to it) and the
  config blob (the Kitfile);
* referrers: the OCI referrers API, else the ``sha256-<hex>`` fallback tag index (in the
  local store: the store's referrer entries); only Sigstore bundle and CycloneDX
  referrers are fetched (manifest + their one relevant layer);
* cosign's legacy ``sha256-<hex>.sig`` / ``.att`` tags (every layer blob).

Nothing here decides trust: :mod:`kitaudit.verify.signatures` does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kitaudit import mediatypes as mt
from kitaudit.errors import (
    DigestMismatch,
    KitauditError,
    NotFound,
    RegistryError,
    UsageError,
)

#: Referrers beyond this number are not fetched (a registry flooding us must not make a
#: verification unbounded); noted as a problem.
MAX_REFERRERS = 100
MAX_LEGACY_LAYERS = 50
MAX_BLOB = 64 << 20
FETCHED_TYPES = (mt.SIGSTORE_BUNDLE_V03, mt.CYCLONEDX_JSON)


@dataclass
class FetchedReferrer:
    """One referrer as fetched: its descriptor (from the referrers list or the tag), its
    parsed manifest and the blobs of the layers verification needs (digest → bytes).

    ``legacy`` marks cosign's ``.sig``/``.att`` tag manifests; ``source`` is
    ``referrer`` (referrers API or local store), ``fallback-tag`` or ``legacy-tag``."""

    descriptor: dict[str, Any]
    manifest: dict[str, Any]
    blobs: dict[str, bytes] = field(default_factory=dict)
    legacy: bool = False
    source: str = "referrer"

    @property
    def digest(self) -> str:
        return str(self.descriptor.get("digest") or "")


@dataclass
class Subject:
    """The ModelKit being verified and everything found about it."""

    text: str                      # the reference as given
    registry: str                  # host[:port] ("localhost" for the local store)
    repository: str
    tag: str
    digest: str
    manifest: dict[str, Any]
    manifest_raw: bytes | None
    config_bytes: bytes
    location: str                  # local | remote | fetched
    referrers_api: bool
    referrers: list[FetchedReferrer] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: streams one layer (descriptor) and returns (sha256 digest, size) — for --deep
    rehash: Callable[[dict[str, Any]], tuple[str, int]] | None = None


def _json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except ValueError:
        raise KitauditError(f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise KitauditError(f"{what} is not a JSON object")
    return doc


def check_modelkit_manifest(manifest: dict[str, Any], what: str) -> None:
    if manifest.get("mediaType") in (mt.OCI_INDEX, mt.DOCKER_MANIFEST_LIST) or \
            "manifests" in manifest:
        raise KitauditError(f"{what} is an image index, not a ModelKit",
                            fix="verify the ModelKit manifest by its digest")
    from kitaudit.modelkit import is_modelkit

    if not is_modelkit(manifest):
        raise KitauditError(f"{what} is not a ModelKit (config media type "
                            f"{(manifest.get('config') or {}).get('mediaType')!r})",
                            fix="kitaudit verify checks ModelKits; use cosign for images")


def _wanted(desc: dict[str, Any]) -> bool:
    at = desc.get("artifactType")
    return at in FETCHED_TYPES or not at


def _needed_layers(manifest: dict[str, Any], legacy: bool) -> list[dict[str, Any]]:
    layers = [d for d in manifest.get("layers") or [] if isinstance(d, dict)]
    if legacy:
        return layers[:MAX_LEGACY_LAYERS]
    return [d for d in layers if d.get("mediaType") in FETCHED_TYPES][:1]


# ---------------------------------------------------------------------- local store
def _stopped(text: str, parsed: Any, digest: str, location: str) -> Subject:
    return Subject(text=text, registry=parsed.registry, repository=parsed.repository,
                   tag=parsed.tag or "", digest=digest, manifest={}, manifest_raw=None,
                   config_bytes=b"", location=location, referrers_api=False)


def discover_local(store: Any, parsed: Any, text: str,
                   stop_if: Callable[[str], bool] | None = None) -> Subject:
    """Read REF and its referrers from the local store. ``stop_if(digest)`` true:
    return right after resolving the digest (a cached result will be used)."""
    from kitaudit.signing.cosign import legacy_tag

    name = str(parsed) if parsed.digest is None else parsed.digest
    desc = store.resolve(name)
    digest = desc["digest"]
    if stop_if is not None and stop_if(digest):
        return _stopped(text, parsed, digest, "local")
    raw = store.read_blob(digest)  # Store.read_blob checks the digest
    manifest = _json(raw, f"manifest {digest}")
    check_modelkit_manifest(manifest, text)
    config_bytes = _local_blob(store, (manifest.get("config") or {}).get("digest"), "config")
    subject = Subject(text=text, registry=parsed.registry, repository=parsed.repository,
                      tag=parsed.tag or "", digest=digest, manifest=manifest,
                      manifest_raw=raw, config_bytes=config_bytes, location="local",
                      referrers_api=False)
    descs = [d for d in store.referrers(digest) if _wanted(d)]
    if len(descs) > MAX_REFERRERS:
        subject.notes.append(f"{len(descs)} referrers; only the first {MAX_REFERRERS} read")
        descs = descs[:MAX_REFERRERS]
    for d in descs:
        man = _json(_local_blob(store, d["digest"], "referrer manifest"),
                    f"referrer {d['digest']}")
        blobs = {layer["digest"]: _local_blob(store, layer["digest"], "referrer layer")
                 for layer in _needed_layers(man, False) if layer.get("digest")}
        subject.referrers.append(FetchedReferrer(d, man, blobs, False, "referrer"))
    tags = store.list_tags()
    for suffix in ("sig", "att"):
        tag = legacy_tag(digest, suffix)
        for refname, ldesc in tags:
            if not refname.endswith(":" + tag):
                continue
            man = _json(_local_blob(store, ldesc["digest"], "legacy signature manifest"),
                        refname)
            blobs = {layer["digest"]: _local_blob(store, layer["digest"], "legacy layer")
                     for layer in _needed_layers(man, True) if layer.get("digest")}
            subject.referrers.append(FetchedReferrer(
                {**ldesc, "tag": refname}, man, blobs, True, "legacy-tag"))

    def rehash(layer: dict[str, Any]) -> tuple[str, int]:
        h = hashlib.sha256()
        size = 0
        with store.open_blob(layer["digest"]) as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
        return "sha256:" + h.hexdigest(), size

    subject.rehash = rehash
    return subject


def _local_blob(store: Any, digest: str | None, what: str) -> bytes:
    """A small stored blob; :meth:`kitaudit.store.Store.read_blob` checks its digest
    (``DigestMismatch`` for a damaged store)."""
    if not digest:
        raise KitauditError(f"{what} has no digest")
    data: bytes = store.read_blob(digest, max_size=MAX_BLOB)
    return data


# ---------------------------------------------------------------------- registry
class _HashSink:
    """A download sink that only hashes (``--deep``): memory stays flat."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0
        self.offset = 0

    def write(self, data: bytes) -> int:
        self._h.update(data)
        self.size += len(data)
        return len(data)

    def truncate(self) -> None:
        self._h = hashlib.sha256()
        self.size = 0

    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="kitaudit-verify")
    return _POOL


def discover_remote(client: Any, parsed: Any, text: str, blob_cache: Any = None,
                    stop_if: Callable[[str], bool] | None = None) -> Subject:
    """Fetch REF's manifest, config, referrers and legacy tags from ``client``'s
    registry. ``blob_cache`` (a :class:`~kitaudit.verify.options.BlobCache`) keeps
    content-addressed bytes between calls; ``stop_if`` as in :func:`discover_local`."""
    from kitaudit.referrers import fallback_tag
    from kitaudit.signing.cosign import legacy_tag

    repo = parsed.repository

    def blob(digest: str) -> bytes:
        if blob_cache is not None and (hit := blob_cache.get(digest)) is not None:
            return bytes(hit)
        data: bytes = client.get_blob_bytes(repo, digest, max_size=MAX_BLOB)  # digest-checked
        if blob_cache is not None:
            blob_cache.put(digest, data)
        return data

    def manifest_by_digest(digest: str) -> bytes:
        if blob_cache is not None and (hit := blob_cache.get(digest)) is not None:
            return bytes(hit)
        raw: bytes = client.get_manifest(repo, digest).raw  # digest-checked by the client
        if blob_cache is not None:
            blob_cache.put(digest, raw)
        return raw

    def layer_blobs(man: dict[str, Any], legacy: bool, what: str,
                    notes: list[str]) -> dict[str, bytes]:
        """The blobs verification needs; a missing or corrupt one is noted and left out
        (that signature then stays unverified: "was not fetched")."""
        out: dict[str, bytes] = {}
        for layer in _needed_layers(man, legacy):
            if isinstance(layer.get("digest"), str):
                try:
                    out[layer["digest"]] = blob(layer["digest"])
                except (NotFound, DigestMismatch) as err:
                    notes.append(f"{what}: {err}")
        return out

    if parsed.digest:
        if stop_if is not None and stop_if(parsed.digest):
            return _stopped(text, parsed, parsed.digest, "remote")
        raw = manifest_by_digest(parsed.digest)
        digest = parsed.digest
    else:
        man = client.get_manifest(repo, parsed.tag)
        raw, digest = man.raw, man.digest
        if stop_if is not None and stop_if(digest):
            return _stopped(text, parsed, digest, "remote")
    manifest = _json(raw, f"manifest {digest}")
    check_modelkit_manifest(manifest, text)
    config = manifest.get("config") or {}
    pool = _pool()
    config_future = pool.submit(blob, config["digest"]) \
        if config.get("digest") else None

    legacy_notes: list[str] = []

    def legacy(suffix: str) -> FetchedReferrer | None:
        tag = legacy_tag(digest, suffix)
        try:
            lm = client.get_manifest(repo, tag, accept=(mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_V2))
            man = _json(lm.raw, f"{repo}:{tag}")
        except NotFound:
            return None
        except KitauditError as err:  # garbage under the tag: noted, not fatal
            if isinstance(err, RegistryError):
                raise
            legacy_notes.append(f"tag {tag} skipped: {err}")
            return None
        blobs = layer_blobs(man, True, f"tag {tag}", legacy_notes)
        return FetchedReferrer({**lm.descriptor(), "tag": tag}, man, blobs, True, "legacy-tag")

    legacy_futures = [pool.submit(legacy, s) for s in ("sig", "att")]

    api = None if client.referrers_support.get(repo) is False else \
        client.referrers_api(repo, digest)
    source = "referrer"
    if api is None:
        client.referrers_support.setdefault(repo, False)
        source = "fallback-tag"
        try:
            index = client.get_manifest(repo, fallback_tag(digest), accept=(mt.OCI_INDEX,)).data
        except NotFound:
            index = {"manifests": []}
        if not isinstance(index.get("manifests"), list):
            raise KitauditError(f"tag {fallback_tag(digest)} in {repo} is not an image index",
                                fix="something else uses the referrers fallback tag")
        descs = [d for d in index["manifests"] if isinstance(d, dict)]
    else:
        descs = api
    subject = Subject(text=text, registry=parsed.registry, repository=repo,
                      tag=parsed.tag or "", digest=digest, manifest=manifest, manifest_raw=raw,
                      config_bytes=b"", location="remote", referrers_api=api is not None)
    descs = [d for d in descs if _wanted(d) and isinstance(d.get("digest"), str)]
    if len(descs) > MAX_REFERRERS:
        subject.notes.append(f"{len(descs)} referrers; only the first {MAX_REFERRERS} read")
        descs = descs[:MAX_REFERRERS]

    def fetch(d: dict[str, Any]) -> FetchedReferrer | None:
        # A dangling or corrupt referrer (missing manifest or blob, bytes not matching
        # the digest) is noted and left unverified; registry/network errors propagate.
        try:
            man = _json(manifest_by_digest(d["digest"]), f"referrer {d['digest']}")
        except KitauditError as err:
            if isinstance(err, RegistryError):
                raise
            subject.notes.append(f"referrer {d['digest']} skipped: {err}")
            return None
        blobs = layer_blobs(man, False, f"referrer {d['digest']}", subject.notes)
        return FetchedReferrer(d, man, blobs, False, source)

    fetched = list(pool.map(fetch, descs)) if len(descs) > 1 else [fetch(d) for d in descs]
    subject.referrers = [f for f in fetched if f is not None]
    for f in legacy_futures:
        got = f.result()
        if got is not None:
            subject.referrers.append(got)
    subject.notes.extend(legacy_notes)
    subject.config_bytes = config_future.result() if config_future is not None else b"{}"

    def rehash(layer: dict[str, Any]) -> tuple[str, int]:
        sink = _HashSink()
        client.download_blob(repo, layer["digest"], sink, size=layer.get("size"))
        return sink.digest(), sink.size

    subject.rehash = rehash
    return subject


# ---------------------------------------------------------------------- entry point
def discover(ref: str, *, store: Any = None, remote: bool | None = None,
             net: dict[str, Any] | None = None, compiled: Any = None,
             stop_if: Callable[[str], bool] | None = None) -> Subject:
    """Resolve ``ref`` (local store or registry, see the module doc) and collect its
    referrers. ``compiled`` (CompiledOptions) supplies pooled clients and a blob cache."""
    from kitaudit.reference import parse_for_command

    parsed = parse_for_command(ref)
    if remote is not True:
        from kitaudit.store import default_store

        st = store or default_store()
        try:
            return discover_local(st, parsed, ref, stop_if)
        except NotFound:
            if remote is False or parsed.registry == "localhost":
                raise
    if parsed.registry == "localhost" and remote:
        raise UsageError(f"{ref} names the local store, not a registry",
                         fix="give the registry host in the reference (host[:port]/repo:tag)")
    from kitaudit.registry.transport import NetOptions

    opts = NetOptions.from_kwargs(**(net or {}))
    if compiled is not None:
        client = compiled.client(parsed.registry, opts)
        return discover_remote(client, parsed, ref, compiled.blobs, stop_if)
    from kitaudit.registry.transfer import open_client

    with open_client(parsed.registry, opts) as client:
        subject = discover_remote(client, parsed, ref, None, stop_if)
        if compiled is None and subject.rehash is not None:
            # the client closes on return: deep hashing needs its own
            subject.rehash = _standalone_rehash(parsed, opts)
        return subject


def _standalone_rehash(parsed: Any, opts: Any) -> Callable[[dict[str, Any]], tuple[str, int]]:
    def rehash(layer: dict[str, Any]) -> tuple[str, int]:
        from kitaudit.registry.transfer import open_client

        with open_client(parsed.registry, opts) as client:
            sink = _HashSink()
            client.download_blob(parsed.repository, layer["digest"], sink,
                                 size=layer.get("size"))
            return sink.digest(), sink.size
    return rehash
