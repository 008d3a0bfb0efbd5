"""Digest helpers: validation and streaming SHA-256."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kitaudit.errors import KitauditError

CHUNK = 1 << 20  # 1 MiB: large enough that hashing releases the GIL, small enough for flat memory

_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


def is_digest(text: str) -> bool:
    """True for a well-formed ``sha256:<64 hex>`` digest (the only algorithm we store)."""
    return bool(_DIGEST_RE.match(text))


def check_digest(text: str) -> str:
    if not is_digest(text):
        raise KitauditError(f"not a sha256 digest: {text[:80]!r}",
                            fix="use the form sha256:<64 lowercase hex digits>")
    return text


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unique_by_digest(descriptors: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The descriptors in order, each ``digest`` kept once (its first descriptor)."""
    seen: set[str] = set()
    out = []
    for desc in descriptors:
        if desc["digest"] not in seen:
            seen.add(desc["digest"])
            out.append(desc)
    return out


def sha256_file(path: str | Path) -> tuple[str, int]:
    """Digest and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size
