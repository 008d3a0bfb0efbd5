"""``RegistryClient``: the OCI distribution API for one registry host.

Manifests (GET/HEAD/PUT/DELETE by tag or digest), blobs (HEAD, streamed GET with Range
resume, uploads: monolithic PUT streamed from disk or chunked PATCH, cross-repository
mount), tag lists and the catalog with ``Link`` pagination, and the raw referrers API.

Every request goes through :class:`~kitaudit.registry.transport.Transport` (bounded
retries) and :class:`~kitaudit.registry.auth.Authenticator` (one answer per challenge).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import httpx

from kitaudit import mediatypes as mt
from kitaudit.errors import AuthError, DigestMismatch, NotFound, RegistryError
from kitaudit.registry.auth import Authenticator, Credentials
from kitaudit.registry.transport import (
    RETRY_STATUSES,
    NetOptions,
    RetryBudget,
    TLSHandshakeError,
    Transport,
    parse_retry_after,
)

log = logging.getLogger("kitaudit.registry")

MIB = 1 << 20
MONOLITHIC_LIMIT = 100 * MIB       # kit: monolithic PUT below 100 MiB
CHUNK_SIZE = 100 * MIB             # kit: 100 MiB PATCH chunks otherwise
IO_CHUNK = 4 * MIB                 # read/write granularity for streaming
MANIFEST_LIMIT = 4 * MIB           # distribution's default manifest size limit
ENDPOINTS_ENV = "KITAUDIT_REGISTRY_ENDPOINTS"

# Registries that need a monolithic upload whatever the size (kit's list).
_MONOLITHIC_HOSTS = re.compile(r"(^|\.)(ghcr\.io|gcr\.io|pkg\.dev|amazonaws\.com)(:\d+)?$")

ProgressFn = Callable[[int], None]


class BlobSink(Protocol):
    """Where a downloaded blob goes (the store's ``BlobWriter`` is one)."""

    offset: int

    def write(self, data: bytes) -> int: ...


def endpoints_from_env() -> dict[str, str]:
    """``KITAUDIT_REGISTRY_ENDPOINTS="name=host:port,other=host2"``: where to connect
    for a logical registry name (like registries.conf ``location``)."""
    out: dict[str, str] = {}
    for item in os.environ.get(ENDPOINTS_ENV, "").split(","):
        if "=" in item:
            name, _, target = item.partition("=")
            if name.strip() and target.strip():
                out[name.strip()] = target.strip()
    return out


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.x.y.z`` or ``[::1]``, with or without a port."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost" or name == "::1":
        return True
    parts = name.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(p.isdigit() for p in parts)


def needs_monolithic(host: str) -> bool:
    return bool(_MONOLITHIC_HOSTS.search(host))


def _error_text(resp: httpx.Response) -> str:
    """A short description of a distribution error body (``errors[].code/message``)."""
    try:
        content = resp.content[:65536]
    except httpx.ResponseNotRead:
        content = b""
    return _error_text_raw(resp.status_code, content)


def _error_text_raw(status: int, content: bytes) -> str:
    try:
        data = json.loads(content) if content else None
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("errors"), list) and data["errors"]:
        parts = []
        for err in data["errors"][:3]:
            if isinstance(err, dict):
                parts.append(" ".join(str(x) for x in (err.get("code"), err.get("message"))
                                      if x))
        if parts:
            return "; ".join(parts)[:300]
    return f"HTTP {status}"


def _next_link(resp: httpx.Response) -> str | None:
    link = resp.headers.get("Link")
    if not link:
        return None
    for part in link.split(","):
        m = re.match(r'\s*<([^>]*)>\s*;(.*)', part)
        if m and re.search(r'rel="?next"?', m.group(2)):
            return m.group(1)
    return None


@dataclass
class Manifest:
    """A manifest as fetched: raw bytes, media type, digest (verified)."""

    raw: bytes
    media_type: str
    digest: str
    etag: str | None = None

    @property
    def data(self) -> dict[str, Any]:
        doc = json.loads(self.raw)
        if not isinstance(doc, dict):
            raise RegistryError(f"manifest {self.digest} is not a JSON object")
        return doc

    def descriptor(self) -> dict[str, Any]:
        desc: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                                "size": len(self.raw)}
        try:
            at = self.data.get("artifactType")
        except (ValueError, RegistryError):
            at = None
        if at:
            desc["artifactType"] = at
        return desc


