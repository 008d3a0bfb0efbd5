"""The validating admission webhook: decision logic and its HTTPS server.

:class:`AdmissionController` turns an AdmissionReview body into a response: it finds the
ModelKit references (:mod:`kitaudit.admission.extract`), checks each one — cache, else
``Verifier.resolve`` + ``Verifier.verify`` on a thread pool, one verification per
(reference, digest) at a time however many requests ask — and decides within the
per-request deadline. :class:`WebhookServer` serves it over HTTPS (stdlib
``ThreadingHTTPServer`` + ``ssl``): ``POST /validate``, ``GET /healthz``, ``GET /metrics``.

Decision rules (docs/admission.md):

* enforce mode: any reference denied (or unverifiable: an invalid ``kit://`` reference,
  a ``MODELKIT_REF`` from ``valueFrom``) → not allowed, the message names each
  reference, where it is, and the failed rules. A reference that could not be decided
  (verify error, registry unreachable, deadline passed) → the failure policy (``deny``
  by default; ``allow`` admits with a warning).
* warn mode: always allowed; everything that enforce mode would deny becomes a
  warning (``would deny: ...``).
* UPDATE: only references not already in ``oldObject`` are checked (the unchanged ones
  were admitted when they were written), so editing labels of a running Pod does not
  depend on a registry.
* DELETE and CONNECT are allowed without looking.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from kitaudit.admission.cache import CacheKey, ResultCache
from kitaudit.admission.extract import Extraction, ImageMatcher, extract
from kitaudit.admission.review import (
    AdmissionRequest,
    MalformedReview,
    Outcome,
    build_response,
    parse_review,
)
from kitaudit.admission.verifier import Verdict, Verifier

log = logging.getLogger("kitaudit.admission")

MAX_BODY = 16 * 1024 * 1024   # object + oldObject of the largest etcd object, with room
IDLE_TIMEOUT = 120.0          # keep-alive connections from the API server
MAX_CONNECTIONS = 512         # open connections (one thread each); more are closed at once
MAX_REFERENCES = 64           # distinct ModelKit references verified per review

Mode = Literal["enforce", "warn"]
FailurePolicy = Literal["deny", "allow"]


@dataclass
class WebhookConfig:
    """``timeout``: seconds per request (keep it below the webhook's ``timeoutSeconds``);
    ``image_patterns``: globs over ``registry/repository`` of container images that are
    ModelKits; ``workers``: verifications running at the same time; ``tag_ttl``: seconds
    a tag's digest is reused without asking the registry (0, the default: every review
    resolves the tag again)."""

    mode: Mode = "enforce"
    failure_policy: FailurePolicy = "deny"
    timeout: float = 8.0
    image_patterns: tuple[str, ...] = ()
    workers: int = 16
    tag_ttl: float = 0.0

    def __post_init__(self) -> None:
        from kitaudit.errors import UsageError

        if self.mode not in ("enforce", "warn"):
            raise UsageError(f"mode {self.mode!r}: expected enforce or warn")
        if self.failure_policy not in ("deny", "allow"):
            raise UsageError(f"failure policy {self.failure_policy!r}: expected deny or allow")
        if not 0 < self.timeout <= 30:
            raise UsageError(f"timeout {self.timeout}: expected more than 0 and at most 30 "
                             f"seconds (the API server's limit)",
                             fix="keep it below the webhook's timeoutSeconds")
        if self.workers < 1:
            raise UsageError("workers must be at least 1")
        if self.tag_ttl < 0:
            raise UsageError("tag TTL must not be negative")


@dataclass
class Check:
    """The result for one reference in one request (``verdict`` None: not decided in
    time)."""

    reference: str
    paths: list[str]
    verdict: Verdict | None
    cached: bool = False


@dataclass
class Metrics:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: dict[str, int] = field(default_factory=dict)

    def inc(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return dict(self.counts)


class AdmissionController:
    """Admission decisions for AdmissionReview bodies (no HTTP here)."""

    def __init__(self, verifier: Verifier, config: WebhookConfig | None = None, *,
                 cache: ResultCache | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.verifier = verifier
        self.config = config or WebhookConfig()
        self.cache = cache if cache is not None else ResultCache()
        self.images = ImageMatcher(self.config.image_patterns)
        self.metrics = Metrics()
        self._clock = clock
        self._pool = cf.ThreadPoolExecutor(max_workers=self.config.workers,
                                           thread_name_prefix="kitaudit-verify")
        self._inflight: dict[CacheKey, cf.Future[Verdict]] = {}
        self._tags: dict[str, tuple[float, str]] = {}  # tag reference -> (expiry, digest)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(self.verifier, "close", None)
        if callable(close):
            close()

    # ------------------------------------------------------------------ entry point
    def review(self, body: bytes, *, started: float | None = None) -> dict[str, Any]:
        """The AdmissionReview response for ``body``; raises :class:`MalformedReview`."""
        started = self._clock() if started is None else started
        req = parse_review(body)
        outcome = self.decide(req, started + self.config.timeout)
        self.metrics.inc("reviews_allowed" if outcome.allowed else "reviews_denied")
        # one line per review: the admission decision record
        log.info("uid=%s %s %s %s/%s allowed=%s %.1fms%s%s", req.uid, req.operation, req.kind,
                 req.namespace, req.name, outcome.allowed,
                 (self._clock() - started) * 1000,
                 f" message={outcome.message!r}" if outcome.message else "",
                 f" warnings={outcome.warnings!r}" if outcome.warnings else "")
        return build_response(req.uid, outcome)

    def references(self, req: AdmissionRequest) -> Extraction:
        """The references to check: all of the object's; for UPDATE only new ones."""
        found = extract(req.obj, req.kind, images=self.images)
        if req.operation == "UPDATE":
            before = extract(req.old_obj, req.kind, images=self.images)
            old_refs = set(before.unique_references())
            old_problems = set(before.problems)
            found.references = [f for f in found.references if f.reference not in old_refs]
            found.problems = [p for p in found.problems if p not in old_problems]
        return found

    def decide(self, req: AdmissionRequest, deadline: float) -> Outcome:
        if req.operation not in ("CREATE", "UPDATE"):
            return Outcome(True)
        found = self.references(req)
        refs = found.unique_references()
        if not refs and not found.problems:
            return Outcome(True)
        if len(refs) > MAX_REFERENCES:
            # bounded work per review: more is not a real workload, and is denied
            found.problems.append(f"{len(refs)} ModelKit references in one object; at most "
                                  f"{MAX_REFERENCES} are verified per review")
            refs = []
        checks = self.check_all(refs, found, deadline)
        return self._outcome(req, found, checks)

    # ------------------------------------------------------------------ checking
    def check_all(self, refs: list[str], found: Extraction, deadline: float) -> list[Check]:
        checks: list[Check] = []
        pending: dict[cf.Future[tuple[Verdict, bool]], Check] = {}
        for ref in refs:
            check = Check(ref, found.paths_of(ref), None)
            checks.append(check)
            quick = self._cached_quick(ref)
            if quick is not None:
                check.verdict, check.cached = quick, True
                continue
            try:
                fut = self._pool.submit(self._check_one, ref, deadline)
            except RuntimeError:  # shutting down
                check.verdict = Verdict(ref, "error", problems=("webhook is shutting down",))
                continue
            pending[fut] = check
        if pending:
            done, not_done = cf.wait(pending, timeout=max(0.0, deadline - self._clock()))
            for fut in done:
                try:
                    pending[fut].verdict, pending[fut].cached = fut.result()
                except Exception as err:  # a bug in a verifier must not allow
                    log.exception("verification of %s failed", pending[fut].reference)
                    pending[fut].verdict = Verdict(pending[fut].reference, "error",
                                                   problems=(f"internal error: {err}",))
            if not_done:
                self.metrics.inc("deadline_exceeded")
        return checks

    def _key(self, ref: str, digest: str) -> CacheKey:
        return CacheKey(ref, digest, self.verifier.policy_hash, self.verifier.trust_hash)

    def _known_digest(self, ref: str) -> str | None:
        """The digest of a pinned reference, or of a tag resolved less than ``tag_ttl``
        seconds ago; None when the registry must be asked."""
        _, at, digest = ref.partition("@")
        if at:
            return digest
        if self.config.tag_ttl <= 0:
            return None
        with self._lock:
            entry = self._tags.get(ref)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def _cached_quick(self, ref: str) -> Verdict | None:
        """A cache hit found without a registry call is answered without a thread."""
        digest = self._known_digest(ref)
        if digest is None:
            return None
        hit = self.cache.get(self._key(ref, digest))
        if hit is not None:
            self.metrics.inc("cache_hits")
        return hit

    def _check_one(self, ref: str, deadline: float) -> tuple[Verdict, bool]:
        """(verdict, from cache) for one reference; runs on the pool."""
        from kitaudit.errors import KitauditError

        digest = self._known_digest(ref)
        if digest is None:
            try:
                digest = self.verifier.resolve(ref)
            except KitauditError as err:
                return Verdict(ref, "error", problems=(f"cannot resolve: {err.message}",)), \
                    False
            if self.config.tag_ttl > 0:
                with self._lock:
                    if len(self._tags) >= 10_000:
                        self._tags.clear()
                    self._tags[ref] = (self._clock() + self.config.tag_ttl, digest)
        key = self._key(ref, digest)
        hit = self.cache.get(key)
        if hit is not None:
            self.metrics.inc("cache_hits")
            return hit, True
        with self._lock:
            fut = self._inflight.get(key)
            owner = fut is None
            if owner:
                fut = cf.Future()
                self._inflight[key] = fut
        assert fut is not None
        if not owner:
            try:
                return fut.result(timeout=max(0.0, deadline - self._clock())), False
            except cf.TimeoutError:
                return Verdict(ref, "error", digest, problems=("deadline exceeded",)), False
        self.metrics.inc("verifications")
        try:
            verdict = self._verify(ref, digest)
            expires = None
            if verdict.waiver_expiry is not None:
                expires = self._clock() + (verdict.waiver_expiry - time.time())
            if self.cache.put(key, verdict, expires_at=expires):
                self.metrics.inc("cache_stores")
            fut.set_result(verdict)
            return verdict, False
        except BaseException as err:
            fut.set_exception(err)
            raise
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    def _verify(self, ref: str, digest: str) -> Verdict:
        from kitaudit.errors import KitauditError

        try:
            return self.verifier.verify(ref, digest)
        except KitauditError as err:
            return Verdict(ref, "error", digest, problems=(err.message,))

    # ------------------------------------------------------------------ deciding
    def _outcome(self, req: AdmissionRequest, found: Extraction,
                 checks: list[Check]) -> Outcome:
        denials: list[str] = list(found.problems)
        undecided: list[str] = []
        warnings: list[str] = []
        would_deny: list[str] = list(found.problems)  # warn mode: one warning per failure
        audit: dict[str, list[str]] = {}
        for c in checks:
            v = c.verdict
            label = {None: "undecided", "pass": "verified", "deny": "denied",
                     "error": "undecided"}[v.decision if v is not None else None]
            pinned = c.reference if "@" in c.reference or v is None or not v.digest \
                else f"{c.reference}@{v.digest}"
            audit.setdefault(label, []).append(pinned)
            where = f"{c.reference} ({', '.join(c.paths)})" if c.paths else c.reference
            if v is None:
                undecided.append(f"{where}: verification did not finish within "
                                 f"{self.config.timeout:g}s")
                continue
            at = f"{where} [{v.digest}]" if v.digest and "@" not in c.reference else where
            if v.decision == "deny":
                why = list(v.failures) or list(v.problems) or ["denied"]
                denials.append(f"{at}: failed {'; '.join(why)}")
                would_deny.extend(f"{c.reference}: {w}" for w in why)
            elif v.decision == "error":
                why = "; ".join(v.problems) or "unknown error"
                undecided.append(f"{at}: could not verify: {why}")
            warnings.extend(f"{c.reference}: {w}" for w in v.warnings)

        subject = f"{req.kind} {req.namespace + '/' if req.namespace else ''}{req.name}".strip()
        outcome = self._decision(subject, denials, undecided, warnings, would_deny)
        outcome.audit = {k: ",".join(v) for k, v in audit.items()}
        if found.problems:
            outcome.audit["unverifiable"] = "; ".join(found.problems)
        outcome.audit["mode"] = self.config.mode
        return outcome

    def _decision(self, subject: str, denials: list[str], undecided: list[str],
                  warnings: list[str], would_deny: list[str]) -> Outcome:
        if self.config.mode == "warn":
            verb = "would deny" if self.config.failure_policy == "deny" else "allowed"
            warnings = ([f"would deny: {d}" for d in would_deny] +
                        [f"{verb} (failure policy): {u}" for u in undecided] + warnings)
            return Outcome(True, warnings=[f"kitaudit: {w}" for w in warnings])
        if denials:
            parts = denials + [f"{u} (failure policy: {self.config.failure_policy})"
                               for u in undecided]
            return Outcome(False, f"kitaudit denied {subject}: " + " | ".join(parts),
                           warnings=[f"kitaudit: {w}" for w in warnings])
        if undecided:
            if self.config.failure_policy == "deny":
                self.metrics.inc("failure_policy_applied")
                return Outcome(False, f"kitaudit could not verify {subject} (failure policy: "
                                      f"deny): " + " | ".join(undecided),
                               warnings=[f"kitaudit: {w}" for w in warnings])
            self.metrics.inc("failure_policy_applied")
            warnings = [f"allowed by failure policy: {u}" for u in undecided] + warnings
        return Outcome(True, warnings=[f"kitaudit: {w}" for w in warnings])


