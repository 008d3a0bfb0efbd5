"""Where a crawl reads from, behind one small interface (:class:`Source`).

* :class:`RegistrySource` — an OCI distribution registry, ``host[:port][/prefix]``:
  the catalog and tag lists (``Link`` pagination by the registry client), manifests,
  small blobs, the referrers API when the registry has one. A shared pause honours
  ``429 Retry-After`` across all worker threads (the client also retries each request).
* :class:`LayoutSource` — an OCI image layout directory: the local store (the embedded
  default; tags are full references in ``org.opencontainers.image.ref.name``, referrers
  carry ``vnd.kitaudit.subject``) or any layout written by skopeo/oras (a bare tag in
  ``ref.name`` belongs to one repository named after the directory).

Repository names are always full: ``registry/repository``.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kitaudit import mediatypes as mt
from kitaudit.errors import DigestMismatch, KitauditError, NotFound, RegistryError, UsageError

_SLOW = object()  # the fast path declined: use the registry client
_ACCEPT = ", ".join(mt.MANIFEST_TYPES)
BLOB_LIMIT = 16 << 20        # configs, bundles and BOMs larger than this are not read
MANIFEST_LIMIT = 4 << 20


@dataclass
class FetchedManifest:
    raw: bytes
    media_type: str
    digest: str

    def data(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.raw)
        except ValueError:
            raise KitauditError(f"manifest {self.digest} is not JSON") from None
        if not isinstance(doc, dict):
            raise KitauditError(f"manifest {self.digest} is not a JSON object")
        return doc


class Source(Protocol):
    """What the crawler needs from a place that holds ModelKits."""

    target: str            # as given, for the crawls table
    kind: str              # "registry" | "layout"
    has_referrers_api: bool  # referrers are listed by :meth:`referrers`, not fallback tags

    def repositories(self) -> list[str]: ...

    def list_tags(self, repository: str) -> list[str]: ...

    def head(self, repository: str, ref: str) -> str | None: ...

    def manifest(self, repository: str, ref: str) -> FetchedManifest: ...

    def blob(self, repository: str, digest: str, limit: int = BLOB_LIMIT) -> bytes: ...

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def split_name(name: str) -> tuple[str, str]:
    """``registry/repository`` → (registry, repository)."""
    registry, _, repo = name.partition("/")
    return registry, repo


# ---------------------------------------------------------------------- registry
class _Gate:
    """A pause shared by all threads: after a 429, no new request starts before the
    time its ``Retry-After`` names."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()
        self.pauses = 0

    def wait(self) -> None:
        while True:
            with self._lock:
                delay = self._until - time.monotonic()
            if delay <= 0:
                return
            time.sleep(min(delay, 1.0))

    def hold(self, seconds: float) -> None:
        with self._lock:
            until = time.monotonic() + seconds
            if until > self._until:
                self._until = until
                self.pauses += 1


