"""``pack``: a directory with a Kitfile → a ModelKit in the local store (+ its ML-BOM).

The Kitfile is loaded and validated, the base-model chain resolved (local store first,
then a registry resolver if one is given), each layer built in one pass over its files
(:mod:`kitaudit.layers`), then the config, the manifest and the tags are written. All
blobs are written under :meth:`Store.writing`, so garbage collection by a concurrent
``remove`` cannot take them before the manifest refers to them; the tags are the last
thing written, so an interrupted pack leaves no tag pointing at anything incomplete.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kitaudit import __version__
from kitaudit import mediatypes as mt
from kitaudit.errors import NotFound, PackError
from kitaudit.layers import LayerResult, build_layer
from kitaudit.modelkit import manifest_json

MAX_REFERENCE_DEPTH = 10
# Format level of the ModelKits we write (the kit release whose format we follow) plus
# our own version as semver build metadata: see docs/decisions.md.
CLI_VERSION = f"1.15.0+kitaudit.{__version__}"


@dataclass
class Ancestor:
    reference: str
    digest: str
    kitfile: Any


@dataclass
class PackedLayer:
    kind: str
    path: str
    result: LayerResult


@dataclass
class PackResult:
    digest: str
    manifest: dict[str, Any]
    manifest_bytes: bytes
    kitfile: Any
    layers: list[PackedLayer]
    tags: list[str]
    ancestors: list[Ancestor] = field(default_factory=list)
    sbom_digest: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "tags": self.tags,
            "layers": [{"kind": pl.kind, "path": pl.path, **pl.result.descriptor,
                        "diffId": pl.result.diff_id} for pl in self.layers],
            "ancestors": [{"reference": a.reference, "digest": a.digest}
                          for a in self.ancestors],
            "sbom": self.sbom_digest,
        }


def created_timestamp() -> str:
    """RFC 3339 UTC; ``SOURCE_DATE_EPOCH`` when set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            when = datetime.fromtimestamp(int(epoch), UTC)
        except (ValueError, OverflowError):
            raise PackError(f"SOURCE_DATE_EPOCH={epoch!r} is not a Unix timestamp") from None
    else:
        when = datetime.now(UTC).replace(microsecond=0)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def tag_names(tags: Iterable[str]) -> list[str]:
    """Full ``registry/repository:tag`` names for ``-t`` values (``repo:t1,t2`` allowed)."""
    from kitaudit import reference

    out: list[str] = []
    for text in tags:
        for piece in [t for t in text.split() if t] if " " in text else [text]:
            ref, extra = reference.parse(piece)
            if ref.digest and not ref.tag:
                raise PackError(f"cannot tag by digest: {piece}", fix="use repository:tag")
            for tag in [ref.tag or "latest", *extra]:
                name = f"{ref.registry}/{ref.repository}:{tag}"
                if name not in out:
                    out.append(name)
    return out


KitfileResolver = Callable[[str], tuple[str, Any]]
"""Resolve a reference to (manifest digest, Kitfile) — e.g. from a registry."""


def resolve_ancestors(kitfile: Any, store: Any, *, own_tags: list[str] | tuple[str, ...] = (),
                      remote: KitfileResolver | None = None) -> list[Ancestor]:
    """Resolve the base-model chain (nearest first), at most 10 deep, refusing cycles."""
    from kitaudit import kitfile as kf
    from kitaudit import modelkit, reference

    chain: list[Ancestor] = []
    own_tags = list(own_tags)
    seen = [*own_tags]
    current = kitfile
    while current.model is not None and kf.is_modelkit_reference(current.model.path or ""):
        text = current.model.path
        ref = reference.parse_for_command(text)
        name = str(ref)
        if name in seen:
            names = [*own_tags[:1], *(a.reference for a in chain), name]
            raise PackError("Found cycle in modelkit references: " + " => ".join(names),
                            fix="a ModelKit cannot be its own base model")
        if len(chain) >= MAX_REFERENCE_DEPTH:
            raise PackError(f"reached maximum number of model references "
                            f"({MAX_REFERENCE_DEPTH}) at {name}",
                            fix="flatten the base-model chain")
        seen.append(name)
        try:
            kit = modelkit.load_from_store(store, name)
            digest, parent = kit.digest, kit.kitfile
        except NotFound:
            if remote is None:
                raise NotFound(f"base model {text} is not in the local store",
                               fix=f"pack or pull {text} first") from None
            digest, parent = remote(name)
        chain.append(Ancestor(name, digest, parent))
        current = parent
    return chain