# ---------------------------------------------------------------------- HTTPS server
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kitaudit-admission"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: _HTTPServer

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _text(self, code: int, text: str) -> None:
        self._send(code, (text + "\n").encode(), "text/plain; charset=utf-8")

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/healthz", "/readyz", "/livez"):
            self._text(200, "ok")
        elif path == "/metrics":
            c = self.server.controller
            counts = c.metrics.snapshot()
            counts["cache_entries"] = len(c.cache)
            lines = [f"kitaudit_admission_{k} {v}" for k, v in sorted(counts.items())]
            self._send(200, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4")
        else:
            self._text(404, f"not found: {path} (POST /validate, GET /healthz, GET /metrics)")

    def do_POST(self) -> None:
        started = time.monotonic()
        path = self.path.split("?", 1)[0]
        if path != "/validate":
            self._drain()
            self._text(404, f"not found: {path} (the webhook listens on POST /validate)")
            return
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked" or length_text is None:
            self.close_connection = True
            self._text(411, "Content-Length is required")
            return
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            self._text(400, f"bad Content-Length {length_text!r}")
            return
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            self._text(413, f"AdmissionReview of {length} bytes is larger than {MAX_BODY}")
            return
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return
        ctype = self.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if ctype != "application/json":
            self._text(415, f"Content-Type {ctype!r}: the webhook reads application/json")
            return
        controller = self.server.controller
        try:
            response = controller.review(body, started=started)
        except MalformedReview as err:
            controller.metrics.inc("malformed")
            self._text(400, f"malformed AdmissionReview: {err}")
            return
        except Exception:
            log.exception("review failed")
            controller.metrics.inc("internal_errors")
            self._text(500, "internal error while reviewing; see the webhook's log")
            return
        self._send(200, json.dumps(response, separators=(",", ":")).encode())

    def _drain(self) -> None:
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = 0
        if 0 < n <= MAX_BODY:
            self.rfile.read(n)
        elif n:
            self.close_connection = True


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], controller: AdmissionController,
                 tls: TLSFiles | None) -> None:
        self.controller = controller
        self.tls = tls
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.address_family = family
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # responses are written as headers then body: without TCP_NODELAY, Nagle's
        # algorithm holds the body until the client's delayed ACK (~40 ms per review)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self._slots.acquire(blocking=False):
            sock.close()
            log.warning("more than %d open connections: closing one from %s",
                        MAX_CONNECTIONS, addr[0] if addr else "?")
            raise OSError("too many connections")  # socketserver skips this request
        if self.tls is None:
            return sock, addr
        try:
            # the handshake runs in the handler's thread (setup), not in the accept loop
            return self.tls.context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False), addr
        except BaseException:
            self._slots.release()
            sock.close()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        err = sys.exc_info()[1]
        log.info("connection from %s: %s", client_address[0] if client_address else "?",
                 err)


