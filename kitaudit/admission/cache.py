"""The admission cache: positive results only.

An entry says "this digest, asked for by this reference, passed under these policies
and this trust material, fully verified, at time T". It is keyed by
:class:`CacheKey` (reference, digest, policy hash, trust hash) and expires after the
TTL. The reference is part of the key because policies and waivers read it
(``reference.*``, repository globs): the same digest may pass under one name and fail
under another.

Only a :class:`~kitaudit.admission.verifier.Verdict` with ``fully_verified`` set is
stored — a clean pass: signatures and attestations verified, every policy rule
evaluated to ``pass`` (or ``waived``), no warning, no error. Denials, errors, timeouts,
passes with warnings and anything allowed only because of warn mode or the failure
policy are never stored (:meth:`ResultCache.put` refuses them), so a cache hit can only
ever repeat a definite, clean "yes".
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from kitaudit.admission.verifier import Verdict


@dataclass(frozen=True)
class CacheKey:
    reference: str
    digest: str
    policy_hash: str
    trust_hash: str


class ResultCache:
    """A bounded, thread-safe LRU of clean passes with a TTL (seconds; 0 disables)."""

    def __init__(self, ttl: float = 300.0, max_entries: int = 10_000, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[CacheKey, tuple[float, Verdict]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: CacheKey) -> Verdict | None:
        """The cached clean pass for ``key``, or None (missing or expired)."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= now:
                if entry is not None:
                    del self._entries[key]
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: CacheKey, verdict: Verdict, *, expires_at: float | None = None) -> bool:
        """Store ``verdict`` if it is a fully verified pass for exactly ``key.digest``;
        return whether it was stored. ``expires_at`` (clock seconds) can shorten the TTL,
        e.g. to a waiver's expiry."""
        if self.ttl <= 0 or not cacheable(verdict, key):
            return False
        expiry = self._clock() + self.ttl
        if expires_at is not None:
            expiry = min(expiry, expires_at)
        with self._lock:
            self._entries[key] = (expiry, verdict)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def cacheable(verdict: Verdict, key: CacheKey) -> bool:
    """Only a clean, fully verified pass of the digest in the key."""
    return (verdict.decision == "pass" and verdict.fully_verified
            and not verdict.warnings and not verdict.failures and not verdict.problems
            and verdict.digest == key.digest)
