"""HTTP transport for registries: one ``httpx.Client`` with TLS options, and bounded
retries with exponential backoff and full jitter.

What is retried: connection errors (refused, reset, dropped mid-response, timeouts),
``429`` (honouring ``Retry-After``) and ``500/502/503/504``. What is never retried here:
``401``/``403`` (the auth layer answers one challenge, then gives up with one message)
and any other 4xx. Retries are bounded both in count (``max_attempts``) and in wall time
(``max_retry_seconds``), so a dead registry fails in seconds, not minutes.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import httpx

from kitaudit.errors import RegistryError, UsageError

log = logging.getLogger("kitaudit.registry")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class NetOptions:
    """Network options shared by every remote command (kit's flags).

    ``plain_http``: talk HTTP instead of HTTPS (loopback, labs). ``tls_verify``: check the
    server certificate (default on). ``tls_cert``: a CA bundle file trusted in addition to
    the system store being replaced (httpx semantics: the bundle is the trust store).
    ``cert``/``key``: client certificate and key for mutual TLS.
    ``endpoints``: map a registry name to the ``host:port`` actually contacted (see
    ``KITAUDIT_REGISTRY_ENDPOINTS``); references and credentials keep the logical name.
    """

    plain_http: bool = False
    tls_verify: bool = True
    tls_cert: str | None = None
    cert: str | None = None
    key: str | None = None
    timeout: float = 60.0
    connect_timeout: float = 10.0
    max_attempts: int = 5
    max_retry_seconds: float = 60.0
    proxy: str | None = None
    concurrency: int = 5
    endpoints: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_kwargs(cls, **net: Any) -> NetOptions:
        """Build from keyword arguments (``net=NetOptions(...)`` as the base, overridden by
        the others); ``None`` values are ignored, an unknown name is a
        :class:`UsageError`."""
        names = {f.name for f in fields(cls)}
        unknown = set(net) - names - {"net"}
        if unknown:
            raise UsageError(f"unknown network option(s): {', '.join(sorted(unknown))}")
        if isinstance(net.get("net"), NetOptions):
            base: NetOptions = net.pop("net")
            values = {f.name: getattr(base, f.name) for f in fields(cls)}
        else:
            net.pop("net", None)
            values = {}
        values.update({k: v for k, v in net.items() if v is not None})
        return cls(**values)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


def backoff_delay(attempt: int, *, base: float = 0.25, cap: float = 8.0,
                  rng: Callable[[], float] = random.random) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)]."""
    return rng() * min(cap, base * (2 ** attempt))


class RetryBudget:
    """Counts attempts and elapsed time for one logical operation."""

    def __init__(self, max_attempts: int, max_seconds: float,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.max_attempts = max(1, max_attempts)
        self.max_seconds = max_seconds
        self.start = time.monotonic()
        self.attempt = 0
        self._sleep = sleep

    def next_delay(self, retry_after: float | None = None) -> float | None:
        """Delay before the next attempt, or None when the budget is spent."""
        self.attempt += 1
        if self.attempt >= self.max_attempts:
            return None
        delay = backoff_delay(self.attempt - 1)
        if retry_after is not None:
            delay = max(delay, retry_after)
        remaining = self.max_seconds - (time.monotonic() - self.start)
        if delay > remaining:
            return None
        return delay

    def sleep(self, delay: float) -> None:
        if delay > 0:
            self._sleep(delay)


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


class Transport:
    """An ``httpx.Client`` plus the retry policy. Thread-safe (one client per push/pull)."""

    def __init__(self, net: NetOptions | None = None) -> None:
        self.net = net or NetOptions()
        verify: Any = self.net.tls_verify
        if self.net.plain_http and not self.net.proxy:
            verify = False  # no TLS at all: skip loading the CA store (50 ms)
        elif self.net.tls_verify and self.net.tls_cert:
            import ssl

            ctx = ssl.create_default_context(cafile=self.net.tls_cert)
            if self.net.cert:
                ctx.load_cert_chain(self.net.cert, self.net.key)
            verify = ctx
        elif self.net.tls_verify and self.net.cert:
            import ssl

            ctx = ssl.create_default_context()
            ctx.load_cert_chain(self.net.cert, self.net.key)
            verify = ctx
        elif not self.net.tls_verify and self.net.cert:
            import ssl

            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.load_cert_chain(self.net.cert, self.net.key)
            verify = ctx
        self._verify = verify
        self._ssl_context: Any = None
        limits = httpx.Limits(max_connections=max(10, self.net.concurrency * 2),
                              max_keepalive_connections=max(10, self.net.concurrency * 2))
        timeout = httpx.Timeout(self.net.timeout, connect=self.net.connect_timeout)
        self.client = httpx.Client(verify=verify, timeout=timeout, limits=limits,
                                   proxy=self.net.proxy, follow_redirects=False,
                                   headers={"User-Agent": "kitaudit"})

    def ssl_context(self) -> Any:
        """An ``ssl.SSLContext`` with the same trust settings (for http.client)."""
        if self._ssl_context is None:
            import ssl

            if isinstance(self._verify, ssl.SSLContext):
                self._ssl_context = self._verify
            elif self._verify:
                self._ssl_context = ssl.create_default_context()
            else:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                self._ssl_context = ctx
        return self._ssl_context

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def budget(self) -> RetryBudget:
        return RetryBudget(self.net.max_attempts, self.net.max_retry_seconds)

    def send(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
             content: bytes | Callable[[], Iterable[bytes]] | None = None,
             params: Mapping[str, str] | None = None, stream: bool = False,
             retry: bool = True, follow_redirects: bool = False,
             budget: RetryBudget | None = None) -> httpx.Response:
        """Send one request, retrying transient failures.

        ``content`` is bytes or a zero-argument callable returning a fresh iterable of
        chunks (so a streamed upload can be re-sent from disk on retry). With
        ``stream=True`` the caller must close the response.
        Raises ``RegistryError`` when the budget is spent; returns any other response
        (including 4xx) for the caller to interpret.
        """
        budget = budget or self.budget()
        while True:
            body: Any = content() if callable(content) else content
            request = self.client.build_request(method, url, headers=dict(headers or {}),
                                                content=body, params=params)
            try:
                response = self.client.send(request, stream=stream,
                                            follow_redirects=follow_redirects)
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
                    raise RegistryError(f"{method} {_safe_url(url)}: {_describe(exc)}")
                if isinstance(exc, httpx.ConnectError) and _is_tls_protocol_error(exc):
                    raise TLSHandshakeError(
                        f"{request.url.host}:{request.url.port or 443} does not speak TLS "
                        f"({_describe(exc)})",
                        fix="pass --plain-http if this registry serves plain HTTP")
                if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise RegistryError(
                        f"TLS certificate of {request.url.host} could not be verified",
                        fix="pass --tls-cert CA.pem, or --tls-verify=false for a lab "
                            "registry, or --plain-http for a plain-HTTP registry")
                if not retry:
                    raise RegistryError(f"{method} {_safe_url(url)}: {_describe(exc)}")
                delay = budget.next_delay()
                if delay is None:
                    raise RegistryError(
                        f"{method} {_safe_url(url)} failed after {budget.attempt} attempt(s): "
                        f"{_describe(exc)}",
                        fix="check that the registry is reachable (and --plain-http for "
                            "an HTTP registry)")
                log.info("retrying %s %s in %.2fs after %s", method, _safe_url(url), delay,
                         _describe(exc))
                budget.sleep(delay)
                continue
            if retry and response.status_code in RETRY_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                delay = budget.next_delay(retry_after)
                if delay is None:
                    if stream:
                        response.close()
                    return response
                if stream:
                    response.close()
                log.info("retrying %s %s in %.2fs after HTTP %d", method, _safe_url(url),
                         delay, response.status_code)
                budget.sleep(delay)
                continue
            return response


class TLSHandshakeError(RegistryError):
    """The server did not answer the TLS handshake (e.g. it speaks plain HTTP)."""


def _is_tls_protocol_error(exc: BaseException) -> bool:
    text = str(exc)
    return any(marker in text for marker in ("WRONG_VERSION_NUMBER", "wrong version number",
                                             "UNEXPECTED_EOF", "record layer failure",
                                             "http request", "HTTP_REQUEST"))


def _safe_url(url: str) -> str:
    """The URL without query string (upload URLs carry opaque session state)."""
    return str(url).split("?", 1)[0]