class RegistryClient:
    """The distribution API of one registry (``host[:port]``), shared across threads."""

    def __init__(self, registry: str, *, net: NetOptions | None = None,
                 credentials: Credentials | None = None,
                 transport: Transport | None = None) -> None:
        self.registry = registry
        self.net = net or NetOptions()
        self._own_transport = transport is None
        self.transport = transport or Transport(self.net)
        endpoints = {**endpoints_from_env(), **dict(self.net.endpoints)}
        host = endpoints.get(registry, registry)
        if host in ("docker.io", "index.docker.io"):
            host = "registry-1.docker.io"
        self.host = host
        scheme = "http" if self.net.plain_http else "https"
        self.base = f"{scheme}://{host}"
        # docker's rule for its default insecure registries: a loopback registry that
        # does not speak TLS is used over plain HTTP.
        self._http_fallback = not self.net.plain_http and is_loopback(host)
        self.auth = Authenticator(registry, credentials)
        self.monolithic_only = needs_monolithic(registry)
        self.chunk_size = CHUNK_SIZE
        self.monolithic_limit = MONOLITHIC_LIMIT
        self.referrers_support: dict[str, bool] = {}  # repo -> referrers API usable

    def __repr__(self) -> str:
        return f"RegistryClient({self.registry!r}, base={self.base!r})"

    def close(self) -> None:
        if self._own_transport:
            self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing
    def url(self, path: str) -> str:
        return urljoin(self.base + "/", path.lstrip("/")) if not path.startswith("http") \
            else path

    def request(self, method: str, path: str, *, scope: str,
                headers: dict[str, str] | None = None,
                content: bytes | Callable[[], Any] | None = None,
                params: dict[str, str] | None = None, stream: bool = False,
                retry: bool = True, follow_redirects: bool = False) -> httpx.Response:
        """One authenticated request. 401 is answered once; a second 401 or a 403 raises
        ``AuthError`` with one message."""
        url = self.url(path)
        if params and "?" in url:
            # httpx replaces an existing query string; upload URLs carry state in it
            url = str(httpx.URL(url).copy_merge_params(params))
            params = None
        hdrs = dict(headers or {})
        auth = self.auth.header_for(scope)
        if auth:
            hdrs["Authorization"] = auth
        try:
            resp = self.transport.send(method, url, headers=hdrs, content=content,
                                       params=params, stream=stream, retry=retry,
                                       follow_redirects=follow_redirects)
        except TLSHandshakeError:
            if not (self._http_fallback and url.startswith(self.base)):
                raise
            log.info("%s does not speak TLS; using plain HTTP (loopback registry)", self.host)
            old_base, self.base = self.base, "http://" + self.host
            self._http_fallback = False
            url = self.base + url[len(old_base):]
            resp = self.transport.send(method, url, headers=hdrs, content=content,
                                       params=params, stream=stream, retry=retry,
                                       follow_redirects=follow_redirects)
        if resp.status_code == 401:
            challenge = resp.headers.get("WWW-Authenticate", "")
            resp.close()
            hdrs["Authorization"] = self.auth.answer(self.transport, challenge, scope,
                                                     sent=hdrs.get("Authorization"))
            resp = self.transport.send(method, url, headers=hdrs, content=content,
                                       params=params, stream=stream, retry=retry,
                                       follow_redirects=follow_redirects)
            if resp.status_code == 401:
                resp.close()
                raise self._auth_failed()
        if resp.status_code == 403:
            resp.close()
            what = scope.split(":")[1] if scope.count(":") >= 2 else self.registry
            raise AuthError(f"{self.registry}: access to {what} denied", status=403,
                            fix="check that this account may access the repository")
        return resp

    def _auth_failed(self) -> AuthError:
        """The one message for refused credentials: names the user, never the secret."""
        creds = self.auth.credentials
        who = f"user {creds.username!r}" if creds and creds.username else "anonymous access"
        return AuthError(f"{self.registry}: authentication failed for {who}", status=401,
                         fix=f"check the credentials (kitaudit login {self.registry})")

    def resolve(self, repo: str, ref: str) -> str:
        """The manifest digest a tag (or digest) names; ``NotFound`` when absent."""
        if ref.startswith("sha256:"):
            return ref
        desc = self.head_manifest(repo, ref)
        if desc is None:
            raise NotFound(f"{self.registry}/{repo}:{ref} not found on {self.registry}")
        return desc["digest"]

    def _fail(self, resp: httpx.Response, what: str) -> RegistryError:
        if stream_open(resp):
            resp.read()
        text = _error_text(resp)
        if resp.status_code == 404:
            return NotFound(f"{what}: not found on {self.registry} ({text})")
        if resp.status_code == 429:
            return RegistryError(f"{what}: {self.registry} is rate limiting (HTTP 429)",
                                 status=429, fix="wait and try again later")
        return RegistryError(f"{what}: {self.registry} answered {text}",
                             status=resp.status_code)

    @staticmethod
    def pull_scope(repo: str) -> str:
        return f"repository:{repo}:pull"

    @staticmethod
    def push_scope(repo: str) -> str:
        return f"repository:{repo}:pull,push"

    # ------------------------------------------------------------------ base
    def ping(self) -> None:
        """``GET /v2/``: checks reachability and credentials."""
        resp = self.request("GET", "/v2/", scope="")
        if resp.status_code != 200:
            raise self._fail(resp, "ping")

    # ------------------------------------------------------------------ manifests
    def get_manifest(self, repo: str, ref: str,
                     accept: tuple[str, ...] = mt.MANIFEST_TYPES) -> Manifest:
        """Fetch a manifest by tag or digest; the digest is checked (by digest: against
        the reference; by tag: against ``Docker-Content-Digest`` when sent)."""
        resp = self.request("GET", f"/v2/{repo}/manifests/{ref}", scope=self.pull_scope(repo),
                            headers={"Accept": ", ".join(accept)}, stream=True)
        try:
            if resp.status_code != 200:
                raise self._fail(resp, f"manifest {self.registry}/{repo}:{ref}"
                                 if not ref.startswith("sha256:")
                                 else f"manifest {self.registry}/{repo}@{ref}")
            length = int(resp.headers.get("Content-Length") or 0)
            if length > MANIFEST_LIMIT:
                raise RegistryError(f"manifest {repo}:{ref} is too large ({length} bytes)")
            chunks: list[bytes] = []
            total = 0
            for chunk in resp.iter_bytes():
                total += len(chunk)
                if total > MANIFEST_LIMIT:
                    raise RegistryError(f"manifest {repo}:{ref} is too large")
                chunks.append(chunk)
            raw = b"".join(chunks)
        finally:
            resp.close()
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        if ref.startswith("sha256:") and digest != ref:
            raise DigestMismatch(f"manifest from {self.registry}/{repo} hashes to {digest}, "
                                 f"expected {ref}", fix="the registry sent corrupt data")
        header = resp.headers.get("Docker-Content-Digest")
        if header and header.startswith("sha256:") and header != digest:
            raise DigestMismatch(f"manifest {repo}:{ref} hashes to {digest} but the registry "
                                 f"says {header}")
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            doc = json.loads(raw)
        except ValueError:
            raise RegistryError(f"manifest {repo}:{ref} is not JSON")
        if isinstance(doc, dict) and doc.get("mediaType"):
            media_type = doc["mediaType"]
        if media_type not in mt.MANIFEST_TYPES:
            media_type = mt.OCI_INDEX if isinstance(doc, dict) and "manifests" in doc \
                else mt.OCI_MANIFEST
        return Manifest(raw=raw, media_type=media_type, digest=digest,
                        etag=resp.headers.get("ETag"))

    def head_manifest(self, repo: str, ref: str) -> dict[str, Any] | None:
        """Descriptor of ``repo:ref`` (from HEAD), or None when absent."""
        resp = self.request("HEAD", f"/v2/{repo}/manifests/{ref}",
                            scope=self.pull_scope(repo),
                            headers={"Accept": ", ".join(mt.MANIFEST_TYPES)})
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._fail(resp, f"manifest {repo}:{ref}")
        digest = resp.headers.get("Docker-Content-Digest")
        if not digest:
            if ref.startswith("sha256:"):
                digest = ref
            else:  # HEAD without digest header: GET it to know
                return self.get_manifest(repo, ref).descriptor()
        return {"mediaType": resp.headers.get("Content-Type", "").split(";")[0],
                "digest": digest, "size": int(resp.headers.get("Content-Length") or 0)}

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str | None = None,
                     *, if_match: str | None = None,
                     if_none_match: str | None = None) -> httpx.Response:
        """PUT a manifest under a tag or its digest. Returns the response (headers such
        as ``OCI-Subject`` matter to referrers). ``if_match``/``if_none_match``: send
        ``If-Match``/``If-None-Match``; a 412 raises ``RegistryError(status=412)``."""
        if media_type is None:
            doc = json.loads(raw)
            media_type = doc.get("mediaType") or (
                mt.OCI_INDEX if "manifests" in doc else mt.OCI_MANIFEST)
        headers = {"Content-Type": media_type}
        if if_match:
            headers["If-Match"] = if_match
        if if_none_match:
            headers["If-None-Match"] = if_none_match
        resp = self.request("PUT", f"/v2/{repo}/manifests/{ref}",
                            scope=self.push_scope(repo), headers=headers, content=raw)
        if resp.status_code not in (200, 201, 202, 204):
            raise self._fail(resp, f"push manifest {repo}:{ref}")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        got = resp.headers.get("Docker-Content-Digest")
        if got and got.startswith("sha256:") and got != digest:
            raise DigestMismatch(f"registry stored manifest as {got}, expected {digest}")
        return resp

    def delete_manifest(self, repo: str, digest: str) -> None:
        resp = self.request("DELETE", f"/v2/{repo}/manifests/{digest}",
                            scope=f"repository:{repo}:delete")
        if resp.status_code == 405:
            raise RegistryError(f"{self.registry} does not allow deleting manifests "
                                "(HTTP 405)", status=405,
                                fix="enable deletion on the registry")
        if resp.status_code not in (200, 202, 204):
            raise self._fail(resp, f"delete {repo}@{digest}")

    # ------------------------------------------------------------------ blobs
    def blob_size(self, repo: str, digest: str) -> int | None:
        """Size of a blob the registry has (HEAD), None when it has not."""
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope=self.pull_scope(repo),
                            follow_redirects=True)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._fail(resp, f"blob {digest}")
        try:
            return int(resp.headers.get("Content-Length") or -1)
        except ValueError:
            return -1

    def has_blob(self, repo: str, digest: str) -> bool:
        return self.blob_size(repo, digest) is not None

    def get_blob_bytes(self, repo: str, digest: str, max_size: int = 64 * MIB) -> bytes:
        """Fetch a small blob whole (config, bundles) and verify its digest."""
        sink = _BytesSink(max_size)
        self.download_blob(repo, digest, sink)
        data = sink.value()
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != digest:
            raise DigestMismatch(f"blob {digest} from {self.registry}/{repo} hashes to {got}",
                                 fix="the registry sent corrupt data; nothing was stored")
        return data

    def download_blob(self, repo: str, digest: str, sink: BlobSink, *,
                      size: int | None = None, progress: ProgressFn | None = None) -> int:
        """Stream a blob into ``sink``, starting at ``sink.offset`` (Range), and resuming
        with Range after a dropped connection. Returns the bytes written in this call.

        The sink (the store's writer) hashes and verifies; this method checks sizes.
        Bodies are read with the standard library's ``http.client`` into a reused 1 MiB
        buffer (httpx's per-64-KiB overhead tripled the time of a large pull); through
        an HTTP proxy, httpx is used.
        """
        budget = self.transport.budget()
        written = 0
        while True:
            offset = sink.offset if hasattr(sink, "offset") else 0
            offset = max(offset, getattr(sink, "size", offset))
            if size is not None and offset >= size and offset > 0:
                return written
            headers = {}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            if self.net.proxy:
                stream: _BodyStream = _HttpxStream(self.request(
                    "GET", f"/v2/{repo}/blobs/{digest}", scope=self.pull_scope(repo),
                    headers=headers, stream=True, follow_redirects=True))
            else:
                stream = self._open_stdlib(repo, digest, headers, budget)
            try:
                if stream.status == 416 and offset:
                    # our partial file is as long as the blob or longer: start over
                    _truncate(sink)
                    continue
                if stream.status not in (200, 206):
                    raise self._fail_raw(stream.status, stream.error_body(),
                                         f"blob {digest}")
                skip = 0
                if offset and stream.status == 200:
                    # the server ignored Range: discard what we already have
                    if hasattr(sink, "truncate"):
                        _truncate(sink)
                    else:
                        skip = offset
                try:
                    for chunk in stream.chunks():
                        if skip:
                            if len(chunk) <= skip:
                                skip -= len(chunk)
                                continue
                            chunk = chunk[skip:]
                            skip = 0
                        sink.write(chunk)
                        written += len(chunk)
                        if size is not None and getattr(sink, "size", 0) > size:
                            raise DigestMismatch(
                                f"blob {digest} from {self.registry} is longer than "
                                f"announced ({size} bytes)")
                        if progress:
                            progress(len(chunk))
                except _StreamBroken as exc:
                    delay = budget.next_delay()
                    if delay is None:
                        raise RegistryError(f"download of {digest} from {self.registry} "
                                            f"failed: {exc}",
                                            fix="run the pull again; it resumes")
                    log.info("download of %s interrupted (%s); resuming in %.2fs", digest,
                             exc, delay)
                    budget.sleep(delay)
                    continue
                return written
            finally:
                stream.close()

    def _fail_raw(self, status: int, body: bytes, what: str) -> RegistryError:
        text = _error_text_raw(status, body)
        if status == 404:
            return NotFound(f"{what}: not found on {self.registry} ({text})")
        if status == 429:
            return RegistryError(f"{what}: {self.registry} is rate limiting (HTTP 429)",
                                 status=429, fix="wait and try again later")
        return RegistryError(f"{what}: {self.registry} answered {text}", status=status)

    def _open_stdlib(self, repo: str, digest: str, headers: dict[str, str],
                     budget: RetryBudget) -> _BodyStream:
        """GET a blob with http.client: auth challenge answered once, redirects followed
        (Authorization dropped across hosts), connection errors, 429 and 5xx retried
        within ``budget``."""
        scope = self.pull_scope(repo)
        answered = False
        while True:
            hdrs = dict(headers)
            auth = self.auth.header_for(scope)
            if auth:
                hdrs["Authorization"] = auth
            url = self.url(f"/v2/{repo}/blobs/{digest}")
            try:
                stream = _stdlib_get(url, hdrs, self.transport)
            except ssl.SSLError as exc:
                raise RegistryError(f"TLS error talking to {self.host}: {exc.reason or exc}",
                                    fix="check --tls-cert / --tls-verify / --plain-http")
            except (OSError, http.client.HTTPException) as exc:
                delay = budget.next_delay()
                if delay is None:
                    raise RegistryError(f"GET blob {digest} from {self.registry} failed after "
                                        f"{budget.attempt} attempt(s): {type(exc).__name__}",
                                        fix="check that the registry is reachable")
                budget.sleep(delay)
                continue
            if stream.status == 401:
                challenge = stream.header("WWW-Authenticate") or ""
                stream.close()
                if answered:
                    raise self._auth_failed()
                self.auth.answer(self.transport, challenge, scope, sent=hdrs.get("Authorization"))
                answered = True
                continue
            if stream.status == 403:
                stream.close()
                raise AuthError(f"{self.registry}: access to {repo} denied", status=403,
                                fix="check that this account may access the repository")
            if stream.status in RETRY_STATUSES:
                delay = budget.next_delay(parse_retry_after(stream.header("Retry-After")))
                if delay is not None:
                    stream.close()
                    budget.sleep(delay)
                    continue
            return stream

    # ------------------------------------------------------------------ uploads
    def mount_blob(self, repo: str, digest: str, from_repo: str) -> bool:
        """Cross-repository mount; True when the registry mounted the blob."""
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/",
                            scope=f"{self.push_scope(repo)} {self.pull_scope(from_repo)}",
                            params={"mount": digest, "from": from_repo})
        if resp.status_code == 201:
            return True
        if resp.status_code == 202:
            # the registry opened an upload instead; cancel it (best effort)
            loc = resp.headers.get("Location")
            if loc:
                try:
                    self.request("DELETE", self._location(loc, repo),
                                 scope=self.push_scope(repo), retry=False)
                except RegistryError:
                    pass
            return False
        if resp.status_code == 404:
            return False
        raise self._fail(resp, f"mount {digest}")

    def _start_upload(self, repo: str) -> str:
        resp = self.request("POST", f"/v2/{repo}/blobs/uploads/", scope=self.push_scope(repo),
                            headers={"Content-Length": "0"})
        if resp.status_code == 404:
            raise NotFound(f"repository {repo} does not exist on {self.registry} "
                           f"({_error_text(resp)})",
                           fix="create the repository in the registry first (this registry "
                               "does not create repositories on push)")
        if resp.status_code not in (201, 202):
            raise self._fail(resp, f"start upload to {repo}")
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(f"{self.registry} started an upload without Location")
        return self._location(loc, repo)

    def _location(self, loc: str, repo: str) -> str:
        return urljoin(self.base + f"/v2/{repo}/blobs/uploads/", loc)

    def upload_blob(self, repo: str, digest: str, size: int, path: str | Path, *,
                    progress: ProgressFn | None = None) -> None:
        """Upload a blob from a file, streaming from disk (memory stays flat).

        Monolithic PUT for small blobs and registries that need it, chunked PATCH
        otherwise; a 416 on PATCH (ghcr.io's limit) falls back to monolithic.
        """
        budget = self.transport.budget()
        monolithic = self.monolithic_only or size < self.monolithic_limit
        while True:
            sent = _Counter(progress)
            try:
                location = self._start_upload(repo)
                if monolithic:
                    self._put_monolithic(repo, location, digest, size, path, sent)
                else:
                    try:
                        self._put_chunked(repo, location, digest, size, path, sent, budget)
                    except _ChunkRejected:
                        log.info("%s rejected a chunk (416); uploading monolithic",
                                 self.registry)
                        sent.rewind()
                        monolithic = True
                        continue
                return
            except _UploadInterrupted as exc:
                sent.rewind()
                delay = budget.next_delay(exc.retry_after)
                if delay is None:
                    raise RegistryError(f"upload of {digest} to {self.registry}/{repo} "
                                        f"failed: {exc.reason}",
                                        fix="run the push again; blobs already sent are "
                                            "skipped")
                budget.sleep(delay)

    def _put_monolithic(self, repo: str, location: str, digest: str, size: int,
                        path: str | Path, sent: _Counter) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        try:
            resp = self.request("PUT", location, scope=self.push_scope(repo), headers=headers,
                                params={"digest": digest},
                                content=_file_chunks(path, 0, size, sent), retry=False)
        except RegistryError as exc:
            if isinstance(exc, AuthError):
                raise
            raise _UploadInterrupted(str(exc))
        self._check_upload_done(resp, repo, digest)

    def _check_upload_done(self, resp: httpx.Response, repo: str, digest: str) -> None:
        if resp.status_code in (201, 204):
            got = resp.headers.get("Docker-Content-Digest")
            if got and got != digest:
                raise DigestMismatch(f"registry stored {got} for blob {digest}")
            return
        if resp.status_code in (429, 500, 502, 503, 504):
            from kitaudit.registry.transport import parse_retry_after
            raise _UploadInterrupted(f"HTTP {resp.status_code}",
                                     parse_retry_after(resp.headers.get("Retry-After")))
        if resp.status_code == 400 and "DIGEST_INVALID" in resp.text:
            raise DigestMismatch(f"{self.registry} rejected blob {digest}: the local data "
                                 "does not match its digest",
                                 fix="the local store is corrupt: pack or pull again")
        raise self._fail(resp, f"upload {digest} to {repo}")

    def _put_chunked(self, repo: str, location: str, digest: str, size: int,
                     path: str | Path, sent: _Counter, budget: RetryBudget) -> None:
        """PATCH ``chunk_size`` pieces, then PUT with the digest. A chunk that fails
        (connection lost, 5xx) is resumed from the offset the registry reports for the
        upload session (``GET`` on its location), not from the start of the blob."""
        offset = 0
        while offset < size:
            length = min(self.chunk_size, size - offset)
            headers = {"Content-Type": "application/octet-stream",
                       "Content-Length": str(length),
                       "Content-Range": f"{offset}-{offset + length - 1}"}
            failure: str | None = None
            retry_after = None
            try:
                resp = self.request("PATCH", location, scope=self.push_scope(repo),
                                    headers=headers,
                                    content=_file_chunks(path, offset, length, sent),
                                    retry=False)
            except RegistryError as exc:
                if isinstance(exc, AuthError):
                    raise
                failure = str(exc)
            else:
                if resp.status_code == 416:
                    raise _ChunkRejected()
                if resp.status_code in (429, 500, 502, 503, 504):
                    failure = f"HTTP {resp.status_code}"
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                elif resp.status_code not in (201, 202, 204):  # ECR answers 201 to PATCH
                    raise self._fail(resp, f"upload chunk of {digest}")
            if failure is not None:
                state = self._upload_state(repo, location)
                delay = budget.next_delay(retry_after)
                if state is None or delay is None:
                    raise _UploadInterrupted(failure)
                log.info("chunk upload of %s interrupted (%s); resuming at byte %d",
                         digest, failure, state[1])
                budget.sleep(delay)
                location, offset = state
                sent.rewind_to(offset)
                continue
            loc = resp.headers.get("Location")
            if loc:
                location = self._location(loc, repo)
            end = _range_end(resp.headers.get("Range"), offset + length)
            if end != offset + length:
                sent.rewind_to(end)
            offset = end
        resp = self.request("PUT", location, scope=self.push_scope(repo),
                            headers={"Content-Length": "0"}, params={"digest": digest},
                            content=b"")
        self._check_upload_done(resp, repo, digest)

    def _upload_state(self, repo: str, location: str) -> tuple[str, int] | None:
        """(location, bytes received) of an upload session, or None when it is gone."""
        try:
            resp = self.request("GET", location, scope=self.push_scope(repo))
        except RegistryError as exc:
            if isinstance(exc, AuthError):
                raise
            return None
        if resp.status_code not in (200, 204):
            return None
        loc = resp.headers.get("Location")
        return (self._location(loc, repo) if loc else location,
                _range_end(resp.headers.get("Range"), 0))

    def upload_bytes(self, repo: str, data: bytes) -> str:
        """Upload a small blob held in memory (configs, bundles). Skips it if present."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.has_blob(repo, digest):
            return digest
        location = self._start_upload(repo)
        resp = self.request("PUT", location, scope=self.push_scope(repo),
                            headers={"Content-Type": "application/octet-stream"},
                            params={"digest": digest}, content=data)
        self._check_upload_done(resp, repo, digest)
        return digest

    # ------------------------------------------------------------------ listings
    def _pages(self, path: str, *, scope: str, params: dict[str, str] | None = None,
               headers: dict[str, str] | None = None) -> Iterator[httpx.Response]:
        """GET ``path``, then every page its ``Link: <…>; rel="next"`` headers name (the
        first page's ``params`` only; a link seen before ends the walk)."""
        url = path
        seen: set[str] = set()
        while True:
            resp = self.request("GET", url, scope=scope, params=params, headers=headers)
            yield resp
            nxt = _next_link(resp)
            if not nxt or nxt in seen:
                return
            seen.add(nxt)
            url = urljoin(str(resp.url), nxt)
            params = None

    def _paginate(self, path: str, scope: str, key: str, page: int = 1000) -> list[str]:
        out: list[str] = []
        for resp in self._pages(path, scope=scope, params={"n": str(page)}):
            if resp.status_code != 200:
                raise self._fail(resp, f"list {path}")
            try:
                items = resp.json().get(key) or []
            except ValueError:
                raise RegistryError(f"{self.registry} sent an invalid {key} list")
            out.extend(str(i) for i in items)
        return out

    def list_tags(self, repo: str, page_size: int = 1000) -> list[str]:
        """All tags of ``repo`` (following ``Link`` pagination)."""
        return self._paginate(f"/v2/{repo}/tags/list", self.pull_scope(repo), "tags",
                              page_size)

    def catalog(self, page_size: int = 1000) -> list[str]:
        """All repositories (``/v2/_catalog``, paginated); many registries refuse it."""
        return self._paginate("/v2/_catalog", "registry:catalog:*", "repositories",
                              page_size)

    # ------------------------------------------------------------------ referrers API
    def referrers_api(self, repo: str, digest: str,
                      artifact_type: str | None = None) -> list[dict[str, Any]] | None:
        """Descriptors from ``GET /v2/<repo>/referrers/<digest>`` (all pages), or None
        when the registry has no referrers API (404, or not an image index)."""
        out: list[dict[str, Any]] = []
        pages = self._pages(f"/v2/{repo}/referrers/{digest}", scope=self.pull_scope(repo),
                            params={"artifactType": artifact_type} if artifact_type else None,
                            headers={"Accept": mt.OCI_INDEX})
        for page, resp in enumerate(pages):
            first = page == 0
            if resp.status_code == 404 and first:
                return None
            if resp.status_code != 200:
                if first and resp.status_code in (400, 405):
                    return None
                raise self._fail(resp, f"referrers of {digest}")
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
            if ctype != mt.OCI_INDEX:
                if first:
                    return None
                raise RegistryError(f"{self.registry}: referrers page has Content-Type "
                                    f"{ctype or '(none)'}")
            try:
                doc = resp.json()
            except ValueError:
                raise RegistryError(f"{self.registry}: referrers response is not JSON")
            manifests = doc.get("manifests") if isinstance(doc, dict) else None
            if not isinstance(manifests, list):
                raise RegistryError(f"{self.registry}: referrers response is not an index")
            out.extend(m for m in manifests if isinstance(m, dict))
        if artifact_type:
            out = [d for d in out if d.get("artifactType") == artifact_type]
        return out

    def probe_referrers_api(self, repo: str) -> bool:
        """True when ``GET referrers/<zero digest>`` answers an image index (ECR sends
        ``OCI-Subject`` without supporting the API, so the header alone is not enough)."""
        zero = "sha256:" + "0" * 64
        return self.referrers_api(repo, zero) is not None


# ---------------------------------------------------------------------- helpers
def _range_end(header: str | None, default: int) -> int:
    """Bytes held by an upload session from its ``Range: 0-N`` header (N+1)."""
    if header:
        m = re.match(r"(?:bytes=)?0-(\d+)", header.strip())
        if m:
            return int(m.group(1)) + 1
    return default


def stream_open(resp: httpx.Response) -> bool:
    return not resp.is_stream_consumed and not resp.is_closed


def _truncate(sink: Any) -> None:
    if hasattr(sink, "truncate"):
        sink.truncate()
    else:
        raise RegistryError("cannot restart a download into this sink")


class _ChunkRejected(Exception):
    pass


class _UploadInterrupted(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Counter:
    """Reports upload progress; can rewind the reported total when a retry restarts."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self.progress = progress
        self.total = 0

    def add(self, n: int) -> None:
        self.total += n
        if self.progress:
            self.progress(n)

    def rewind(self) -> None:
        self.rewind_to(0)

    def rewind_to(self, position: int) -> None:
        if self.progress and position != self.total:
            self.progress(position - self.total)
        self.total = position


def _file_chunks(path: str | Path, offset: int, length: int,
                 counter: _Counter) -> Callable[[], Iterator[bytes]]:
    """A re-startable streamed body: reads ``length`` bytes of ``path`` from ``offset``."""

    def gen() -> Iterator[bytes]:
        start = counter.total
        with open(path, "rb") as fh:
            fh.seek(offset)
            remaining = length
            while remaining > 0:
                chunk = fh.read(min(IO_CHUNK, remaining))
                if not chunk:
                    raise RegistryError(f"{path} is shorter than expected")
                remaining -= len(chunk)
                counter.add(len(chunk))
                yield chunk
        del start

    return gen


class _BytesSink:
    def __init__(self, limit: int) -> None:
        self.offset = 0
        self.size = 0
        self.limit = limit
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise RegistryError(f"blob larger than {self.limit} bytes; stream it instead")
        self._parts.append(bytes(data))
        return len(data)

    def truncate(self) -> None:
        self._parts.clear()
        self.size = self.offset = 0

    def value(self) -> bytes:
        return b"".join(self._parts)


# ---------------------------------------------------------------------- body streams
class _StreamBroken(Exception):
    """The connection broke while a body was being read (resume with Range)."""


class _BodyStream:
    status: int

    def header(self, name: str) -> str | None:
        raise NotImplementedError

    def chunks(self) -> Iterator[bytes | memoryview]:
        raise NotImplementedError

    def error_body(self) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _HttpxStream(_BodyStream):
    def __init__(self, resp: httpx.Response) -> None:
        self.resp = resp
        self.status = resp.status_code

    def header(self, name: str) -> str | None:
        return self.resp.headers.get(name)

    def chunks(self) -> Iterator[bytes | memoryview]:
        try:
            yield from self.resp.iter_raw()
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise _StreamBroken(type(exc).__name__)

    def error_body(self) -> bytes:
        try:
            return self.resp.read()[:65536]
        except (httpx.HTTPError, httpx.StreamError):
            return b""

    def close(self) -> None:
        self.resp.close()


class _StdlibStream(_BodyStream):
    BUF = 1 << 20

    def __init__(self, conn: http.client.HTTPConnection,
                 resp: http.client.HTTPResponse) -> None:
        self.conn = conn
        self.resp = resp
        self.status = resp.status

    def header(self, name: str) -> str | None:
        return self.resp.getheader(name)

    def chunks(self) -> Iterator[bytes | memoryview]:
        buf = bytearray(self.BUF)
        view = memoryview(buf)
        try:
            while True:
                n = self.resp.readinto(view)
                if not n:
                    # http.client's readinto returns 0 (no IncompleteRead) when the
                    # peer closes early: compare with the announced length ourselves
                    if self.resp.length:
                        raise _StreamBroken(f"connection closed with {self.resp.length} "
                                            "bytes missing")
                    return
                yield view[:n]
        except (OSError, http.client.HTTPException) as exc:
            raise _StreamBroken(type(exc).__name__)

    def error_body(self) -> bytes:
        try:
            return self.resp.read(65536)
        except (OSError, http.client.HTTPException):
            return b""

    def close(self) -> None:
        self.conn.close()


def _stdlib_get(url: str, headers: dict[str, str], transport: Transport,
                max_redirects: int = 5) -> _StdlibStream:
    for _ in range(max_redirects + 1):
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        timeout = transport.net.timeout
        if parts.scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname or "", port, timeout=timeout, context=transport.ssl_context())
        else:
            conn = http.client.HTTPConnection(parts.hostname or "", port, timeout=timeout)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request("GET", path, headers={"User-Agent": "kitaudit", **headers})
            resp = conn.getresponse()
        except BaseException:
            conn.close()
            raise
        if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
            target = urljoin(url, resp.getheader("Location") or "")
            conn.close()
            if urlsplit(target).netloc != parts.netloc:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = target
            continue
        return _StdlibStream(conn, resp)
    raise RegistryError(f"too many redirects fetching {url.split('?', 1)[0]}")