class TLSFiles:
    """The serving certificate and key, reloaded when the files change (cert-manager
    and kubelet rotate mounted Secrets in place)."""

    def __init__(self, certfile: str, keyfile: str) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self._stamp = self._mtimes()
        self.context = self._load()

    def _mtimes(self) -> tuple[float, float]:
        return (os.stat(self.certfile).st_mtime, os.stat(self.keyfile).st_mtime)

    def _load(self) -> ssl.SSLContext:
        from kitaudit.errors import UsageError

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as err:
            raise UsageError(f"cannot load the TLS certificate {self.certfile} and key "
                             f"{self.keyfile}: {err}",
                             fix="give a PEM certificate chain and its private key") from None
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def reload_if_changed(self) -> bool:
        try:
            stamp = self._mtimes()
        except OSError:
            return False
        if stamp == self._stamp:
            return False
        try:
            context = self._load()
        except Exception as err:  # keep serving with the old pair
            log.warning("TLS files changed but do not load (%s); keeping the old ones", err)
            return False
        self.context, self._stamp = context, stamp
        log.info("reloaded TLS certificate %s", self.certfile)
        return True


class WebhookServer:
    """HTTPS (or, for tests only, plain HTTP with ``tls=None``) around a controller."""

    def __init__(self, controller: AdmissionController, *, host: str = "0.0.0.0",  # noqa: S104 - a Pod serves on its own IP
                 port: int = 8443, tls: TLSFiles | None = None,
                 reload_interval: float = 30.0) -> None:
        self.controller = controller
        self.httpd = _HTTPServer((host, port), controller, tls)
        self.reload_interval = reload_interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reloader: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def _reload_loop(self) -> None:
        tls = self.httpd.tls
        while tls is not None and not self._stop.wait(self.reload_interval):
            tls.reload_if_changed()

    def start(self) -> WebhookServer:
        """Serve on a background thread; returns self."""
        self._thread = threading.Thread(target=self.serve_forever, name="kitaudit-webhook",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        if self.httpd.tls is not None and self._reloader is None:
            self._reloader = threading.Thread(target=self._reload_loop, daemon=True,
                                              name="kitaudit-tls-reload")
            self._reloader.start()
        self.httpd.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.controller.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> WebhookServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


# ---------------------------------------------------------------------- entry points
def build_controller(options: Any, *, net: dict[str, Any] | None = None,
                     config: WebhookConfig | None = None,
                     cache_ttl: float = 300.0) -> AdmissionController:
    """A controller verifying with ``kitaudit.verify`` (``options``: a
    ``kitaudit.verify.VerifyOptions``, compiled here once; bad keys, policies or trust
    roots raise now, not at the first review). Registry calls get the request deadline
    as their timeout so that a hung registry cannot hold a worker for long."""
    from kitaudit.admission.verifier import KitauditVerifier

    config = config or WebhookConfig()
    net = dict(net or {})
    net.setdefault("timeout", config.timeout)
    net.setdefault("connect_timeout", min(5.0, config.timeout))
    net.setdefault("max_retry_seconds", config.timeout)
    net.setdefault("max_attempts", 2)
    verifier = KitauditVerifier(options, net=net)
    return AdmissionController(verifier, config, cache=ResultCache(ttl=cache_ttl))


def serve(controller: AdmissionController, *, certfile: str, keyfile: str,
          host: str = "0.0.0.0", port: int = 8443,  # noqa: S104 - a Pod serves on its IP
          ready: Callable[[WebhookServer], None] | None = None) -> None:
    """Serve HTTPS until SIGTERM or SIGINT (Kubernetes stops Pods with SIGTERM)."""
    import signal

    server = WebhookServer(controller, host=host, port=port, tls=TLSFiles(certfile, keyfile))

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: shutting down", signum)
        threading.Thread(target=server.httpd.shutdown, daemon=True).start()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        log.info("kitaudit admission webhook on https://%s:%d/validate (mode %s, failure "
                 "policy %s, timeout %gs)", host, server.port, controller.config.mode,
                 controller.config.failure_policy, controller.config.timeout)
        if ready is not None:
            ready(server)
        server.serve_forever()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        server._stop.set()
        server.httpd.server_close()
        controller.close()
