"""Compare two ModelKit manifests (``kit diff``).

Semantics follow kit's ``CompareManifests``: the configs are the same when their
digests are equal; the annotations match when the two maps are exactly equal; a
layer is shared when its digest appears in both manifests, every other layer is
unique to its manifest. Layers are compared by digest only.

Differences from kit, on purpose: each list keeps manifest order (kit sorts by
media type), and a digest listed twice in one manifest is reported once (kit
counts a repeated digest of B as unique to B).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kitaudit.digest import unique_by_digest
from kitaudit.errors import KitauditError
from kitaudit.mediatypes import parse_kit_layer_media_type

_FIX = "pass the JSON of an OCI image manifest (with 'config' and 'layers')"


@dataclass(frozen=True)
class ManifestDiff:
    same_config: bool
    annotations_match: bool
    shared_layers: list[dict[str, Any]]
    unique_layers_a: list[dict[str, Any]]
    unique_layers_b: list[dict[str, Any]]
    config_a: str = ""
    config_b: str = ""
    annotations_only_a: dict[str, str] = field(default_factory=dict)
    annotations_only_b: dict[str, str] = field(default_factory=dict)
    annotations_changed: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        """Same config, same annotations, same set of layers."""
        return (self.same_config and self.annotations_match
                and not self.unique_layers_a and not self.unique_layers_b)

    def to_dict(self) -> dict[str, Any]:
        """kit's ``DiffResult`` keys (``SameConfig``, ``AnnotationsMatch``, ``SharedLayers``,
        ``UniqueLayersA``, ``UniqueLayersB``) plus the two config digests."""
        return {
            "SameConfig": self.same_config,
            "AnnotationsMatch": self.annotations_match,
            "SharedLayers": self.shared_layers,
            "UniqueLayersA": self.unique_layers_a,
            "UniqueLayersB": self.unique_layers_b,
            "ConfigA": self.config_a,
            "ConfigB": self.config_b,
        }


def layer_kind(descriptor: Mapping[str, Any]) -> str:
    """A short kind for display: ``model``, ``dataset``... or the media type itself."""
    media_type = str(descriptor.get("mediaType", ""))
    parsed = parse_kit_layer_media_type(media_type)
    return parsed[0] if parsed else media_type


def _check(manifest: Any, which: str) -> tuple[str, list[dict[str, Any]], dict[str, str]]:
    if not isinstance(manifest, Mapping):
        raise KitauditError(f"manifest {which} is not a JSON object", fix=_FIX)
    config = manifest.get("config")
    if not isinstance(config, Mapping) or not isinstance(config.get("digest"), str):
        raise KitauditError(f"manifest {which} has no config digest", fix=_FIX)
    layers = manifest.get("layers")
    if layers is None:
        layers = []
    if not isinstance(layers, list) or not all(
            isinstance(x, Mapping) and isinstance(x.get("digest"), str) for x in layers):
        raise KitauditError(f"manifest {which} has a layer without a digest", fix=_FIX)
    annotations = manifest.get("annotations")
    if annotations is None:
        annotations = {}
    if not isinstance(annotations, Mapping):
        raise KitauditError(f"manifest {which} has annotations that are not a map", fix=_FIX)
    return config["digest"], [dict(x) for x in layers], dict(annotations)


def compare_manifests(a: Mapping[str, Any], b: Mapping[str, Any]) -> ManifestDiff:
    """Compare two manifests (parsed JSON). Digests are compared as strings, never checked."""
    config_a, layers_a, ann_a = _check(a, "A")
    config_b, layers_b, ann_b = _check(b, "B")
    layers_a, layers_b = unique_by_digest(layers_a), unique_by_digest(layers_b)
    digests_a = {x["digest"] for x in layers_a}
    digests_b = {x["digest"] for x in layers_b}
    return ManifestDiff(
        same_config=config_a == config_b,
        annotations_match=ann_a == ann_b,
        shared_layers=[x for x in layers_a if x["digest"] in digests_b],
        unique_layers_a=[x for x in layers_a if x["digest"] not in digests_b],
        unique_layers_b=[x for x in layers_b if x["digest"] not in digests_a],
        config_a=config_a,
        config_b=config_b,
        annotations_only_a={k: v for k, v in ann_a.items() if k not in ann_b},
        annotations_only_b={k: v for k, v in ann_b.items() if k not in ann_a},
        annotations_changed={k: (v, ann_b[k]) for k, v in ann_a.items()
                             if k in ann_b and ann_b[k] != v},
    )