class RegistrySource:
    """A registry ``host[:port]``, optionally limited to repositories under ``prefix``."""

    kind = "registry"

    def __init__(self, target: str, *, net: Any = None, concurrency: int = 8) -> None:
        from dataclasses import replace

        from kitaudit.registry.client import RegistryClient
        from kitaudit.registry.transport import NetOptions, parse_retry_after

        self.target = target
        host, _, prefix = target.partition("/")
        if not host:
            raise UsageError(f"no registry in {target!r}", fix="give HOST[:PORT][/PREFIX]")
        self.registry = host
        self.prefix = prefix.strip("/")
        opts = net if isinstance(net, NetOptions) else NetOptions.from_kwargs(**(net or {}))
        opts = replace(opts, concurrency=max(opts.concurrency, concurrency))
        self.client = RegistryClient(host, net=opts)
        self.gate = _Gate()
        self.requests = 0
        self._count_lock = threading.Lock()
        hooks = self.client.transport.client.event_hooks

        def on_request(request: Any) -> None:
            self.gate.wait()
            with self._count_lock:
                self.requests += 1

        def on_response(response: Any) -> None:
            if response.status_code == 429:
                delay = parse_retry_after(response.headers.get("Retry-After"))
                self.gate.hold(delay if delay is not None else 1.0)

        hooks["request"].append(on_request)
        hooks["response"].append(on_response)
        self._api: bool | None = None
        self._local = threading.local()
        self._probe_repo: str | None = None  # a real repository: some registries answer
        # 404 for the referrers API of a repository that does not exist

    @property
    def has_referrers_api(self) -> bool:
        if self._api is None:
            probe_repo = self._probe_repo or self.prefix or "kitaudit-probe"
            try:
                self._api = self.client.probe_referrers_api(probe_repo)
            except RegistryError:
                self._api = False
        return self._api

    def _repo(self, name: str) -> str:
        registry, repo = split_name(name)
        if registry != self.registry:
            raise UsageError(f"{name} is not in {self.registry}")
        return repo

    def repositories(self) -> list[str]:
        try:
            repos = self.client.catalog()
        except RegistryError as err:
            if self.prefix and err.status in (401, 403, 404):
                # no catalog: the prefix is taken as one repository
                return [f"{self.registry}/{self.prefix}"]
            raise
        out = []
        for repo in repos:
            if self.prefix and not (repo == self.prefix or repo.startswith(self.prefix + "/")):
                continue
            out.append(f"{self.registry}/{repo}")
        if out:
            self._probe_repo = split_name(min(out))[1]
        return sorted(out)

    def list_tags(self, repository: str) -> list[str]:
        return self.client.list_tags(self._repo(repository))

    def head(self, repository: str, ref: str) -> str | None:
        repo = self._repo(repository)
        fast = self._fast_head(repo, ref)
        if fast is not _SLOW:
            return fast  # type: ignore[return-value]
        desc = self.client.head_manifest(repo, ref)
        return None if desc is None else str(desc["digest"])

    def _fast_head(self, repo: str, ref: str) -> str | object | None:
        """``HEAD`` on a per-thread ``http.client`` connection: the recrawl sends one per
        tag, and httpx costs about three times the CPU per request (which the registry
        on the same machine then lacks). Anything but a plain 200-with-digest or 404
        (auth challenge, 429, 5xx, TLS fallback, a proxy) goes the client's full way,
        with its retries and auth."""
        import http.client
        from urllib.parse import urlsplit

        if self.client.net.proxy:
            return _SLOW
        base = urlsplit(self.client.base)
        key = (base.scheme, base.netloc)
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "key", None) != key:
            if conn is not None:
                conn.close()
            timeout = self.client.net.timeout
            if base.scheme == "https":
                conn = http.client.HTTPSConnection(
                    base.hostname or "", base.port or 443, timeout=timeout,
                    context=self.client.transport.ssl_context())
            else:
                conn = http.client.HTTPConnection(base.hostname or "", base.port or 80,
                                                  timeout=timeout)
            self._local.conn, self._local.key = conn, key
        headers = {"Accept": _ACCEPT, "User-Agent": "kitaudit"}
        auth = self.client.auth.header_for(self.client.pull_scope(repo))
        if auth:
            headers["Authorization"] = auth
        self.gate.wait()
        with self._count_lock:
            self.requests += 1
        try:
            conn.request("HEAD", f"/v2/{repo}/manifests/{ref}", headers=headers)
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self._local.conn = None
            return _SLOW
        if resp.will_close:
            conn.close()
            self._local.conn = None
        digest = resp.getheader("Docker-Content-Digest")
        if resp.status == 200 and digest and digest.startswith("sha256:"):
            return digest
        if resp.status == 404:
            return None
        return _SLOW

    def manifest(self, repository: str, ref: str) -> FetchedManifest:
        man = self.client.get_manifest(self._repo(repository), ref)
        return FetchedManifest(man.raw, man.media_type, man.digest)

    def blob(self, repository: str, digest: str, limit: int = BLOB_LIMIT) -> bytes:
        # a plain GET on the shared connection pool (small blobs: configs, bundles,
        # BOMs); the body is bounded and its digest checked
        repo = self._repo(repository)
        resp = self.client.request("GET", f"/v2/{repo}/blobs/{digest}",
                                   scope=self.client.pull_scope(repo), stream=True,
                                   follow_redirects=True)
        try:
            if resp.status_code != 200:
                raise self.client._fail(resp, f"blob {digest}")
            chunks: list[bytes] = []
            total = 0
            hasher = hashlib.sha256()
            for chunk in resp.iter_bytes():
                total += len(chunk)
                if total > limit:
                    raise KitauditError(f"blob {digest} in {repository} is larger than "
                                        f"{limit} bytes; not read")
                hasher.update(chunk)
                chunks.append(chunk)
        finally:
            resp.close()
        if "sha256:" + hasher.hexdigest() != digest:
            raise DigestMismatch(f"blob {digest} from {repository} does not match its digest",
                                 fix="the registry sent corrupt data")
        return b"".join(chunks)

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        found = self.client.referrers_api(self._repo(repository), digest)
        return found or []

    def close(self) -> None:
        self.client.close()


