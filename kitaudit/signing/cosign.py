"""cosign's OCI storage formats for signatures and attestations.

* v3 "new bundle format" (default since cosign 3.0): one OCI referrer manifest per
  Sigstore bundle — artifactType ``application/vnd.dev.sigstore.bundle.v0.3+json``, the
  empty config, one layer (the bundle JSON), annotations
  ``dev.sigstore.bundle.content``, ``dev.sigstore.bundle.predicateType``,
  ``org.opencontainers.image.created``, and ``subject`` = the signed manifest.
* legacy tags: ``sha256-<hex>.sig`` (simplesigning payload layers with the signature in
  layer annotations) and ``sha256-<hex>.att`` (DSSE envelope layers).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kitaudit.digest import sha256_bytes
from kitaudit.mediatypes import (
    ANN_BUNDLE_CONTENT,
    ANN_BUNDLE_PREDICATE,
    ANN_CREATED,
    COSIGN_SIMPLESIGNING,
    DSSE_ENVELOPE,
    OCI_EMPTY,
    OCI_EMPTY_DATA,
    OCI_EMPTY_DIGEST,
    OCI_MANIFEST,
    SIGSTORE_BUNDLE_V03,
)

ANN_LEGACY_SIGNATURE = "dev.cosignproject.cosign/signature"
ANN_LEGACY_CERTIFICATE = "dev.sigstore.cosign/certificate"
ANN_LEGACY_CHAIN = "dev.sigstore.cosign/chain"
ANN_LEGACY_BUNDLE = "dev.sigstore.cosign/bundle"
ANN_LEGACY_TIMESTAMP = "dev.sigstore.cosign/rfc3161timestamp"
ANN_LEGACY_PREDICATE = "predicateType"
OCI_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
SIMPLESIGNING_TYPE = "cosign container image signature"


def rfc3339(created: datetime | None) -> str:
    """``2026-01-02T03:04:05Z`` (UTC, seconds), as cosign writes the created annotation."""
    when = created or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "size": len(data), "digest": sha256_bytes(data), **extra}


def subject_descriptor(desc: dict[str, Any]) -> dict[str, Any]:
    """Only mediaType, size and digest of a descriptor (what cosign puts in ``subject``)."""
    try:
        return {"mediaType": desc["mediaType"], "size": int(desc["size"]),
                "digest": desc["digest"]}
    except (KeyError, TypeError, ValueError):
        raise ValueError("subject descriptor needs mediaType, size and digest")


@dataclass(frozen=True)
class SignedReferrer:
    """A signed object ready to be stored or pushed.

    ``manifest_bytes`` is the manifest to PUT (by digest for referrers; for the legacy
    format to the tag ``tag``). ``blobs`` maps digest → bytes of every blob the
    manifest references (upload them first). ``bundle_bytes`` is the Sigstore bundle
    (for legacy manifests: the bundle the legacy layer was derived from).
    """

    manifest_bytes: bytes
    bundle_bytes: bytes
    predicate_type: str
    artifact_type: str
    blobs: dict[str, bytes] = field(default_factory=dict)
    tag: str | None = None  # set for the legacy .sig / .att manifests
    format: str = "bundle"  # "bundle" | "legacy"

    @property
    def manifest_digest(self) -> str:
        return sha256_bytes(self.manifest_bytes)

    @property
    def manifest(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.manifest_bytes)
        return parsed


def referrer_manifest(bundle_bytes: bytes, subject: dict[str, Any], predicate_type: str, *,
                      created: datetime | None = None,
                      content: str = "dsse-envelope") -> bytes:
    """The cosign v3 referrer manifest wrapping one bundle blob."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGSTORE_BUNDLE_V03,
        "config": {"mediaType": OCI_EMPTY, "size": len(OCI_EMPTY_DATA),
                   "digest": OCI_EMPTY_DIGEST},
        "layers": [descriptor(SIGSTORE_BUNDLE_V03, bundle_bytes)],
        "annotations": {
            ANN_BUNDLE_CONTENT: content,
            ANN_BUNDLE_PREDICATE: predicate_type,
            ANN_CREATED: rfc3339(created),
        },
        "subject": subject_descriptor(subject),
    }
    return _dumps(doc)


def bundle_referrer(bundle_bytes: bytes, subject: dict[str, Any], predicate_type: str, *,
                    created: datetime | None = None) -> SignedReferrer:
    manifest = referrer_manifest(bundle_bytes, subject, predicate_type, created=created)
    return SignedReferrer(
        manifest_bytes=manifest, bundle_bytes=bundle_bytes, predicate_type=predicate_type,
        artifact_type=SIGSTORE_BUNDLE_V03,
        blobs={OCI_EMPTY_DIGEST: OCI_EMPTY_DATA, sha256_bytes(bundle_bytes): bundle_bytes})


