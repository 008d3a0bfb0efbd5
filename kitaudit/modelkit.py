"""A stored ModelKit seen through its manifest and Kitfile.

Shared by unpack, info, pull with filters, the ML-BOM, verify and the crawler: it knows
how to read the Kitfile out of a KitOps config or a ModelPack manifest, and which Kitfile
entry each layer belongs to (by the digests in the config; by position for old kits).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kitaudit import mediatypes as mt
from kitaudit.errors import KitauditError, StoreError


@dataclass
class LayerEntry:
    descriptor: dict[str, Any]
    kind: str            # model, modelpart, code, dataset, docs, prompts, mcpservers
    entry: Any           # the Kitfile element (has .path, maybe .name), or None
    fmt: str             # tar | raw
    compression: str     # none | gzip | zstd

    @property
    def path(self) -> str:
        if self.entry is not None and getattr(self.entry, "path", None):
            return self.entry.path
        return (self.descriptor.get("annotations") or {}).get(mt.ANN_FILEPATH, "")


@dataclass
class ModelKit:
    digest: str
    manifest: dict[str, Any]
    kitfile: Any                 # kitaudit.kitfile.Kitfile
    config_bytes: bytes
    format: str                  # kitops | modelpack

    def layers(self) -> list[LayerEntry]:
        return map_layers(self.manifest, self.kitfile)


def is_modelkit(manifest: dict[str, Any]) -> bool:
    config_type = (manifest.get("config") or {}).get("mediaType")
    return config_type in (mt.KIT_CONFIG, mt.MODELPACK_CONFIG) or manifest.get(
        "artifactType") in (mt.KIT_ARTIFACT_TYPE, mt.MODELPACK_ARTIFACT_TYPE)


def kitfile_from_config(manifest: dict[str, Any], config_bytes: bytes) -> tuple[Any, str]:
    """(Kitfile, format) from a manifest and its config blob."""
    from kitaudit import kitfile as kf
    from kitaudit import modelpack

    config_type = (manifest.get("config") or {}).get("mediaType")
    if config_type == mt.MODELPACK_CONFIG or manifest.get("artifactType") == \
            mt.MODELPACK_ARTIFACT_TYPE:
        embedded = (manifest.get("annotations") or {}).get(mt.ANN_KITFILE)
        if embedded:
            return kf.from_json(embedded), "modelpack"
        return kf.loads(modelpack.kitfile_yaml_from_modelpack(manifest),
                        source="(generated from ModelPack annotations)"), "modelpack"
    if config_type != mt.KIT_CONFIG:
        raise KitauditError(f"not a ModelKit: config media type is {config_type!r}",
                            fix="this artifact was not made by kit or kitaudit")
    return kf.from_json(config_bytes), "kitops"


def map_layers(manifest: dict[str, Any], kitfile: Any) -> list[LayerEntry]:
    """Pair each manifest layer with its Kitfile entry."""
    entries = kitfile.local_entries() if kitfile is not None else []
    by_digest = {e.digest: (k, e) for k, e in entries if getattr(e, "digest", None)}
    out = []
    for i, desc in enumerate(manifest.get("layers") or []):
        parsed = mt.parse_kit_layer_media_type(desc.get("mediaType", ""))
        if parsed is None:
            continue
        base, fmt, compression = parsed
        kind, entry = base, None
        if desc.get("digest") in by_digest:
            kind, entry = by_digest[desc["digest"]]
        elif not by_digest and i < len(entries):
            kind, entry = entries[i]
        elif (desc.get("annotations") or {}).get(mt.ANN_FILEPATH):
            path = desc["annotations"][mt.ANN_FILEPATH]
            for k, e in entries:
                if getattr(e, "path", None) == path:
                    kind, entry = k, e
                    break
        if kind == "code" and (desc.get("annotations") or {}).get(mt.ANN_LAYER_SUBTYPE) == "prompt":
            kind = "prompts"
        out.append(LayerEntry(desc, kind, entry, fmt, compression))
    return out


def load_from_store(store: Any, ref: str) -> ModelKit:
    """Read the ModelKit that ``ref`` (full reference or digest) names in the store."""
    desc, manifest, _raw = store.get_manifest(ref)
    return load_manifest(store, desc["digest"], manifest, name=ref)


def load_manifest(store: Any, digest: str, manifest: dict[str, Any], *,
                  name: str | None = None) -> ModelKit:
    """The ModelKit of a manifest already read from the store (reads only its config).
    ``name``: how errors call it (default: the digest)."""
    if manifest.get("mediaType") == mt.OCI_INDEX or "manifests" in manifest:
        raise StoreError(f"{name or digest} is an image index, not a ModelKit")
    config = manifest.get("config") or {}
    config_bytes = store.read_blob(config["digest"]) if config.get("digest") else b"{}"
    kitfile, fmt = kitfile_from_config(manifest, config_bytes)
    return ModelKit(digest, manifest, kitfile, config_bytes, fmt)


def manifest_json(manifest: dict[str, Any]) -> bytes:
    """Compact JSON as Go's encoder writes it (field order as given)."""
    return json.dumps(manifest, separators=(",", ":"), ensure_ascii=False).encode()
