"""pytest plugin: real registries (Debian's CNCF distribution 2.8 ``docker-registry``) on
free loopback ports, a token issuer, TLS material and a fault-injecting proxy.

Fixtures (all skip cleanly when /usr/bin/docker-registry is missing):

* ``registry``          plain HTTP, no auth (session scope; use unique repository names)
* ``basic_registry``    htpasswd basic auth (bcrypt file generated here), user/password in
                        ``.username``/``.password``
* ``tls_registry``      HTTPS with a CA made by trustme (``.ca_path``)
* ``token_registry``    ``auth: token``: JWTs (ES256) from an in-test issuer thread that the
                        registry itself validates with ``rootcertbundle``
* ``make_registry``     factory for a fresh registry (function scope) with any of the above
* ``fault_proxy``       factory: a loopback HTTP proxy in front of a registry that can drop
                        connections mid-body, answer 500/429, flip a byte or go slowly, and
                        counts the body bytes it forwards per request
* ``kit_home``          a fresh ``KITAUDIT_HOME`` (store + credentials) for the test
* ``make_kit``          the function :func:`build_modelkit`: a small ModelKit built by hand
                        in a store (Kitfile config with digests + raw layers), tagged

Registry tests are marked ``@pytest.mark.registry``; a missing binary skips them with a
message. Fixtures kill their processes at teardown.

The proxy can also serve the OCI referrers API (``referrers_api=True``) and honour
``If-Match`` on manifest PUTs (``if_match=True``), which distribution 2.8 does not: see
:class:`FaultProxy`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REGISTRY_BIN = "/usr/bin/docker-registry"


def _need_registry() -> None:
    if not os.path.exists(REGISTRY_BIN):
        pytest.skip(f"{REGISTRY_BIN} is missing (apt-get install docker-registry)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- token issuer
def libtrust_key_id(public_key: Any) -> str:
    """distribution's (libtrust) key ID: base32 of the first 240 bits of
    sha256(DER SubjectPublicKeyInfo), in groups of four joined by ':'."""
    from cryptography.hazmat.primitives import serialization

    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(b32[i:i + 4] for i in range(0, len(b32), 4))


class TokenIssuer:
    """A token server (docker token spec) issuing ES256 JWTs signed by a key whose
    self-signed certificate is the registry's ``rootcertbundle``."""

    def __init__(self, workdir: Path, users: dict[str, str], service: str = "kitaudit-test",
                 issuer: str = "kitaudit-test-issuer", ttl: int = 300) -> None:
        import datetime as dt

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.users = users
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> user (identitytoken)
        self.refresh_grants = 0
        self.service = service
        self.issuer = issuer
        self.ttl = ttl
        self.requests: list[dict[str, Any]] = []
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kitaudit test tokens")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1))
                .sign(self.key, hashes.SHA256()))
        self.cert_path = workdir / "token-root.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_pem = self.key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
        self.kid = libtrust_key_id(self.key.public_key())
        issuer_self = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                issuer_self._handle(self)

            def do_POST(self) -> None:
                issuer_self._handle_refresh(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handle_refresh(self, h: BaseHTTPRequestHandler) -> None:
        """OAuth2 refresh-token grant (docker's ``identitytoken`` credentials)."""
        length = int(h.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(h.rfile.read(length).decode())
        user = self.refresh_tokens.get((form.get("refresh_token") or [""])[0])
        if (form.get("grant_type") or [""])[0] != "refresh_token" or user is None:
            self.requests.append({"user": None, "ok": False, "grant": "refresh_token"})
            h.send_response(401)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        scopes = " ".join(form.get("scope") or []).split()
        self.refresh_grants += 1
        self._issue(h, user, scopes)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlparse(h.path)
        query = urllib.parse.parse_qs(url.query)
        user = None
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            except ValueError:
                u, p = "", ""
            if self.users.get(u) != p or not u:
                self.requests.append({"user": u, "ok": False})
                body = b'{"details":"invalid username or password"}'
                h.send_response(401)
                h.send_header("Content-Type", "application/json")
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                h.wfile.write(body)
                return
            user = u
        scopes = []
        for s in query.get("scope", []):
            scopes.extend(s.split(" "))
        self._issue(h, user, scopes)

    def _issue(self, h: BaseHTTPRequestHandler, user: str | None, scopes: list[str]) -> None:
        import jwt

        access = []
        for s in scopes:
            parts = s.split(":")
            if len(parts) < 3:
                continue
            typ, actions = parts[0], parts[-1]
            name = ":".join(parts[1:-1])
            if user is None:
                continue  # anonymous: no access at all
            access.append({"type": typ, "name": name, "actions": actions.split(",")})
        self.requests.append({"user": user, "ok": True, "scopes": scopes})
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service,
                  "exp": now + self.ttl, "nbf": now - 10, "iat": now,
                  "jti": secrets.token_hex(8), "access": access}
        token = jwt.encode(claims, self.key_pem, algorithm="ES256",
                           headers={"kid": self.kid})
        body = json.dumps({"token": token, "access_token": token, "expires_in": self.ttl,
                           "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                      time.gmtime(now))}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------- registry
@dataclass
class RegistryServer:
    """One running docker-registry process."""

    workdir: Path
    port: int
    scheme: str = "http"
    username: str | None = None
    password: str | None = None
    ca_path: Path | None = None
    token_issuer: TokenIssuer | None = None
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def net(self) -> dict[str, Any]:
        """Network keyword arguments for kitaudit's library functions."""
        if self.scheme == "http":
            return {"plain_http": True}
        return {"tls_cert": str(self.ca_path)}

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.token_issuer:
            self.token_issuer.close()


def start_registry(workdir: Path, *, auth: str | None = None, tls: bool = False,
                   users: dict[str, str] | None = None,
                   client_ca: bool = False) -> RegistryServer:
    """Start docker-registry with a generated config; ``auth`` None/"htpasswd"/"token";
    ``client_ca``: with TLS, require client certificates issued by the test CA."""
    _need_registry()
    import yaml

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = RegistryServer(workdir=workdir, port=port, scheme="https" if tls else "http")
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")},
                    "delete": {"enabled": True},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if tls:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        server.ca_path = workdir / "ca.pem"
        ca.cert_pem.write_to_path(str(server.ca_path))
        cert.cert_chain_pems[0].write_to_path(str(workdir / "server.pem"))
        for extra in cert.cert_chain_pems[1:]:
            with open(workdir / "server.pem", "ab") as fh:
                fh.write(extra.bytes())
        cert.private_key_pem.write_to_path(str(workdir / "server.key"))
        config["http"]["tls"] = {"certificate": str(workdir / "server.pem"),
                                 "key": str(workdir / "server.key")}
        if client_ca:
            config["http"]["tls"]["clientcas"] = [str(server.ca_path)]
            probe = ca.issue_cert("readiness-probe")
            probe.private_key_and_cert_chain_pem.write_to_path(str(workdir / "probe.pem"))
            server.extra["probe_cert"] = str(workdir / "probe.pem")
        server.extra["ca"] = ca
    users = users or {"alice": "s3cret-" + secrets.token_hex(4)}
    if auth == "htpasswd":
        import bcrypt

        lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}"
                 for u, p in users.items()]
        (workdir / "htpasswd").write_text("\n".join(lines) + "\n")
        config["auth"] = {"htpasswd": {"realm": "kitaudit-test",
                                       "path": str(workdir / "htpasswd")}}
    elif auth == "token":
        issuer = TokenIssuer(workdir, users)
        server.token_issuer = issuer
        config["auth"] = {"token": {"realm": issuer.realm, "service": issuer.service,
                                    "issuer": issuer.issuer,
                                    "rootcertbundle": str(issuer.cert_path)}}
    if auth:
        server.username, server.password = next(iter(users.items()))
    (workdir / "config.yml").write_text(yaml.safe_dump(config))
    server.log_path = workdir / "registry.log"
    log = open(server.log_path, "wb")
    server.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(workdir / "config.yml")],
                                   stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    log.close()
    _wait_ready(server)
    return server


