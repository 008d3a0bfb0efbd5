"""AdmissionReview v1: reading the request, writing the response.

The API server POSTs ``{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
"request": {...}}`` and expects the same envelope back with ``response.uid`` equal to
``request.uid``, ``allowed``, and on denial a ``status`` (``code``, ``message``) that
``kubectl`` shows as ``admission webhook "..." denied the request: <message>``.
``warnings`` are shown to the client whether or not the request is allowed (kubectl
prints them as ``Warning: ...``); Kubernetes may truncate warnings over 256 characters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
MAX_MESSAGE = 4000          # the status message (kubectl prints it whole)
MAX_WARNING = 256           # the API server may truncate longer warnings
MAX_WARNINGS = 20
MAX_AUDIT_VALUE = 2000


class MalformedReview(ValueError):
    """The body is not an AdmissionReview v1 request (answered with HTTP 400)."""


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    operation: str
    kind: str               # request.kind.kind, e.g. "Pod"
    group: str
    namespace: str
    name: str
    obj: Any
    old_obj: Any
    dry_run: bool
    api_version: str = API_VERSION


def parse_review(body: bytes) -> AdmissionRequest:
    """Parse an AdmissionReview request; raises :class:`MalformedReview` with a one-line
    reason."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise MalformedReview(f"body is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise MalformedReview("body is not a JSON object")
    if doc.get("kind") != KIND:
        raise MalformedReview(f"kind is {doc.get('kind')!r}, expected {KIND!r}")
    if doc.get("apiVersion") != API_VERSION:
        raise MalformedReview(f"apiVersion is {doc.get('apiVersion')!r}, expected "
                              f"{API_VERSION!r} (set admissionReviewVersions: [\"v1\"])")
    req = doc.get("request")
    if not isinstance(req, dict):
        raise MalformedReview("request is missing or not an object")
    uid = req.get("uid")
    if not isinstance(uid, str) or not uid:
        raise MalformedReview("request.uid is missing or not a string")
    op = req.get("operation")
    if op not in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        raise MalformedReview(f"request.operation is {op!r}, expected CREATE, UPDATE, "
                              f"DELETE or CONNECT")
    kind = req.get("kind")
    if not isinstance(kind, dict) or not isinstance(kind.get("kind"), str):
        raise MalformedReview("request.kind is missing or not a GroupVersionKind")
    obj = req.get("object")
    old = req.get("oldObject")
    if op in ("CREATE", "UPDATE") and not isinstance(obj, dict):
        raise MalformedReview(f"request.object is missing for {op}")
    if op == "UPDATE" and not isinstance(old, dict):
        raise MalformedReview("request.oldObject is missing for UPDATE")
    name = req.get("name")
    if not name and isinstance(obj, dict) and isinstance(obj.get("metadata"), dict):
        meta = obj["metadata"]
        # Pods of a ReplicaSet have only generateName when they are admitted
        name = meta.get("name") or (f"{meta['generateName']}*"
                                    if isinstance(meta.get("generateName"), str) else "")
    return AdmissionRequest(
        uid=uid, operation=op, kind=kind["kind"], group=str(kind.get("group") or ""),
        namespace=str(req.get("namespace") or ""), name=str(name or ""),
        obj=obj, old_obj=old, dry_run=bool(req.get("dryRun")))


@dataclass
class Outcome:
    """What the webhook decided for one request."""

    allowed: bool
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    code: int = 403
    reason: str = "Forbidden"
    audit: dict[str, str] = field(default_factory=dict)


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def build_response(uid: str, outcome: Outcome) -> dict[str, Any]:
    """The AdmissionReview v1 response document."""
    response: dict[str, Any] = {"uid": uid, "allowed": outcome.allowed}
    if not outcome.allowed:
        response["status"] = {"status": "Failure", "code": outcome.code,
                              "reason": outcome.reason,
                              "message": shorten(outcome.message, MAX_MESSAGE)}
    elif outcome.message:
        response["status"] = {"status": "Success", "code": 200,
                              "message": shorten(outcome.message, MAX_MESSAGE)}
    if outcome.audit:
        # the API server records these in the audit log as "<webhook name>/<key>"
        response["auditAnnotations"] = {k: shorten(v, MAX_AUDIT_VALUE)
                                        for k, v in outcome.audit.items()}
    if outcome.warnings:
        warnings = [shorten(w, MAX_WARNING) for w in outcome.warnings]
        if len(warnings) > MAX_WARNINGS:
            extra = len(warnings) - (MAX_WARNINGS - 1)
            warnings = [*warnings[:MAX_WARNINGS - 1], f"... and {extra} more"]
        response["warnings"] = warnings
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}
