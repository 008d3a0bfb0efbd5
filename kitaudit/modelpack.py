"""CNCF ModelPack: writing it (``pack --use-model-pack``) and reading it back.

A ModelPack manifest keeps the Kitfile as JSON in the manifest annotation
``ml.kitops.modelkit.kitfile`` (as kit does). A ModelPack made by another tool has no
Kitfile: one is generated from the layers' ``org.cncf.model.filepath`` annotations.
"""

from __future__ import annotations

import json
from typing import Any

from kitaudit import mediatypes as mt

# KitOps layer kind -> ModelPack layer base
_KIND_TO_BASE = {
    "model": "weight",
    "modelpart": "weight",
    "dataset": "dataset",
    "code": "code",
    "prompts": "code",
    "docs": "doc",
    "mcpservers": "code",
}


def layer_media_type(kind: str, fmt: str, compression: str) -> str:
    suffix = {"none": "", "gzip": "+gzip", "gzip-fastest": "+gzip", "zstd": "+zstd"}[compression]
    return f"{mt.MODELPACK_LAYER_PREFIX}{_KIND_TO_BASE[kind]}.v1.{fmt}{suffix}"


def config_json(kitfile: Any, diff_ids: list[str], created: str) -> bytes:
    """The ModelPack config blob for ``kitfile`` with the layers' diffIds."""
    pkg = kitfile.package
    model = kitfile.model
    descriptor: dict[str, Any] = {"createdAt": created}
    if pkg is not None and pkg.authors:
        descriptor["authors"] = list(pkg.authors)
    name = (model.name if model is not None and model.name else None) or (
        pkg.name if pkg is not None else None)
    if name:
        descriptor["name"] = name
    version = (model.version if model is not None and model.version else None) or (
        pkg.version if pkg is not None else None)
    if version:
        descriptor["version"] = version
    licenses = sorted({lic for lic in [getattr(pkg, "license", None),
                                       getattr(model, "license", None)] if lic})
    if licenses:
        descriptor["licenses"] = licenses
    if pkg is not None and pkg.name:
        descriptor["title"] = pkg.name
    if pkg is not None and pkg.description:
        descriptor["description"] = pkg.description
    doc: dict[str, Any] = {"descriptor": descriptor,
                           "modelfs": {"type": "layers", "diffIds": diff_ids}}
    cfg: dict[str, Any] = {}
    if model is not None and model.format:
        cfg["format"] = model.format
    doc["config"] = cfg
    return json.dumps(doc, separators=(",", ":")).encode()


def kitfile_yaml_from_modelpack(manifest: dict[str, Any]) -> str:
    """A Kitfile (YAML text) for a ModelPack manifest that carries none.

    Layers are mapped by media type; paths come from ``org.cncf.model.filepath``.
    """
    import yaml

    doc: dict[str, Any] = {"manifestVersion": "1.0.0"}
    annotations = manifest.get("annotations") or {}
    title = annotations.get("org.opencontainers.image.title")
    if title:
        doc["package"] = {"name": title}
    model: dict[str, Any] | None = None
    for layer in manifest.get("layers") or []:
        parsed = mt.parse_kit_layer_media_type(layer.get("mediaType", ""))
        path = (layer.get("annotations") or {}).get(mt.ANN_FILEPATH)
        if parsed is None or not path:
            continue
        kind = parsed[0]
        if kind in ("model", "modelpart"):
            if model is None:
                model = {"path": path}
            else:
                model.setdefault("parts", []).append({"path": path})
        elif kind == "dataset":
            doc.setdefault("datasets", []).append({"path": path})
        elif kind == "code":
            doc.setdefault("code", []).append({"path": path})
        elif kind == "docs":
            doc.setdefault("docs", []).append({"path": path})
    if model is not None:
        doc["model"] = model
    return yaml.safe_dump(doc, sort_keys=False)