def _wait_ready(server: RegistryServer, timeout: float = 15.0) -> None:
    import ssl

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc and server.proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {server.log_text()[-2000:]}")
        try:
            if server.scheme == "https":
                ctx = ssl.create_default_context(cafile=str(server.ca_path))
                if server.extra.get("probe_cert"):
                    ctx.load_cert_chain(server.extra["probe_cert"])
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                    "127.0.0.1", server.port, timeout=2, context=ctx)
            else:
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
            conn.request("GET", "/v2/")
            status = conn.getresponse().status
            conn.close()
            if status in (200, 401):
                return
        except OSError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"docker-registry did not start: {server.log_text()[-2000:]}")


@pytest.fixture(scope="session")
def _registry_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registries")


@pytest.fixture(scope="session")
def registry(_registry_root: Path) -> Iterator[RegistryServer]:
    server = start_registry(_registry_root / "plain")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def basic_registry(_registry_root: Path) -> Iterator[RegistryServer]:
    server = start_registry(_registry_root / "basic", auth="htpasswd")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_registry(_registry_root: Path) -> Iterator[RegistryServer]:
    server = start_registry(_registry_root / "tls", tls=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token_registry(_registry_root: Path) -> Iterator[RegistryServer]:
    server = start_registry(_registry_root / "token", auth="token")
    yield server
    server.stop()


@pytest.fixture
def make_registry(tmp_path: Path) -> Iterator[Callable[..., RegistryServer]]:
    started: list[RegistryServer] = []

    def make(**kwargs: Any) -> RegistryServer:
        server = start_registry(tmp_path / f"registry-{len(started)}", **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


# ---------------------------------------------------------------------- fault proxy
@dataclass
class Fault:
    """One injected fault. ``kind``: drop (close after ``after`` body bytes), status
    (answer ``status`` with ``headers`` and ``body`` without asking the registry), rewrite
    (forward, but answer the registry's response with ``status`` instead), flip (xor
    one byte at ``at``), slow (sleep ``delay`` seconds per 64 KiB). Applies to requests
    whose method matches and whose path matches the regex ``path``, ``times`` times
    (None = always)."""

    kind: str
    path: str = r"/blobs/sha256:"
    body: bytes = b'{"errors":[{"code":"UNAVAILABLE"}]}'
    method: str = "GET"
    times: int | None = 1
    after: int = 0
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    at: int = 0
    delay: float = 0.0
    skip: int = 0  # matching requests let through before the fault applies
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return method == self.method and re.search(self.path, path) is not None


@dataclass
class Exchange:
    method: str
    path: str
    status: int
    body_bytes: int  # response body bytes forwarded
    request_bytes: int


class FaultProxy:
    """A loopback HTTP proxy in front of a plain-HTTP registry.

    * faults (see :class:`Fault`), and a log of every exchange with the bytes forwarded;
    * also usable as a forward HTTP proxy (``--proxy``): absolute-URI requests are served;
    * ``referrers_api=True``: implements the OCI distribution-spec 1.1 referrers API on
      top of distribution 2.8 (which has none): a manifest PUT carrying ``subject``
      answers ``OCI-Subject``, and ``GET /v2/<name>/referrers/<digest>`` returns an
      image index (Content-Type ``application/vnd.oci.image.index.v1+json``) of the
      referrers' descriptors (artifactType and annotations included), filtered by
      ``artifactType`` when asked (with ``OCI-Filters-Applied``), paginated with ``Link``
      (``page_size``); an unknown digest gives an empty index, not 404.
    * ``subject_header_only=True``: answers ``OCI-Subject`` without serving the API, as
      ECR does (the referrers GET goes on to distribution, which answers 404);
    * ``if_match=True``: honours ``If-Match`` on manifest PUTs (412 when the tag's
      current digest differs or the tag is absent) and ``If-None-Match: *`` (412 when
      the tag exists), serialising manifest writes.
    """

    def __init__(self, upstream: RegistryServer, *, referrers_api: bool = False,
                 if_match: bool = False, page_size: int = 2,
                 subject_header_only: bool = False) -> None:
        if upstream.scheme != "http":
            raise ValueError("the proxy fronts plain-HTTP registries")
        self.upstream = upstream
        self.faults: list[Fault] = []
        self.exchanges: list[Exchange] = []
        self.referrers_api = referrers_api
        self.subject_header_only = subject_header_only  # ECR: header, but no API
        self.if_match = if_match
        self.page_size = page_size
        self.forward_requests = 0  # requests received as a forward proxy
        self.referrers: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._manifest_lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                try:
                    proxy._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    net = property(lambda self: {"plain_http": True})

    def add(self, kind: str, **kwargs: Any) -> Fault:
        fault = Fault(kind, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.exchanges.clear()

    def bytes_for(self, digest: str) -> int:
        """Response body bytes forwarded for GETs of blob ``digest``."""
        return sum(e.body_bytes for e in self.exchanges
                   if e.method == "GET" and e.path.split("?")[0].endswith("/blobs/" + digest))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # -------------------------------------------------------------- handling
    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.hits += 1
                    return fault
        return None

    def _send(self, h: BaseHTTPRequestHandler, status: int, headers: dict[str, str],
              body: bytes = b"") -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        method, path = h.command, h.path
        if path.startswith("http://"):  # used as a forward proxy (absolute URI)
            self.forward_requests += 1
            path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        fault = self._take_fault(method, path)
        if fault and fault.kind == "status":
            self._log(method, path, fault.status, 0, len(body))
            self._send(h, fault.status, fault.headers, fault.body)
            return
        m_ref = re.match(r"^/v2/(.+)/referrers/(sha256:[0-9a-f]{64})(\?.*)?$", path)
        if self.referrers_api and m_ref and method == "GET":
            self._serve_referrers(h, m_ref.group(1), m_ref.group(2), m_ref.group(3) or "")
            return
        m_man = re.match(r"^/v2/(.+)/manifests/([^/?]+)$", path)
        lock = self._manifest_lock if (m_man and method == "PUT") else contextlib.nullcontext()
        with lock:
            if m_man and method == "PUT" and self.if_match and h.headers.get("If-Match"):
                current = self._upstream_digest(h, m_man.group(1), m_man.group(2))
                want = h.headers["If-Match"].strip().strip('"')
                if current != want:
                    self._log(method, path, 412, 0, len(body))
                    self._send(h, 412, {}, b'{"errors":[{"code":"PRECONDITION_FAILED"}]}')
                    return
            if m_man and method == "PUT" and self.if_match and \
                    h.headers.get("If-None-Match", "").strip() == "*":
                if self._upstream_digest(h, m_man.group(1), m_man.group(2)) is not None:
                    self._log(method, path, 412, 0, len(body))
                    self._send(h, 412, {}, b'{"errors":[{"code":"PRECONDITION_FAILED"}]}')
                    return
            self._forward(h, method, path, body, fault, m_man)

    def _upstream_digest(self, h: BaseHTTPRequestHandler, repo: str, ref: str) -> str | None:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream.port, timeout=30)
        try:
            conn.request("HEAD", f"/v2/{repo}/manifests/{ref}", headers={
                "Accept": "application/vnd.oci.image.index.v1+json, "
                          "application/vnd.oci.image.manifest.v1+json",
                "Host": h.headers.get("Host", self.host)})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                return None
            return resp.getheader("Docker-Content-Digest")
        finally:
            conn.close()

    def _forward(self, h: BaseHTTPRequestHandler, method: str, path: str, body: bytes,
                 fault: Fault | None, m_man: re.Match[str] | None) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream.port, timeout=60)
        headers = {k: v for k, v in h.headers.items()
                   if k.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                        "if-match", "if-none-match", "content-length")}
        if body or method in ("PUT", "POST", "PATCH"):
            headers["Content-Length"] = str(len(body))
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        out_headers = [(k, v) for k, v in resp.getheaders()
                       if k.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                            "content-length")]
        if ((self.referrers_api or self.subject_header_only) and m_man and method == "PUT"
                and resp.status == 201):
            subject = self._record_referrer(m_man.group(1), body, h.headers.get(
                "Content-Type", ""))
            if subject:
                out_headers.append(("OCI-Subject", subject))
        declared = resp.getheader("Content-Length")
        status = fault.status if fault and fault.kind == "rewrite" else resp.status
        h.send_response(status)
        for k, v in out_headers:
            h.send_header(k, v)
        if method == "HEAD" or resp.status in (204, 304):
            h.send_header("Content-Length", declared or "0")
            resp.read()
            conn.close()
            self._log(method, path, status, 0, len(body))
            h.end_headers()
            return
        if declared is None:
            data = resp.read()
            declared = str(len(data))
            chunks: Iterator[bytes] = iter([data])
        else:
            chunks = iter(lambda: resp.read(65536), b"")
        # logged before the body goes out and counted before each write, so that a
        # client that has its answer always finds the exchange complete in the log
        exchange = self._log(method, path, status, 0, len(body))
        h.send_header("Content-Length", declared)
        h.end_headers()
        try:
            for chunk in chunks:
                sent = exchange.body_bytes
                if fault and fault.kind == "flip" and sent <= fault.at < sent + len(chunk):
                    i = fault.at - sent
                    chunk = chunk[:i] + bytes([chunk[i] ^ 0xFF]) + chunk[i + 1:]
                if fault and fault.kind == "drop" and sent + len(chunk) > fault.after:
                    part = chunk[:max(0, fault.after - sent)]
                    exchange.body_bytes += len(part)
                    h.wfile.write(part)
                    h.wfile.flush()
                    with contextlib.suppress(OSError):
                        h.connection.shutdown(socket.SHUT_RDWR)
                    h.close_connection = True
                    return
                if fault and fault.kind == "slow":
                    time.sleep(fault.delay)
                exchange.body_bytes += len(chunk)
                h.wfile.write(chunk)
        finally:
            conn.close()

    def _log(self, method: str, path: str, status: int, sent: int,
             received: int) -> Exchange:
        exchange = Exchange(method, path, status, sent, received)
        with self._lock:
            self.exchanges.append(exchange)
        return exchange

    def _record_referrer(self, repo: str, body: bytes, ctype: str) -> str | None:
        try:
            doc = json.loads(body)
        except ValueError:
            return None
        subject = doc.get("subject") if isinstance(doc, dict) else None
        if not isinstance(subject, dict) or "digest" not in subject:
            return None
        desc = {"mediaType": doc.get("mediaType") or ctype.split(";")[0],
                "digest": "sha256:" + hashlib.sha256(body).hexdigest(), "size": len(body)}
        at = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
        if at:
            desc["artifactType"] = at
        if doc.get("annotations"):
            desc["annotations"] = doc["annotations"]
        with self._lock:
            entries = self.referrers.setdefault((repo, subject["digest"]), [])
            if not any(e["digest"] == desc["digest"] for e in entries):
                entries.append(desc)
        return subject["digest"]

    def _serve_referrers(self, h: BaseHTTPRequestHandler, repo: str, digest: str,
                         query: str) -> None:
        params = urllib.parse.parse_qs(query.lstrip("?"))
        with self._lock:
            entries = list(self.referrers.get((repo, digest), []))
        headers = {"Content-Type": "application/vnd.oci.image.index.v1+json"}
        if params.get("artifactType"):
            entries = [e for e in entries if e.get("artifactType") == params["artifactType"][0]]
            headers["OCI-Filters-Applied"] = "artifactType"
        page = int(params.get("page", ["0"])[0])
        start = page * self.page_size
        chunk = entries[start:start + self.page_size]
        if start + self.page_size < len(entries):
            nxt = {"page": str(page + 1)}
            if params.get("artifactType"):
                nxt["artifactType"] = params["artifactType"][0]
            headers["Link"] = (f'</v2/{repo}/referrers/{digest}?'
                               f'{urllib.parse.urlencode(nxt)}>; rel="next"')
        body = json.dumps({"schemaVersion": 2,
                           "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": chunk}).encode()
        self._log("GET", h.path, 200, len(body), 0)
        self._send(h, 200, headers, body)


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    proxies: list[FaultProxy] = []

    def make(upstream: RegistryServer, **kwargs: Any) -> FaultProxy:
        proxy = FaultProxy(upstream, **kwargs)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