def is_cosign_bundle_referrer(manifest: dict[str, Any]) -> bool:
    """cosign's rule when reading: a referrer counts only if its single layer is a
    Sigstore bundle."""
    layers = manifest.get("layers")
    return (isinstance(layers, list) and len(layers) == 1 and isinstance(layers[0], dict)
            and layers[0].get("mediaType") == SIGSTORE_BUNDLE_V03)


# ---------------------------------------------------------------------------
# legacy tag formats

def legacy_tag(manifest_digest: str, suffix: str) -> str:
    """``sha256-<hex>.sig`` / ``.att`` (suffix without the dot)."""
    algo, _, hexpart = manifest_digest.partition(":")
    return f"{algo}-{hexpart}.{suffix}"


def simplesigning_payload(docker_reference: str, manifest_digest: str) -> bytes:
    """The payload ``cosign sign`` signs in the legacy format."""
    doc = {"critical": {"identity": {"docker-reference": docker_reference},
                        "image": {"docker-manifest-digest": manifest_digest},
                        "type": SIMPLESIGNING_TYPE},
           "optional": None}
    return _dumps(doc)


def _legacy_config(layer_digests: Sequence[str]) -> bytes:
    """The image config go-containerregistry writes for cosign's signature images."""
    doc = {"architecture": "", "created": "0001-01-01T00:00:00Z",
           "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layer_digests],
           "os": "", "rootfs": {"type": "layers", "diff_ids": list(layer_digests)},
           "config": {}}
    return _dumps(doc)


def legacy_manifest(layers: Sequence[tuple[dict[str, Any], bytes | None]]
                    ) -> tuple[bytes, dict[str, bytes]]:
    """An image manifest for ``.sig``/``.att`` tags from (layer descriptor, blob) pairs
    (blob None: already in the registry). Returns (manifest bytes, blobs to upload)."""
    descs = [d for d, _ in layers]
    config = _legacy_config([d["digest"] for d in descs])
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": descriptor(OCI_IMAGE_CONFIG, config), "layers": descs}
    blobs = {sha256_bytes(config): config}
    for d, data in layers:
        if data is not None:
            blobs[d["digest"]] = data
    return _dumps(doc), blobs


def legacy_signature_layer(payload: bytes, signature: bytes, *,
                           certificate_pem: bytes | None = None,
                           chain_pem: bytes | None = None,
                           rekor_bundle: dict[str, Any] | None = None,
                           rfc3161_timestamp: bytes | None = None) -> dict[str, Any]:
    """A ``.sig`` layer descriptor: the simplesigning payload with the signature (and,
    for keyless, certificate / chain / Rekor bundle / timestamp) as annotations."""
    ann = {ANN_LEGACY_SIGNATURE: base64.b64encode(signature).decode()}
    if certificate_pem is not None:
        ann[ANN_LEGACY_CERTIFICATE] = certificate_pem.decode()
        ann[ANN_LEGACY_CHAIN] = (chain_pem or b"").decode()
    if rekor_bundle is not None:
        ann[ANN_LEGACY_BUNDLE] = json.dumps(rekor_bundle, separators=(",", ":"))
    if rfc3161_timestamp is not None:
        ann[ANN_LEGACY_TIMESTAMP] = json.dumps(
            {"SignedRFC3161Timestamp": base64.b64encode(rfc3161_timestamp).decode()},
            separators=(",", ":"))
    return descriptor(COSIGN_SIMPLESIGNING, payload, annotations=ann)


def legacy_attestation_layer(envelope_json: bytes, predicate_type: str) -> dict[str, Any]:
    """A ``.att`` layer descriptor: the DSSE envelope JSON, predicateType annotated."""
    return descriptor(DSSE_ENVELOPE, envelope_json,
                      annotations={ANN_LEGACY_PREDICATE: predicate_type})


def merge_legacy_layers(existing_manifest: dict[str, Any] | None,
                        new_layers: Sequence[tuple[dict[str, Any], bytes]]
                        ) -> list[tuple[dict[str, Any], bytes | None]]:
    """Layers of an existing ``.sig``/``.att`` manifest followed by the new ones (cosign
    appends). A layer is a duplicate only if its blob *and* its annotations (the
    signature, certificate...) are equal: the simplesigning payload is the same for every
    signature of a digest. Existing blobs are not re-uploaded (bytes None)."""
    out: list[tuple[dict[str, Any], bytes | None]] = []
    seen: set[str] = set()

    def key(d: dict[str, Any]) -> str:
        return json.dumps([d.get("digest"), d.get("annotations") or {}], sort_keys=True)

    for d in (existing_manifest or {}).get("layers") or []:
        if isinstance(d, dict) and key(d) not in seen:
            seen.add(key(d))
            out.append((d, None))
    for d, data in new_layers:
        if key(d) not in seen:
            seen.add(key(d))
            out.append((d, data))
    return out
