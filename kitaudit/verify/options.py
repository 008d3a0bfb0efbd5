"""What ``kitaudit verify`` accepts as trusted, and the compiled form of it.

:class:`VerifyOptions` mirrors the command line (cosign's flags plus policies).
:func:`compile_options` loads everything that does not depend on the ModelKit once —
public keys, the Sigstore trusted root, policies, waivers — so that a caller verifying
many references (the admission webhook, the crawler) pays for it once.

Rules enforced here (fail closed):

* keyless signatures are only accepted with an identity constraint *and* an issuer
  constraint (``--certificate-identity[-regexp]`` and
  ``--certificate-oidc-issuer[-regexp]``), as cosign requires;
* at least one way to accept a signer must be given (``--key`` or the keyless pair);
* a trusted root is loaded when keyless signers are accepted, or when one is asked for
  (``--trusted-root``/``--offline``) to check the log entries of key-based bundles.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kitaudit.errors import UsageError

#: Blobs up to this size (referrer manifests, bundles, configs) are kept in the
#: per-CompiledOptions content cache. Content-addressed, so never stale.
CACHE_BLOB_LIMIT = 1 << 20
CACHE_TOTAL_LIMIT = 32 << 20


@dataclass
class VerifyOptions:
    """The trust settings and checks of one verification (see docs/verify.md)."""

    keys: Sequence[str] = ()
    certificate_identity: str | None = None
    certificate_identity_regexp: str | None = None
    certificate_oidc_issuer: str | None = None
    certificate_oidc_issuer_regexp: str | None = None
    trusted_root: str | None = None
    offline: bool = False
    staging: bool = False
    policies: Sequence[str] = ()
    params: Mapping[str, str] = field(default_factory=dict)
    waivers: str | None = None
    require_sbom: bool = True
    deep: bool = False
    now: datetime | None = None

    @property
    def keyless(self) -> bool:
        return any((self.certificate_identity, self.certificate_identity_regexp,
                    self.certificate_oidc_issuer, self.certificate_oidc_issuer_regexp))

    def check(self) -> None:
        """Raise :class:`UsageError` for contradictory or insufficient trust settings."""
        if self.certificate_identity and self.certificate_identity_regexp:
            raise UsageError("--certificate-identity and --certificate-identity-regexp are "
                             "exclusive", fix="give one of them")
        if self.certificate_oidc_issuer and self.certificate_oidc_issuer_regexp:
            raise UsageError("--certificate-oidc-issuer and --certificate-oidc-issuer-regexp "
                             "are exclusive", fix="give one of them")
        if self.keyless:
            if not (self.certificate_identity or self.certificate_identity_regexp):
                raise UsageError("keyless verification needs an identity constraint",
                                 fix="add --certificate-identity or "
                                     "--certificate-identity-regexp")
            if not (self.certificate_oidc_issuer or self.certificate_oidc_issuer_regexp):
                raise UsageError("keyless verification needs an issuer constraint",
                                 fix="add --certificate-oidc-issuer or "
                                     "--certificate-oidc-issuer-regexp")
        if not self.keys and not self.keyless:
            raise UsageError("no accepted signer given",
                             fix="pass --key cosign.pub, or --certificate-identity[-regexp] "
                                 "with --certificate-oidc-issuer[-regexp]")
        if self.trusted_root and self.staging:
            raise UsageError("--trusted-root and --staging are exclusive")
        for what, pattern in (("--certificate-identity-regexp",
                               self.certificate_identity_regexp),
                              ("--certificate-oidc-issuer-regexp",
                               self.certificate_oidc_issuer_regexp)):
            if pattern is not None:
                import re

                try:
                    re.compile(pattern)
                except re.error as err:
                    raise UsageError(f"{what} {pattern!r} is not a valid regular expression: "
                                     f"{err}")


class ResultCache:
    """Positive results by (digest, fingerprint of the compiled options), with a TTL.

    Only results whose decision is ``pass`` and which were fully verified are stored
    (see :func:`kitaudit.verify.verify`); a deny or an error is never cached.
    """

    def __init__(self, ttl: float, max_entries: int = 4096) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str) -> Any:
        with self._lock:
            hit = self._items.get(digest)
            if hit is None:
                return None
            if hit[0] < time.monotonic():
                del self._items[digest]
                return None
            self._items.move_to_end(digest)
            return hit[1]

    def put(self, digest: str, value: Any) -> None:
        with self._lock:
            self._items[digest] = (time.monotonic() + self.ttl, value)
            self._items.move_to_end(digest)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class BlobCache:
    """Small immutable blobs (manifests fetched by digest, bundles, configs) by digest."""

    def __init__(self, limit: int = CACHE_TOTAL_LIMIT) -> None:
        self.limit = limit
        self.size = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str) -> bytes | None:
        with self._lock:
            data = self._items.get(digest)
            if data is not None:
                self._items.move_to_end(digest)
            return data

    def put(self, digest: str, data: bytes) -> None:
        if len(data) > CACHE_BLOB_LIMIT:
            return
        with self._lock:
            if digest in self._items:
                return
            self._items[digest] = data
            self.size += len(data)
            while self.size > self.limit and self._items:
                _, old = self._items.popitem(last=False)
                self.size -= len(old)


@dataclass
class CompiledOptions:
    """Everything loaded from :class:`VerifyOptions`, reusable across verifications.

    ``fingerprint`` changes whenever the trust material, the policies (rules or params),
    the waivers or the checks change: callers may key caches on (digest, fingerprint).
    """

    options: VerifyOptions
    signer_policy: Any                 # kitaudit.signing.SignerPolicy
    trusted_root: Any                  # sigstore TrustedRoot or None
    trust_source: str                  # what the root is, for messages and fingerprints
    policies: list[Any]                # kitaudit.policy.Policy
    waivers: list[Any]                 # kitaudit.policy.Waiver
    fingerprint: str
    results: ResultCache | None = None
    blobs: BlobCache = field(default_factory=BlobCache)
    _clients: dict[tuple[str, str], Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, registry: str, net: Any) -> Any:
        """A registry client kept open for reuse (connection pooling, auth tokens)."""
        key = (registry, repr(net))  # NetOptions holds a dict: not hashable
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                from kitaudit.registry.client import RegistryClient

                client = RegistryClient(registry, net=net)
                self._clients[key] = client
            return client

    def close(self) -> None:
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()


def _file_digest(path: str) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}")


def compile_options(options: VerifyOptions, *, cache_ttl: float = 0.0) -> CompiledOptions:
    """Load keys, trust root, policies and waivers once. Raises
    :class:`~kitaudit.errors.KitauditError` (usage, bad policy or CEL, unreadable key,
    trust root unavailable). ``cache_ttl`` > 0 keeps positive results that long (seconds).
    """
    from kitaudit.signing.verify_bundle import SignerPolicy, load_trusted_root

    options.check()
    keys: tuple[Any, ...] = ()
    key_ids: list[str] = []
    if options.keys:
        keys = SignerPolicy.from_key_files(*options.keys).keys
        from cryptography.hazmat.primitives import serialization

        for k in keys:
            der = k.public_bytes(serialization.Encoding.DER,
                                 serialization.PublicFormat.SubjectPublicKeyInfo)
            key_ids.append(hashlib.sha256(der).hexdigest())
    signer_policy = SignerPolicy(
        keys=keys,
        identity=options.certificate_identity,
        identity_regexp=options.certificate_identity_regexp,
        issuer=options.certificate_oidc_issuer,
        issuer_regexp=options.certificate_oidc_issuer_regexp)

    root = None
    trust_source = "none"
    if options.keyless or options.trusted_root or options.offline:
        root = load_trusted_root(options.trusted_root, staging=options.staging,
                                 offline=options.offline)
        if options.trusted_root:
            trust_source = f"file:{options.trusted_root}#{_file_digest(options.trusted_root)}"
        else:
            trust_source = ("staging" if options.staging else "production") + \
                (" (pinned, offline)" if options.offline else " (TUF)")

    policies: list[Any] = []
    waivers: list[Any] = []
    if options.policies:
        from kitaudit.policy.loader import load_policies

        policies = load_policies(list(options.policies), params=dict(options.params) or None)
    elif options.params:
        raise UsageError("--param needs a --policy that declares it")
    if options.waivers:
        from kitaudit.policy.waivers import load_waivers

        waivers = load_waivers(options.waivers)

    fp = hashlib.sha256(json.dumps({
        "keys": sorted(key_ids),
        "identity": [options.certificate_identity, options.certificate_identity_regexp],
        "issuer": [options.certificate_oidc_issuer, options.certificate_oidc_issuer_regexp],
        "trust": trust_source,
        "policies": [p.fingerprint() for p in policies],
        "waivers": [w.to_dict() for w in waivers],
        "require_sbom": options.require_sbom, "deep": options.deep,
    }, sort_keys=True, default=str).encode()).hexdigest()
    return CompiledOptions(
        options=options, signer_policy=signer_policy, trusted_root=root,
        trust_source=trust_source, policies=policies, waivers=waivers,
        fingerprint="sha256:" + fp,
        results=ResultCache(cache_ttl) if cache_ttl > 0 else None)