def _nested(path: str, paths: Iterable[str]) -> set[str]:
    if path == ".":
        return {p for p in paths if p != "."}
    return {p for p in paths if p != path and p.startswith(path + "/")}


def pack(context: str | Path, *, kitfile_path: str | Path | None = None,
         tags: Iterable[str] = (), compression: str = "none", layer_format: str = "tar",
         use_model_pack: bool = False, store: Any = None, sbom: bool = True,
         sbom_spec: str = "1.6", model_card: str | Path | None = None,
         remote: KitfileResolver | None = None,
         on_layer: Callable[[str, str], None] | None = None) -> PackResult:
    """Pack ``context`` into ``store`` and return what was written."""
    from kitaudit import kitfile as kf
    from kitaudit.store import default_store

    store = store or default_store()
    context = Path(context)
    if not context.is_dir():
        raise NotFound(f"{context} is not a directory", fix="give the project directory")
    path = Path(kitfile_path) if kitfile_path else kf.find_kitfile(context)
    kitfile = kf.load(path)
    kitfile.validate()
    names = tag_names(tags)
    ancestors = resolve_ancestors(kitfile, store, own_tags=names, remote=remote)

    from kitaudit.ignore import IgnoreMatcher

    extra = []
    with contextlib.suppress(ValueError):
        extra.append(path.resolve().relative_to(context.resolve()).as_posix())
    ignore = IgnoreMatcher.for_context(context, extra=extra)

    entries = kitfile.local_entries()
    all_paths = [kf.clean_path(e.path) for _k, e in entries]
    created = created_timestamp()
    layers: list[PackedLayer] = []
    with store.writing():
        for (kind, entry), path_ in zip(entries, all_paths, strict=True):
            if on_layer:
                on_layer(kind, path_)
            annotations = {mt.ANN_FILEPATH: path_}
            media_type = None
            base = {"prompts": "code", "mcpservers": "code"}.get(kind, kind)
            fmt, comp = layer_format, compression
            if kind == "prompts":
                annotations[mt.ANN_LAYER_SUBTYPE] = "prompt"
            if kind == "mcpservers":
                media_type, fmt, comp = mt.KIT_MCPB_RAW, "raw", "none"
            elif use_model_pack:
                from kitaudit import modelpack

                is_file = (context / path_).is_file()
                media_type = modelpack.layer_media_type(
                    kind, "raw" if fmt == "raw" and is_file else "tar", comp)
            result = build_layer(store, context, path_, base, compression=comp,
                                 layer_format=fmt, ignore=ignore,
                                 exclude=_nested(path_, all_paths),
                                 hash_files=kind in ("model", "modelpart"),
                                 media_type=media_type, annotations=annotations)
            entry.digest = result.descriptor["digest"]
            entry.diff_id = result.diff_id
            layers.append(PackedLayer(kind, path_, result))

        manifest: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}
        annotations = {mt.ANN_CLI_VERSION: CLI_VERSION, mt.ANN_CREATED: created}
        if use_model_pack:
            from kitaudit import modelpack

            config_bytes = modelpack.config_json(kitfile, [pl.result.diff_id for pl in layers],
                                                 created)
            manifest["artifactType"] = mt.MODELPACK_ARTIFACT_TYPE
            config_type = mt.MODELPACK_CONFIG
            annotations[mt.ANN_KITFILE] = kitfile.to_json()
        else:
            config_bytes = kitfile.to_config_json()
            manifest["artifactType"] = mt.KIT_ARTIFACT_TYPE
            config_type = mt.KIT_CONFIG
        config_digest = store.put_blob(config_bytes)
        manifest["config"] = {"mediaType": config_type, "digest": config_digest,
                              "size": len(config_bytes)}
        manifest["layers"] = [pl.result.descriptor for pl in layers]
        manifest["annotations"] = annotations
        raw = manifest_json(manifest)
        # Kept untagged first, so that the SBOM referrer never points at nothing.
        digest = store.put_manifest(raw, keep=not names)
        result = PackResult(digest, manifest, raw, kitfile, layers, names, ancestors)
        if sbom:
            from kitaudit import mlbom

            # built from pack's facts: no layer file is read again
            result.sbom_digest = mlbom.attach_to_pack(store, result, spec=sbom_spec,
                                                      context=context, model_card=model_card)
        for name in names:
            store.tag(name, digest)
    return result