# ---------------------------------------------------------------------- local side
@pytest.fixture
def kit_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private KITAUDIT_HOME, DOCKER_CONFIG and HOME for credentials isolation."""
    home = tmp_path / "kithome"
    home.mkdir()
    monkeypatch.setenv("KITAUDIT_HOME", str(home))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("REGISTRY_AUTH_FILE", raising=False)
    monkeypatch.delenv("KITAUDIT_REGISTRY_ENDPOINTS", raising=False)
    (tmp_path / "home").mkdir()
    return home


@dataclass
class BuiltKit:
    ref: str
    digest: str
    manifest: dict[str, Any]
    raw: bytes
    blobs: dict[str, bytes]       # digest -> content (config and layers)
    layers: dict[str, str]        # label -> layer digest


def build_modelkit(store: Any, ref: str, *, seed: str = "x",
                   sizes: dict[str, int] | None = None) -> BuiltKit:
    """A small KitOps ModelKit built by hand in ``store``: raw layers for a model, a
    code file, two datasets (``training``, ``validation``) and a doc; the config is the
    Kitfile JSON with every element's layer digest. Tagged as ``ref``."""
    sizes = sizes or {}
    specs = [
        ("model", "model", "model.bin", {"name": "m"}),
        ("code", "code", "src/train.py", {}),
        ("training", "dataset", "data/train.csv", {"name": "training"}),
        ("validation", "dataset", "data/val.csv", {"name": "validation"}),
        ("docs", "docs", "README.md", {}),
    ]
    blobs: dict[str, bytes] = {}
    layers_desc = []
    labels: dict[str, str] = {}
    entries: dict[str, Any] = {}
    for label, base, path, extra in specs:
        n = sizes.get(label, 1000 + len(label))
        unit = hashlib.sha256(f"{seed}/{label}".encode()).digest()
        data = (unit * (n // len(unit) + 1))[:n]
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        store.put_blob(data)
        labels[label] = digest
        layers_desc.append({"mediaType": f"application/vnd.kitops.modelkit.{base}.v1.raw",
                            "digest": digest, "size": len(data),
                            "annotations": {"org.cncf.model.filepath": path}})
        elem = {**extra, "path": path, "digest": digest,
                "diffId": digest}
        entries.setdefault(base, []).append(elem)
    config = {"manifestVersion": "1.0.0",
              "package": {"name": f"test-{seed}"},
              "model": entries["model"][0],
              "code": entries["code"],
              "datasets": entries["dataset"],
              "docs": entries["docs"]}
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    config_digest = store.put_blob(config_bytes)
    blobs[config_digest] = config_bytes
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": "application/vnd.kitops.modelkit.manifest.v1+json",
                "config": {"mediaType": "application/vnd.kitops.modelkit.config.v1+json",
                           "digest": config_digest, "size": len(config_bytes)},
                "layers": layers_desc,
                "annotations": {"ml.kitops.modelkit.cli-version": "test"}}
    raw = json.dumps(manifest, separators=(",", ":")).encode()
    digest = store.put_manifest(raw, tags=[ref])
    return BuiltKit(ref, digest, manifest, raw, blobs, labels)


@pytest.fixture
def make_kit() -> Callable[..., BuiltKit]:
    return build_modelkit


def tmpdir_for_skopeo() -> str:
    return tempfile.mkdtemp(prefix="kitaudit-skopeo-")


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