# ---------------------------------------------------------------------- OCI layout
class LayoutSource:
    """An OCI image layout directory, read from one snapshot of its ``index.json``."""

    kind = "layout"
    has_referrers_api = True  # referrers are found in the index, never by fallback tag

    def __init__(self, root: str | Path, *, target: str | None = None,
                 default_repository: str | None = None) -> None:
        self.root = Path(root)
        self.target = target or f"oci:{self.root}"
        index_path = self.root / "index.json"
        if not (self.root / "oci-layout").is_file() or not index_path.is_file():
            raise NotFound(f"{self.root} is not an OCI image layout (no oci-layout/index.json)",
                           fix="give a directory written by kitaudit, skopeo or oras")
        try:
            index = json.loads(index_path.read_bytes())
        except ValueError:
            raise KitauditError(f"{index_path} is not JSON") from None
        entries = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(entries, list):
            raise KitauditError(f"{index_path} is not an OCI image index")
        self.default_repository = default_repository or \
            f"localhost/{_repo_component(self.root.name)}"
        self._tags: dict[str, dict[str, str]] = {}
        self._referrers: dict[str, list[dict[str, Any]]] = {}
        untagged: list[dict[str, Any]] = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
                continue
            ann = entry.get("annotations") or {}
            name = ann.get(mt.ANN_REF_NAME)
            subject = ann.get("vnd.kitaudit.subject")
            if subject:
                desc = {k: v for k, v in entry.items() if k != "annotations"}
                rest = {k: v for k, v in ann.items() if k != "vnd.kitaudit.subject"}
                if rest:
                    desc["annotations"] = rest
                self._referrers.setdefault(subject, []).append(desc)
                continue
            if not name:
                untagged.append(entry)
                continue
            repo, tag = self._split_ref_name(name)
            self._tags.setdefault(repo, {})[tag] = entry["digest"]
        # a generic layout: untagged manifests with a subject are referrers
        for entry in untagged:
            if entry.get("mediaType") not in (mt.OCI_MANIFEST, None):
                continue
            try:
                doc = json.loads(self._read(entry["digest"], MANIFEST_LIMIT))
            except (KitauditError, ValueError):
                continue
            subject = (doc.get("subject") or {}).get("digest") if isinstance(doc, dict) else None
            if isinstance(subject, str):
                self._referrers.setdefault(subject, []).append(
                    {k: v for k, v in entry.items()})

    def _split_ref_name(self, name: str) -> tuple[str, str]:
        if "/" in name and ":" in name.rsplit("/", 1)[-1]:
            repo, _, tag = name.rpartition(":")
            if "/" not in repo:
                repo = f"localhost/{repo}"
            return repo, tag
        if "/" not in name and ":" not in name:
            return self.default_repository, name
        repo, _, tag = name.rpartition(":")
        return (repo if "/" in repo else f"localhost/{repo}"), tag or "latest"

    def _read(self, digest: str, limit: int) -> bytes:
        algo, _, hexpart = digest.partition(":")
        if algo != "sha256" or len(hexpart) != 64:
            raise KitauditError(f"unsupported digest {digest}")
        path = self.root / "blobs" / "sha256" / hexpart
        try:
            with open(path, "rb") as fh:
                data = fh.read(limit + 1)
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is missing from {self.root}") from None
        if len(data) > limit:
            raise KitauditError(f"blob {digest} is larger than {limit} bytes")
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise DigestMismatch(f"blob {digest} in {self.root} is corrupt",
                                 fix="remove the ModelKit and pack or pull it again")
        return data

    def repositories(self) -> list[str]:
        return sorted(self._tags)

    def list_tags(self, repository: str) -> list[str]:
        return sorted(self._tags.get(repository, {}))

    def head(self, repository: str, ref: str) -> str | None:
        if ref.startswith("sha256:"):
            return ref
        return self._tags.get(repository, {}).get(ref)

    def manifest(self, repository: str, ref: str) -> FetchedManifest:
        digest = self.head(repository, ref)
        if digest is None:
            raise NotFound(f"{repository}:{ref} is not in {self.root}")
        raw = self._read(digest, MANIFEST_LIMIT)
        try:
            doc = json.loads(raw)
        except ValueError:
            raise KitauditError(f"manifest {digest} is not JSON") from None
        media = (doc.get("mediaType") if isinstance(doc, dict) else None) or (
            mt.OCI_INDEX if isinstance(doc, dict) and "manifests" in doc else mt.OCI_MANIFEST)
        return FetchedManifest(raw, media, digest)

    def blob(self, repository: str, digest: str, limit: int = BLOB_LIMIT) -> bytes:
        return self._read(digest, limit)

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]]:
        return [dict(d) for d in self._referrers.get(digest, [])]

    def close(self) -> None:
        pass


def _repo_component(name: str) -> str:
    import re

    cleaned = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("._-")
    return cleaned or "layout"


def open_source(target: str | None, *, net: Any = None, concurrency: int = 8) -> Source:
    """``None``/``""``/``local``: the local store; ``oci:DIR`` or a directory holding an
    OCI layout: that layout; anything else: a registry ``host[:port][/prefix]``."""
    if target in (None, "", "local", "local-store"):
        from kitaudit.store import default_home

        root = Path(default_home()) / "store"
        if not (root / "index.json").exists():
            raise NotFound(f"the local store {root} is empty",
                           fix="pack or pull a ModelKit first, or give a registry")
        return LayoutSource(root, target="local")
    assert target is not None
    if target.startswith("oci:"):
        return LayoutSource(target[4:], target=target)
    if Path(target).is_dir() and (Path(target) / "oci-layout").is_file():
        return LayoutSource(target, target=f"oci:{target}")
    if target.startswith(("http://", "https://")):
        raise UsageError(f"give the registry as HOST[:PORT][/PREFIX], not a URL: {target}",
                         fix="drop the scheme; use --plain-http for an HTTP registry")
    return RegistrySource(target, net=net, concurrency=concurrency)
