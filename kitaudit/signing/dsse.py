"""DSSE (Dead Simple Signing Envelope) and in-toto Statement v1, as cosign writes them.

* PAE: ``"DSSEv1" SP len(type) SP type SP len(body) SP body`` (lengths in ASCII decimal).
* Statement: ``{"_type":"https://in-toto.io/Statement/v1","subject":[{"digest":
  {"sha256":"<hex>"}}],"predicateType":"<uri>","predicate":{...}}`` — the subject has no
  ``name``, exactly as ``cosign sign`` / ``cosign attest`` write it for an image.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from kitaudit.errors import VerificationError
from kitaudit.mediatypes import IN_TOTO_PAYLOAD

STATEMENT_TYPE_V1 = "https://in-toto.io/Statement/v1"
# Older in-toto statements (cosign < 2.0 attestations) — accepted on read.
STATEMENT_TYPE_V01 = "https://in-toto.io/Statement/v0.1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: the bytes that are actually signed."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _hex_of(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef"
                                                      for c in hexpart):
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return hexpart


def statement(subject_digest: str, predicate_type: str, predicate: dict[str, Any]) -> bytes:
    """An in-toto Statement v1 over one subject (``sha256:<hex>``), compact JSON in the
    field order cosign uses."""
    doc = {
        "_type": STATEMENT_TYPE_V1,
        "subject": [{"digest": {"sha256": _hex_of(subject_digest)}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def statement_with_raw_predicate(subject_digest: str, predicate_type: str,
                                 predicate_json: bytes) -> bytes:
    """Like :func:`statement` but splices an already-serialized JSON predicate (the
    ML-BOM bytes) without re-encoding it; the predicate must be a JSON object."""
    stripped = predicate_json.strip()
    if not stripped.startswith(b"{") or not stripped.endswith(b"}"):
        raise ValueError("predicate must be a JSON object")
    head = statement(subject_digest, predicate_type, {})
    assert head.endswith(b'"predicate":{}}')
    return head[:-3] + stripped + b"}"


def json_object(data: bytes | str, what: str) -> dict[str, Any]:
    """Parse JSON that must be an object; :class:`VerificationError` otherwise."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise VerificationError(f"malformed {what}: not JSON")
    if not isinstance(doc, dict):
        raise VerificationError(f"malformed {what}: not a JSON object")
    return doc


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope with decoded payload and signatures."""

    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def to_dict(self) -> dict[str, Any]:
        """protojson form used inside Sigstore bundles (and for ``.att`` layers)."""
        return {
            "payload": base64.b64encode(self.payload).decode(),
            "payloadType": self.payload_type,
            "signatures": [{"sig": base64.b64encode(s).decode()} for s in self.signatures],
        }

    @classmethod
    def from_dict(cls, doc: Any) -> Envelope:
        """Parse the JSON form. Raises :class:`VerificationError` when malformed."""
        try:
            if not isinstance(doc, dict):
                raise TypeError
            payload = base64.b64decode(doc["payload"], validate=True)
            payload_type = doc["payloadType"]
            sigs = tuple(base64.b64decode(s["sig"], validate=True) for s in doc["signatures"])
            if not isinstance(payload_type, str):
                raise TypeError
        except (KeyError, TypeError, binascii.Error, ValueError):
            raise VerificationError("malformed DSSE envelope")
        if not sigs:
            raise VerificationError("DSSE envelope has no signature")
        return cls(payload_type, payload, sigs)


@dataclass(frozen=True)
class Statement:
    """A parsed in-toto statement."""

    type: str
    subject_digests: tuple[str, ...]  # "sha256:<hex>" of every subject with a sha256
    predicate_type: str
    predicate: Any
    raw: bytes

    @classmethod
    def parse(cls, payload_type: str, payload: bytes) -> Statement:
        """Parse a DSSE payload as an in-toto statement. Raises
        :class:`VerificationError` if the payload type or the document is not one."""
        if payload_type != IN_TOTO_PAYLOAD:
            raise VerificationError(f"DSSE payload type is {payload_type!r}, "
                                    f"expected {IN_TOTO_PAYLOAD}")
        doc = json_object(payload, "in-toto statement")
        stype = doc.get("_type")
        if stype not in (STATEMENT_TYPE_V1, STATEMENT_TYPE_V01):
            raise VerificationError(f"unknown in-toto statement type {stype!r}")
        subjects = doc.get("subject")
        ptype = doc.get("predicateType")
        if not isinstance(subjects, list) or not subjects or not isinstance(ptype, str):
            raise VerificationError("in-toto statement lacks subject or predicateType")
        digests: list[str] = []
        for sub in subjects:
            d = sub.get("digest") if isinstance(sub, dict) else None
            if not isinstance(d, dict):
                raise VerificationError("in-toto statement subject without digest")
            hexpart = d.get("sha256")
            if isinstance(hexpart, str):
                digests.append(f"sha256:{hexpart.lower()}")
        return cls(stype, tuple(digests), ptype, doc.get("predicate"), payload)

    def covers(self, digest: str) -> bool:
        return digest.lower() in self.subject_digests
