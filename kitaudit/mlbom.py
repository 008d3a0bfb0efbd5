"""CycloneDX 1.6 / 1.7 ML-BOM for a ModelKit, the AI-readiness check, and BOM facts.

:func:`build_mlbom` turns a Kitfile plus the facts of pack's single read pass
(:class:`LayerFacts`: digests and per-file SHA-256 of the model layers) into a
deterministic CycloneDX JSON document. It never reads model files.

How the document is made (see docs/mlbom.md and docs/decisions.md):

1. cyclonedx-python-lib builds what it models: ``metadata`` (package component with a
   ``pkg:oci`` purl, tool), the model (``machine-learning-model``), parts, datasets
   (``data``), code, docs, prompts, MCP servers, licences, hashes, ``pedigree.ancestors``
   and the ``dependencies`` graph. It is serialised once.
2. What the library does not model, or models too slowly, is spliced into the serialised
   JSON by deterministic ``bom-ref``: the ``modelCard``, the ``data[]`` of each dataset,
   and the per-file ``file`` components of the model layers (the library's sorted sets
   make 1,000 nested components take seconds; spliced they take milliseconds).
3. The result is written with sorted keys and a fixed layout: same inputs, same bytes.

The document is never read back through the library's object model (``Bom.from_json``
drops ``modelCard`` and ``data``); :func:`check` and :func:`facts` work on plain dicts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import uuid
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kitaudit.errors import KitauditError, UsageError
from kitaudit.modelcard import ModelCard

__all__ = [
    "PROPERTY_PREFIX",
    "SPEC_VERSIONS",
    "Ancestor",
    "FileFacts",
    "Finding",
    "LayerFacts",
    "StoredMlbom",
    "attach_to_pack",
    "bom_serial_number",
    "build_mlbom",
    "check",
    "completeness",
    "context_model_card",
    "convert_spec",
    "facts",
    "load_mlbom",
    "manifest_mismatches",
    "oci_purl",
    "pack_layer_facts",
    "sbom_input",
    "store_mlbom",
    "validate",
]

SPEC_VERSIONS = ("1.6", "1.7")
PROPERTY_PREFIX = "kitaudit:"
_SERIAL_NAMESPACE = uuid.NAMESPACE_URL
_SERIAL_PREFIX = "urn:kitaudit:mlbom:"

# bom-refs (deterministic; documented in docs/mlbom.md)
REF_PACKAGE = "modelkit"
REF_MODEL = "model"


# --------------------------------------------------------------------------- inputs

@dataclass(frozen=True)
class FileFacts:
    """One regular file inside a layer: its path in the context, hex SHA-256, size."""

    path: str
    sha256: str
    size: int


@dataclass
class LayerFacts:
    """What pack learnt about one layer while writing it (one per layer)."""

    kind: str              # model | modelpart | code | dataset | docs | prompts | mcpservers
    path: str              # path as written in the Kitfile
    media_type: str
    digest: str            # sha256:... of the stored blob
    diff_id: str           # sha256:... of the uncompressed content
    size: int
    files: list[FileFacts] = field(default_factory=list)


@dataclass(frozen=True)
class Ancestor:
    """One resolved base ModelKit, nearest first."""

    reference: str         # e.g. registry/repo:tag
    digest: str            # manifest digest
    kitfile: Any = None    # kitaudit.kitfile.Kitfile, its dict form, or None


@dataclass(frozen=True)
class Finding:
    """One item of the AI-readiness checklist."""

    id: str
    title: str
    status: str            # ok | partial | missing
    detail: str
    where: str             # where in the BOM the fact lives (or would live)

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- helpers

def _get(obj: Any, *names: str) -> Any:
    """Attribute or key ``names[0]`` (or an alias); None when absent or empty."""
    if obj is None:
        return None
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None and value != "" and value != []:
            return value
    return None


def _as_dict(kitfile: Any) -> dict[str, Any]:
    if kitfile is None:
        return {}
    if isinstance(kitfile, dict):
        return kitfile
    to_dict = getattr(kitfile, "to_dict", None)
    if callable(to_dict):
        result = to_dict()
        if isinstance(result, dict):
            return result
    if dataclasses.is_dataclass(kitfile) and not isinstance(kitfile, type):
        return dataclasses.asdict(kitfile)
    raise UsageError(f"cannot read a Kitfile from {type(kitfile).__name__}")


def _clean_path(path: str) -> str:
    from kitaudit.kitfile import clean_path

    return clean_path(path or "")


def _prop(name: str, value: Any) -> tuple[str, str]:
    return (PROPERTY_PREFIX + name, value if isinstance(value, str) else json.dumps(
        value, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def _flatten(value: Any, prefix: str, out: list[tuple[str, str]]) -> None:
    if isinstance(value, dict) and value:
        for key in sorted(value, key=str):
            _flatten(value[key], f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out.append(_prop(f"parameter:{prefix}" if prefix else "parameters", value))


def _split_reference(text: str) -> tuple[str, str, str | None, str | None]:
    """(registry, repository, tag, digest) by kit's rules; fallback keeps it all as repo."""
    from kitaudit.reference import parse

    try:
        ref, _extra = parse(text)
    except KitauditError:
        base, _, digest = text.partition("@")
        return "", base, None, digest or None
    return ref.registry, ref.repository, ref.tag, ref.digest


def oci_purl(reference: str | None, digest: str) -> str:
    """``pkg:oci/<name>@sha256:<hex>?repository_url=<registry>/<repo>&tag=<tag>``.

    The version is written ``sha256:<hex>`` (packageurl-python leaves ``:`` unencoded);
    compare purls after replacing ``%3A`` with ``:``.
    """
    from packageurl import PackageURL

    registry, repository, tag = "", "", None
    if reference:
        registry, repository, tag, _ = _split_reference(reference)
    name = repository.rsplit("/", 1)[-1] if repository else digest.split(":", 1)[-1][:12]
    qualifiers: dict[str, str] = {}
    if repository:
        qualifiers["repository_url"] = f"{registry}/{repository}" if registry else repository
    if tag:
        qualifiers["tag"] = tag
    return PackageURL(type="oci", name=name, version=digest,
                      qualifiers=qualifiers or None).to_string()


def _normalise_purl(purl: str) -> str:
    return purl.replace("%3A", ":").replace("%3a", ":")


def bom_serial_number(manifest_digest: str) -> str:
    """``urn:uuid:`` + uuid5(NAMESPACE_URL, ``urn:kitaudit:mlbom:<manifest digest>``)."""
    return "urn:uuid:" + str(uuid.uuid5(_SERIAL_NAMESPACE, _SERIAL_PREFIX + manifest_digest))


def _timestamp(created: datetime | None) -> datetime | None:
    if created is not None:
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return created.astimezone(UTC).replace(microsecond=0)
    sde = os.environ.get("SOURCE_DATE_EPOCH")
    if sde is None or sde.strip() == "":
        return None
    try:
        return datetime.fromtimestamp(int(sde.strip()), tz=UTC)
    except (ValueError, OverflowError, OSError):
        raise UsageError(f"SOURCE_DATE_EPOCH={sde!r} is not a Unix timestamp",
                         fix="set SOURCE_DATE_EPOCH to whole seconds since 1970, or unset it")


# --------------------------------------------------------------------------- entries

@dataclass
class _Entry:
    kind: str                  # model | modelpart | code | dataset | docs | prompts | mcpservers
    ref: str                   # bom-ref
    data: dict[str, Any]       # the Kitfile entry
    path: str | None
    layer: LayerFacts | None = None


_KIND_REF = {"modelpart": "modelpart", "code": "code", "dataset": "dataset", "docs": "docs",
             "prompts": "prompt", "mcpservers": "mcpserver", "model": "model"}


def _entries(kf: dict[str, Any], layers: Sequence[LayerFacts],
             base_model: bool) -> tuple[list[_Entry], list[LayerFacts]]:
    """Kitfile entries in kit's layer order, each matched to its layer."""
    entries: list[_Entry] = []
    model = _get(kf, "model")
    if model:
        entries.append(_Entry("model", REF_MODEL, model,
                              None if base_model else _get(model, "path")))
        for part in _get(model, "parts") or []:
            entries.append(_Entry("modelpart", "", part, _get(part, "path")))
    for kind, key in (("code", ("code",)), ("dataset", ("datasets",)), ("docs", ("docs",)),
                      ("prompts", ("prompts",)), ("mcpservers", ("mcp_servers", "mcpServers"))):
        for item in _get(kf, *key) or []:
            entries.append(_Entry(kind, "", item, _get(item, "path")))

    by_key: dict[tuple[str, str], LayerFacts] = {}
    by_digest: dict[str, LayerFacts] = {}
    for layer in layers:
        by_key.setdefault((layer.kind, _clean_path(layer.path)), layer)
        by_digest.setdefault(layer.digest, layer)
    used: set[int] = set()
    seen_refs: set[str] = {REF_PACKAGE, REF_MODEL}
    for index, entry in enumerate(entries):
        remote = entry.kind == "dataset" and _get(entry.data, "remote_path", "remotePath")
        if entry.path is not None and not remote:
            layer = by_key.get((entry.kind, _clean_path(entry.path)))
            digest = _get(entry.data, "digest")
            if layer is None and digest:
                layer = by_digest.get(digest)
            if layer is not None and id(layer) not in used:
                entry.layer = layer
                used.add(id(layer))
        if entry.kind == "model":
            continue
        ident = (_get(entry.data, "name") if entry.kind == "mcpservers" else None) \
            or (_clean_path(entry.path) if entry.path else None) \
            or _get(entry.data, "name", "remote_path", "remotePath") or str(index)
        ref = f"{_KIND_REF[entry.kind]}:{ident}"
        if ref in seen_refs:
            ref = f"{ref}#{index}"
        seen_refs.add(ref)
        entry.ref = ref
    leftovers = [layer for layer in layers if id(layer) not in used]
    return entries, leftovers


# --------------------------------------------------------------------------- building

def _licenses(text: Any) -> list[Any]:
    if not text:
        return []
    from cyclonedx.contrib.license.factories import LicenseFactory

    return [LicenseFactory().make_from_string(str(text).strip())]


def _layer_props(layer: LayerFacts) -> list[tuple[str, str]]:
    return [_prop("layer.mediaType", layer.media_type), _prop("layer.digest", layer.digest),
            _prop("layer.diffId", layer.diff_id), _prop("layer.size", str(layer.size))]


def _hashes(*digests: str | None) -> list[Any]:
    from cyclonedx.model import HashAlgorithm, HashType

    out = []
    for d in digests:
        if not d:
            continue
        algo, _, value = d.partition(":")
        alg = {"sha256": HashAlgorithm.SHA_256, "sha384": HashAlgorithm.SHA_384,
               "sha512": HashAlgorithm.SHA_512}.get(algo.lower()) if value else None
        if value == "" and re.fullmatch(r"[0-9a-fA-F]{64}", d):
            alg, value = HashAlgorithm.SHA_256, d
        want = {"sha256": 64, "sha384": 96, "sha512": 128}.get(algo.lower(), 64)
        if alg is not None and re.fullmatch(rf"[0-9a-fA-F]{{{want}}}", value):
            out.append(HashType(alg=alg, content=value.lower()))
    return out


def _component(**kwargs: Any) -> Any:
    from cyclonedx.model import Property
    from cyclonedx.model.component import Component

    props = kwargs.pop("props", None) or []
    kwargs["properties"] = [Property(name=n, value=v) for n, v in props]
    return Component(**{k: v for k, v in kwargs.items() if v not in (None, [], "")})


def _model_card_dict(kf: dict[str, Any], card: ModelCard | None,
                     dataset_refs: list[tuple[str, str | None]]) -> dict[str, Any]:
    model = _get(kf, "model") or {}
    mc: dict[str, Any] = {}
    params: dict[str, Any] = {}
    if card and card.pipeline_tag:
        params["task"] = card.pipeline_tag
    if card and card.architecture:
        params["modelArchitecture"] = card.architecture
    datasets: list[dict[str, Any]] = [{"ref": ref} for ref, _ in dataset_refs]
    if card:
        known = {name.lower() for _, name in dataset_refs if name}
        for name in card.datasets:
            if name.lower() not in known:
                datasets.append({"type": "dataset", "name": name})
    if datasets:
        params["datasets"] = datasets
    if params:
        mc["modelParameters"] = params
    if card and card.metrics:
        metrics = []
        for m in card.metrics:
            entry = {"type": m.type, "value": m.value}
            slice_ = ", ".join(x for x in (m.dataset, f"config={m.config}" if m.config else None,
                                            f"split={m.split}" if m.split else None) if x)
            if slice_:
                entry["slice"] = slice_
            metrics.append(entry)
        mc["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    cons: dict[str, Any] = {}
    if card:
        for key, values in (("users", card.users), ("useCases", card.intended_uses),
                            ("technicalLimitations", card.limitations),
                            ("performanceTradeoffs", card.tradeoffs)):
            if values:
                cons[key] = list(values)
        ethics = [{"name": r} for r in card.risks] + \
                 [{"mitigationStrategy": r} for r in card.recommendations]
        if ethics:
            cons["ethicalConsiderations"] = ethics
        env = [{"name": f"{PROPERTY_PREFIX}co2eq.{k}", "value": v}
               for k, v in sorted(card.co2.items())]
        env += [{"name": f"{PROPERTY_PREFIX}environmental.{k}", "value": v}
                for k, v in card.environmental.items()]
        if env:
            cons["environmentalConsiderations"] = {"properties": env}
    if cons:
        mc["considerations"] = cons
    props: list[tuple[str, str]] = []
    parameters = _get(model, "parameters")
    if parameters is not None:
        _flatten(parameters, "", props)
    if card:
        props += [_prop("outOfScopeUse", t) for t in card.out_of_scope]
        props += [_prop("fairness", t) for t in card.fairness]
        if card.source:
            props.append(_prop("modelCard.source", card.source))
    if props:
        mc["properties"] = [{"name": n, "value": v} for n, v in props]
    return mc


def _card_license(card: ModelCard | None) -> str | None:
    """The card's licence; HF writes ``license: other`` plus ``license_name``."""
    if card is None or not card.license:
        return card.license_name if card else None
    if card.license.lower() == "other" and card.license_name:
        return card.license_name
    return card.license


def _file_component(f: FileFacts) -> dict[str, Any]:
    return {"bom-ref": f"file:{f.path}", "hashes": [{"alg": "SHA-256", "content": f.sha256}],
            "name": f.path, "properties": [{"name": f"{PROPERTY_PREFIX}file.size",
                                            "value": str(f.size)}], "type": "file"}


def _within(path: str, parent: str) -> bool:
    return parent == "." or path == parent or path.startswith(parent.rstrip("/") + "/")


def _ancestor_component(anc: Ancestor, depth: int) -> Any:
    from cyclonedx.model.component import ComponentType
    from packageurl import PackageURL

    akf = _as_dict(anc.kitfile)
    package = _get(akf, "package") or {}
    model = _get(akf, "model") or {}
    repository = _split_reference(anc.reference)[1]
    name = _get(model, "name") or _get(package, "name") or repository.rsplit("/", 1)[-1]
    props = [_prop("lineage.depth", str(depth)), _prop("lineage.source", "modelkit"),
             _prop("reference", anc.reference)]
    return _component(
        name=name, type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref=f"ancestor:{anc.digest}",
        version=_get(model, "version") or _get(package, "version"),
        description=_get(model, "description") or _get(package, "description"),
        licenses=_licenses(_get(model, "license") or _get(package, "license")),
        hashes=_hashes(anc.digest),
        purl=PackageURL.from_string(oci_purl(anc.reference, anc.digest)),
        props=props)


def _hf_ancestor_component(model_id: str, depth: int) -> Any:
    from cyclonedx.model.component import ComponentType
    from packageurl import PackageURL

    ident, _, revision = model_id.partition("@")
    namespace, _, name = ident.rpartition("/")
    purl = PackageURL(type="huggingface", namespace=namespace or None, name=name,
                      version=revision or None)
    return _component(name=ident, type=ComponentType.MACHINE_LEARNING_MODEL,
                      bom_ref=f"ancestor:huggingface:{ident}", purl=purl,
                      props=[_prop("lineage.depth", str(depth)),
                             _prop("lineage.source", "model-card")])


def build_mlbom(kitfile: Any, *, manifest_digest: str | None, layers: Sequence[LayerFacts],
                reference: str | None = None, ancestors: Sequence[Ancestor] = (),
                model_card: ModelCard | None = None, spec: str = "1.6",
                created: datetime | None = None) -> bytes:
    """The CycloneDX ML-BOM (JSON bytes) of a ModelKit.

    ``kitfile`` is a :class:`kitaudit.kitfile.Kitfile` (or its dict form).
    ``reference`` (``registry/repo:tag``) and ``manifest_digest`` give the package its
    ``pkg:oci`` purl and the BOM its serial number. ``ancestors`` is the resolved
    base-model chain, nearest first. The timestamp is ``created`` or
    ``SOURCE_DATE_EPOCH``; with neither, the BOM has no timestamp (so that the same
    ModelKit always gives the same bytes).
    """
    if spec not in SPEC_VERSIONS:
        raise UsageError(f"unsupported CycloneDX version {spec!r}",
                         fix="use --spec 1.6 or --spec 1.7")
    from cyclonedx.model import ExternalReference, ExternalReferenceType, XsUri
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import ComponentType, Pedigree
    from cyclonedx.model.contact import OrganizationalContact
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot6, JsonV1Dot7
    from packageurl import PackageURL

    from kitaudit import __version__

    kf = _as_dict(kitfile)
    package = _get(kf, "package") or {}
    model = _get(kf, "model") or {}
    model_path = _get(model, "path")
    base_model = bool(model_path and _is_reference(str(model_path)))
    entries, leftovers = _entries(kf, layers, base_model)

    # ---- components
    top: list[Any] = []
    parts: list[Any] = []
    dataset_refs: list[tuple[str, str | None]] = []
    files_for: dict[str, list[FileFacts]] = {}
    data_for: dict[str, list[dict[str, Any]]] = {}

    card_source = _clean_path(model_card.source) if model_card and model_card.source else None
    card_packed = card_source is not None and any(
        e.layer is not None and e.path is not None and _within(card_source, _clean_path(e.path))
        for e in entries)

    for entry in entries:
        d = entry.data
        layer = entry.layer
        props: list[tuple[str, str]] = [_prop("kind", entry.kind)]
        if entry.path is not None:
            props.append(_prop("path", entry.path))
        if layer is not None:
            props += _layer_props(layer)
        hashes = _hashes(layer.digest) if layer else []
        description = _get(d, "description")
        if entry.kind == "model":
            continue  # built below, once parts are known
        if entry.kind == "modelpart":
            if _get(d, "type"):
                props.append(_prop("part.type", _get(d, "type")))
            comp = _component(name=_get(d, "name") or entry.path or entry.ref,
                              type=ComponentType.FILE, bom_ref=entry.ref,
                              licenses=_licenses(_get(d, "license")), hashes=hashes, props=props)
            parts.append(comp)
            if layer is not None and layer.files:
                files_for[entry.ref] = layer.files
        elif entry.kind == "dataset":
            remote_path = _get(d, "remote_path", "remotePath")
            remote_hash = _get(d, "remote_hash", "remoteHash")
            data: dict[str, Any] = {"type": "dataset"}
            if _get(d, "name"):
                data["name"] = _get(d, "name")
            if description:
                data["description"] = description
            contents: dict[str, Any] = {}
            if remote_path:
                contents["url"] = remote_path
                props.append(_prop("dataset.remotePath", remote_path))
            if remote_hash:
                props.append(_prop("dataset.remoteHash", remote_hash))
                hashes = hashes + _hashes(remote_hash)
            params: list[tuple[str, str]] = []
            if _get(d, "parameters") is not None:
                _flatten(_get(d, "parameters"), "", params)
                contents["properties"] = [{"name": n, "value": v} for n, v in params]
            if contents:
                data["contents"] = contents
            data_for[entry.ref] = [data]
            dataset_refs.append((entry.ref, _get(d, "name")))
            comp = _component(name=_get(d, "name") or entry.path or remote_path or entry.ref,
                              type=ComponentType.DATA, bom_ref=entry.ref, description=description,
                              licenses=_licenses(_get(d, "license")), hashes=hashes, props=props)
            top.append(comp)
        else:
            ctype = ComponentType.APPLICATION if entry.kind in ("code", "mcpservers") \
                else ComponentType.FILE
            comp = _component(name=_get(d, "name") or entry.path or entry.ref, type=ctype,
                              bom_ref=entry.ref, description=description,
                              licenses=_licenses(_get(d, "license")), hashes=hashes, props=props)
            top.append(comp)

    for layer in leftovers:   # layers the Kitfile does not describe: still hashed
        ref = f"layer:{layer.digest}"
        comp = _component(name=layer.path or layer.digest, type=ComponentType.FILE, bom_ref=ref,
                          hashes=_hashes(layer.digest),
                          props=[_prop("kind", layer.kind), _prop("path", layer.path),
                                 *_layer_props(layer)])
        if layer.kind in ("model", "modelpart") and layer.files:
            files_for[ref] = layer.files
        top.append(comp)

    # ---- the model
    model_comp = None
    model_entry = next((e for e in entries if e.kind == "model"), None)
    ancestor_comps: list[Any] = []
    if model_entry is not None:   # a card alone does not make a model
        layer = model_entry.layer
        props = [_prop("kind", "model")]
        if model_path:
            props.append(_prop("reference" if base_model else "path", model_path))
        if layer is not None:
            props += _layer_props(layer)
            if layer.files:
                files_for[REF_MODEL] = layer.files
        for key in ("framework", "format"):
            if _get(model, key):
                props.append(_prop(f"model.{key}", _get(model, key)))
        if model_card and model_card.library_name:
            props.append(_prop("model.library", model_card.library_name))
        ancestor_comps = [_ancestor_component(a, i + 1) for i, a in enumerate(ancestors)]
        known_ids = {a.reference for a in ancestors}
        if model_card:
            for mid in model_card.base_models:
                if mid not in known_ids:
                    ancestor_comps.append(_hf_ancestor_component(mid, len(ancestor_comps) + 1))
        ext = []
        if card_packed and card_source:
            ext.append(ExternalReference(type=ExternalReferenceType.MODEL_CARD,
                                         url=XsUri(card_source),
                                         comment="model card packed in this ModelKit"))
        name = _get(model, "name") or _get(package, "name") or \
            (model_card.model_name if model_card else None) or model_path or "model"
        model_comp = _component(
            name=name, type=ComponentType.MACHINE_LEARNING_MODEL, bom_ref=REF_MODEL,
            version=_get(model, "version"), description=_get(model, "description"),
            licenses=_licenses(_get(model, "license") or _card_license(model_card)),
            hashes=_hashes(layer.digest) if layer else [], props=props, components=parts,
            external_references=ext,
            pedigree=Pedigree(ancestors=ancestor_comps) if ancestor_comps else None)
        top.insert(0, model_comp)

    # ---- the package
    pkg_name = _get(package, "name") or _get(model, "name")
    if not pkg_name and reference:
        pkg_name = _split_reference(reference)[1].rsplit("/", 1)[-1]
    purl = None
    if manifest_digest and reference:
        purl = PackageURL.from_string(oci_purl(reference, manifest_digest))
    authors = [OrganizationalContact(name=str(a)) for a in (_get(package, "authors") or [])]
    pkg_props = [_prop("kind", "modelkit")]
    if reference:
        pkg_props.append(_prop("reference", reference))
    if _get(kf, "manifest_version", "manifestVersion"):
        pkg_props.append(_prop("manifestVersion", _get(kf, "manifest_version",
                                                       "manifestVersion")))
    pkg_comp = _component(
        name=pkg_name or "modelkit", type=ComponentType.APPLICATION, bom_ref=REF_PACKAGE,
        version=_get(package, "version"), description=_get(package, "description"),
        licenses=_licenses(_get(package, "license")), authors=authors,
        hashes=_hashes(manifest_digest), purl=purl, props=pkg_props)

    tool = _component(name="kitaudit", type=ComponentType.APPLICATION, version=__version__,
                      bom_ref="tool:kitaudit")
    ts = _timestamp(created)
    if manifest_digest:
        serial = bom_serial_number(manifest_digest)
    else:
        seed = json.dumps([kf, sorted(layer.digest for layer in layers)], sort_keys=True,
                          default=str)
        serial = bom_serial_number("sha256:" + hashlib.sha256(seed.encode()).hexdigest())
    bom = Bom(components=top, serial_number=uuid.UUID(serial.rsplit(":", 1)[1]),
              metadata=BomMetaData(component=pkg_comp, timestamp=ts or datetime(1970, 1, 1,
                                                                                 tzinfo=UTC),
                                   tools=ToolRepository(components=[tool])))
    bom.register_dependency(pkg_comp, top)
    if model_comp is not None:
        deps = list(parts)
        bom.register_dependency(model_comp, deps)
    for comp in top:
        if comp is not model_comp:
            bom.register_dependency(comp, [])
    for comp in parts:
        bom.register_dependency(comp, [])

    outputter = JsonV1Dot7 if spec == "1.7" else JsonV1Dot6
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        doc = json.loads(outputter(bom).output_as_string())

    # ---- splice what the library does not model
    if ts is None:
        doc["metadata"].pop("timestamp", None)
    if authors:   # the library sorts them; the Kitfile's order is the fact
        doc["metadata"]["component"]["authors"] = [{"name": a.name} for a in authors]
    index: dict[str, dict[str, Any]] = {}
    _index_components(doc.get("components") or [], index)
    if model_comp is not None:
        mc = _model_card_dict(kf, model_card, dataset_refs)
        if mc:
            index[REF_MODEL]["modelCard"] = mc
        anc = index[REF_MODEL].get("pedigree", {}).get("ancestors")
        if anc:
            anc.sort(key=lambda c: int(_prop_value(c, "lineage.depth") or 0))
        if ancestor_comps:
            _add_dependency(doc, REF_MODEL, ancestor_comps[0].bom_ref.value)
    for ref, data in data_for.items():
        index[ref]["data"] = data
    for ref, files in files_for.items():
        target = index[ref]
        target.setdefault("components", []).extend(
            _file_component(f) for f in sorted(files, key=lambda f: f.path))
    # compact, sorted keys: the C encoder (indent would select the slow Python one)
    text = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def _is_reference(text: str) -> bool:
    from kitaudit.kitfile import is_modelkit_reference

    return is_modelkit_reference(text)


def _index_components(components: list[dict[str, Any]], index: dict[str, dict[str, Any]]) -> None:
    for comp in components:
        if "bom-ref" in comp:
            index[comp["bom-ref"]] = comp
        _index_components(comp.get("components") or [], index)


def _add_dependency(doc: dict[str, Any], ref: str, depends_on: str) -> None:
    deps = doc.setdefault("dependencies", [])
    for dep in deps:
        if dep.get("ref") == ref:
            on = dep.setdefault("dependsOn", [])
            if depends_on not in on:
                on.append(depends_on)
                on.sort()
            break
    else:
        deps.append({"ref": ref, "dependsOn": [depends_on]})
    if not any(d.get("ref") == depends_on for d in deps):
        deps.append({"ref": depends_on})
    deps.sort(key=lambda d: d["ref"])


def _prop_value(comp: dict[str, Any], name: str) -> str | None:
    for p in comp.get("properties") or []:
        if p.get("name") == PROPERTY_PREFIX + name:
            return p.get("value")
    return None


# --------------------------------------------------------------------------- validation

_VALIDATORS: dict[str, Any] = {}


def validate(bom: bytes | str, spec: str | None = None) -> list[str]:
    """Strict JSON-schema validation; returns the problems (empty list = valid).

    ``spec`` defaults to the document's ``specVersion``. This costs about a second for a
    large BOM (jsonschema over the CycloneDX schema), so pack does not call it.
    """
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    text = bom.decode("utf-8") if isinstance(bom, bytes) else bom
    if spec is None:
        try:
            spec = str(json.loads(text).get("specVersion"))
        except (ValueError, AttributeError):
            return ["not a JSON object"]
    if spec not in SPEC_VERSIONS:
        return [f"unsupported specVersion {spec!r}"]
    validator = _VALIDATORS.get(spec)
    if validator is None:
        validator = JsonStrictValidator(SchemaVersion.V1_7 if spec == "1.7"
                                        else SchemaVersion.V1_6)
        _VALIDATORS[spec] = validator
    errors = validator.validate_str(text, all_errors=True)
    if not errors:
        return []
    return [str(getattr(e, "data", e)).splitlines()[0][:500] for e in errors]


# --------------------------------------------------------------------------- reading a BOM

def _components_of(bom: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def walk(comps: Iterable[dict[str, Any]]) -> None:
        for c in comps:
            if isinstance(c, dict):
                out.append(c)
                walk(c.get("components") or [])
    walk(bom.get("components") or [])
    return out


def _model_of(bom: dict[str, Any]) -> dict[str, Any] | None:
    comps = _components_of(bom)
    for c in comps:
        if c.get("bom-ref") == REF_MODEL and c.get("type") == "machine-learning-model":
            return c
    return next((c for c in comps if c.get("type") == "machine-learning-model"), None)


def _license_strings(comp: dict[str, Any]) -> list[str]:
    out = []
    for lic in comp.get("licenses") or []:
        if not isinstance(lic, dict):
            continue
        if lic.get("expression"):
            out.append(str(lic["expression"]))
        inner = lic.get("license") or {}
        value = inner.get("id") or inner.get("name")
        if value:
            out.append(str(value))
    return out


def _license_ids(comp: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(SPDX ids/expressions, free-text names)."""
    ids, names = [], []
    for lic in comp.get("licenses") or []:
        if not isinstance(lic, dict):
            continue
        if lic.get("expression"):
            ids.append(lic["expression"])
        inner = lic.get("license") or {}
        if inner.get("id"):
            ids.append(inner["id"])
        elif inner.get("name"):
            names.append(inner["name"])
    return ids, names


def _sha256_of(comp: dict[str, Any]) -> str | None:
    for h in comp.get("hashes") or []:
        if isinstance(h, dict) and h.get("alg") == "SHA-256":
            return h.get("content")
    return None


def _purl_digest(purl: str | None) -> str | None:
    if not purl:
        return None
    m = re.search(r"@(sha256(?::|%3[aA])[0-9a-f]{64})", purl)
    return _normalise_purl(m.group(1)) if m else None


def _layer_order(layer: dict[str, Any]) -> tuple[int, str]:
    from kitaudit.mediatypes import LAYER_KINDS

    kind = layer.get("kind") or ""
    return (LAYER_KINDS.index(kind) if kind in LAYER_KINDS else len(LAYER_KINDS),
            str(layer.get("path") or ""))


def facts(bom: dict[str, Any]) -> dict[str, Any]:
    """A compact summary of an ML-BOM for verify, policy and the crawler.

    Keys (all present; missing facts are ``None`` or empty lists), documented in
    docs/mlbom.md: ``spec_version``, ``serial_number``, ``timestamp``, ``package``,
    ``model``, ``licenses``, ``datasets``, ``ancestors``, ``layers``, ``completeness``.
    """
    meta = bom.get("metadata") or {}
    pkg = meta.get("component") or {}
    comps = _components_of(bom)
    model = _model_of(bom)
    all_licenses: set[str] = set()
    for c in [pkg, *comps]:
        all_licenses.update(_license_strings(c))
        for anc in (c.get("pedigree") or {}).get("ancestors") or []:
            all_licenses.update(_license_strings(anc))

    model_facts: dict[str, Any] | None = None
    ancestors: list[dict[str, Any]] = []
    if model is not None:
        mc = model.get("modelCard") or {}
        mp = mc.get("modelParameters") or {}
        model_facts = {
            "bom_ref": model.get("bom-ref"),
            "name": model.get("name"),
            "version": model.get("version"),
            "licenses": _license_strings(model),
            "task": mp.get("task"),
            "architecture": mp.get("modelArchitecture") or mp.get("architectureFamily"),
            "digest": _prop_value(model, "layer.digest"),
            "base_reference": _prop_value(model, "reference"),
            "files": sum(1 for c in model.get("components") or [] if c.get("type") == "file"
                         and str(c.get("bom-ref", "")).startswith("file:")),
            "has_model_card": bool(mc),
        }
        for anc in (model.get("pedigree") or {}).get("ancestors") or []:
            purl = anc.get("purl")
            digest = _purl_digest(purl)
            if digest is None and _sha256_of(anc):
                digest = "sha256:" + str(_sha256_of(anc))
            ancestors.append({
                "name": anc.get("name"), "version": anc.get("version"),
                "purl": _normalise_purl(purl) if purl else None, "digest": digest,
                "reference": _prop_value(anc, "reference"),
                "licenses": _license_strings(anc),
                "source": _prop_value(anc, "lineage.source")
                or ("huggingface" if purl and purl.startswith("pkg:huggingface/") else None),
                "depth": int(_prop_value(anc, "lineage.depth") or len(ancestors) + 1),
            })
    datasets = []
    for c in comps:
        if c.get("type") != "data":
            continue
        data = (c.get("data") or [{}])[0]
        sha = _sha256_of(c)
        datasets.append({
            "bom_ref": c.get("bom-ref"), "name": c.get("name"),
            "licenses": _license_strings(c),
            "sha256": sha, "digest": _prop_value(c, "layer.digest"),
            "url": (data.get("contents") or {}).get("url"),
            "remote": bool(_prop_value(c, "dataset.remotePath")),
            "remote_hash": _prop_value(c, "dataset.remoteHash"),
        })
    layers = []
    for c in comps:
        if _prop_value(c, "layer.digest"):
            size = _prop_value(c, "layer.size")
            layers.append({
                "bom_ref": c.get("bom-ref"), "kind": _prop_value(c, "kind"),
                "path": _prop_value(c, "path"), "digest": _prop_value(c, "layer.digest"),
                "diff_id": _prop_value(c, "layer.diffId"),
                "media_type": _prop_value(c, "layer.mediaType"),
                "size": int(size) if size and size.isdigit() else None,
            })
    pkg_purl = pkg.get("purl")
    return {
        "spec_version": bom.get("specVersion"),
        "serial_number": bom.get("serialNumber"),
        "timestamp": meta.get("timestamp"),
        "package": {
            "name": pkg.get("name"), "version": pkg.get("version"),
            "purl": _normalise_purl(pkg_purl) if pkg_purl else None,
            "digest": _purl_digest(pkg_purl) or (
                "sha256:" + str(_sha256_of(pkg)) if _sha256_of(pkg) else None),
            "reference": _prop_value(pkg, "reference"),
            "licenses": _license_strings(pkg),
        },
        "model": model_facts,
        "licenses": sorted(all_licenses),
        "datasets": datasets,
        "ancestors": sorted(ancestors, key=lambda a: a["depth"]),
        "layers": sorted(layers, key=_layer_order),
        "completeness": completeness(check(bom)),
    }


# --------------------------------------------------------------------------- AI-readiness

_STATUS_SCORE = {"ok": 1.0, "partial": 0.5, "missing": 0.0}


def completeness(findings: Sequence[Finding]) -> int:
    """Percentage (0-100): ok counts 1, partial ½, missing 0."""
    if not findings:
        return 0
    return round(100 * sum(_STATUS_SCORE.get(f.status, 0.0) for f in findings) / len(findings))


def check(bom: dict[str, Any]) -> list[Finding]:
    """The AI-readiness checklist: what a governance reviewer would look for, in order.

    Items: model-card URL, architecture, datasets, quantitative analysis, fairness,
    energy, use cases, limitations, ethics, licences, base-model provenance, dataset
    provenance. Each is ``ok``, ``partial`` or ``missing`` with a one-line detail.
    """
    out: list[Finding] = []
    model = _model_of(bom)
    mc = (model or {}).get("modelCard") or {}
    mp = mc.get("modelParameters") or {}
    cons = mc.get("considerations") or {}
    mc_props = {p.get("name") for p in mc.get("properties") or [] if isinstance(p, dict)}

    def add(id_: str, title: str, status: str, detail: str, where: str) -> None:
        out.append(Finding(id_, title, status, detail, where))

    if model is None:
        add("model", "Machine-learning model component", "missing",
            "the BOM has no machine-learning-model component", "components[]")

    refs = [r for r in (model or {}).get("externalReferences") or []
            if r.get("type") == "model-card"]
    add("model-card-url", "Model card reference", "ok" if refs else "missing",
        f"model card at {refs[0].get('url')}" if refs else
        "no model-card external reference (pack a README.md/MODEL_CARD.md in docs)",
        "components[model].externalReferences[type=model-card]")

    arch = mp.get("modelArchitecture") or mp.get("architectureFamily")
    add("architecture", "Model architecture", "ok" if arch else "missing",
        f"architecture: {str(arch)[:80]}" if arch else
        "no architecture stated (model card section 'Model architecture')",
        "modelCard.modelParameters.modelArchitecture")

    ds = mp.get("datasets") or []
    data_comps = [c for c in _components_of(bom) if c.get("type") == "data"]
    if ds:
        add("datasets", "Training / evaluation datasets", "ok",
            f"{len(ds)} dataset(s) referenced by the model card",
            "modelCard.modelParameters.datasets")
    elif data_comps:
        add("datasets", "Training / evaluation datasets", "partial",
            f"{len(data_comps)} data component(s) not linked from the model card",
            "modelCard.modelParameters.datasets")
    else:
        add("datasets", "Training / evaluation datasets", "missing",
            "no datasets in the Kitfile or model card (front matter 'datasets')",
            "modelCard.modelParameters.datasets")

    metrics = (mc.get("quantitativeAnalysis") or {}).get("performanceMetrics") or []
    add("quantitative-analysis", "Quantitative analysis (metrics)",
        "ok" if metrics else "missing",
        f"{len(metrics)} performance metric(s)" if metrics else
        "no performance metrics (model card front matter 'model-index')",
        "modelCard.quantitativeAnalysis.performanceMetrics")

    fair = cons.get("fairnessAssessments") or []
    if fair:
        add("fairness", "Fairness assessment", "ok", f"{len(fair)} fairness assessment(s)",
            "modelCard.considerations.fairnessAssessments")
    elif PROPERTY_PREFIX + "fairness" in mc_props:
        add("fairness", "Fairness assessment", "partial",
            "fairness stated as free text only, no structured assessment",
            "modelCard.considerations.fairnessAssessments")
    else:
        add("fairness", "Fairness assessment", "missing", "no fairness assessment",
            "modelCard.considerations.fairnessAssessments")

    env = cons.get("environmentalConsiderations") or {}
    if env.get("energyConsumptions"):
        add("energy", "Energy consumption", "ok",
            f"{len(env['energyConsumptions'])} energy consumption record(s)",
            "modelCard.considerations.environmentalConsiderations.energyConsumptions")
    elif env.get("properties"):
        add("energy", "Energy consumption", "partial",
            "environmental facts (CO2, hardware) without energy consumption records",
            "modelCard.considerations.environmentalConsiderations.energyConsumptions")
    else:
        add("energy", "Energy consumption", "missing",
            "no energy or emissions reported (model card 'co2_eq_emissions' / "
            "'Environmental impact')",
            "modelCard.considerations.environmentalConsiderations")

    uses = cons.get("useCases") or []
    add("use-cases", "Intended use cases", "ok" if uses else "missing",
        f"{len(uses)} use case(s)" if uses else "no intended uses (model card 'Intended use')",
        "modelCard.considerations.useCases")
    lim = cons.get("technicalLimitations") or []
    add("limitations", "Technical limitations", "ok" if lim else "missing",
        f"{len(lim)} limitation(s)" if lim else "no limitations (model card 'Limitations')",
        "modelCard.considerations.technicalLimitations")
    eth = cons.get("ethicalConsiderations") or []
    add("ethics", "Ethical considerations", "ok" if eth else "missing",
        f"{len(eth)} ethical consideration(s)" if eth else
        "no risks or ethical considerations (model card 'Bias, risks, and limitations')",
        "modelCard.considerations.ethicalConsiderations")

    # licences
    pkg = (bom.get("metadata") or {}).get("component") or {}
    subjects = [("package", pkg)] + ([("model", model)] if model else []) + \
        [(c.get("name") or c.get("bom-ref") or "?", c) for c in data_comps]
    without = [name for name, c in subjects if not c.get("licenses")]
    free_text = [f"{name}: {n}" for name, c in subjects for n in _license_ids(c)[1]]
    if len(without) == len(subjects):
        add("licenses", "Licences", "missing",
            "no licence on the package, model or datasets", "components[].licenses")
    elif without or free_text:
        parts = []
        if without:
            parts.append("no licence: " + ", ".join(without))
        if free_text:
            parts.append("not SPDX: " + ", ".join(free_text))
        add("licenses", "Licences", "partial", "; ".join(parts), "components[].licenses")
    else:
        add("licenses", "Licences", "ok", "package, model and datasets carry SPDX licences",
            "components[].licenses")

    # base model provenance
    ancs = ((model or {}).get("pedigree") or {}).get("ancestors") or []
    if not ancs:
        add("base-model-provenance", "Base-model provenance", "missing",
            "no base model recorded (fine only if trained from scratch)",
            "components[model].pedigree.ancestors")
    else:
        weak = [a.get("name") or "?" for a in ancs
                if not _purl_digest(a.get("purl")) and not re.search(r"@[0-9a-f]{7,}",
                                                                       a.get("purl") or "")]
        if weak:
            add("base-model-provenance", "Base-model provenance", "partial",
                "base model without a pinned digest/revision: " + ", ".join(weak),
                "components[model].pedigree.ancestors")
        else:
            add("base-model-provenance", "Base-model provenance", "ok",
                f"{len(ancs)} ancestor(s), all pinned by digest",
                "components[model].pedigree.ancestors")

    # dataset provenance
    if not data_comps:
        add("dataset-provenance", "Dataset provenance", "missing",
            "no data components", "components[type=data]")
    else:
        weak = []
        for c in data_comps:
            name = c.get("name") or c.get("bom-ref") or "?"
            if not c.get("hashes"):
                weak.append(f"{name} (no hash)")
            elif not c.get("licenses"):
                weak.append(f"{name} (no licence)")
        if weak:
            add("dataset-provenance", "Dataset provenance", "partial", ", ".join(weak),
                "components[type=data].hashes/licenses/data[].contents")
        else:
            add("dataset-provenance", "Dataset provenance", "ok",
                f"{len(data_comps)} dataset(s) hashed and licensed",
                "components[type=data].hashes/licenses/data[].contents")
    return out


# --------------------------------------------------------------------------- storage

@dataclass(frozen=True)
class StoredMlbom:
    """An ML-BOM read back from a store or registry (bytes exactly as stored)."""

    subject: str           # manifest digest of the ModelKit
    referrer: str          # digest of the referrer manifest
    digest: str            # digest of the BOM blob
    bom: bytes
    source: str            # local | remote

    def json(self) -> dict[str, Any]:
        doc = json.loads(self.bom)
        if not isinstance(doc, dict):
            raise KitauditError(f"ML-BOM {self.digest} is not a JSON object")
        return doc


def _parse_created(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def store_mlbom(store: Any, subject: dict[str, Any], bom: bytes, *,
                created: str | None = None) -> str:
    """Store ``bom`` as a referrer of ``subject`` (a manifest descriptor: mediaType,
    digest, size) with artifactType ``application/vnd.cyclonedx+json``; returns the
    referrer manifest digest. Storing the same BOM twice is a no-op."""
    from kitaudit import mediatypes as mt
    from kitaudit import referrers

    blob_digest = store.put_blob(bom)
    layer = {"mediaType": mt.CYCLONEDX_JSON, "digest": blob_digest, "size": len(bom)}
    annotations = {mt.ANN_CREATED: created} if created else None
    raw = referrers.referrer_manifest(subject, mt.CYCLONEDX_JSON, [layer],
                                      annotations=annotations)
    return referrers.attach_local(store, raw)


def pack_layer_facts(packed_layers: Iterable[Any]) -> list[LayerFacts]:
    """LayerFacts from pack's ``PackedLayer(kind, path, result: LayerResult)`` list."""
    out = []
    for pl in packed_layers:
        desc = pl.result.descriptor
        out.append(LayerFacts(
            kind=pl.kind, path=pl.path, media_type=desc["mediaType"], digest=desc["digest"],
            diff_id=pl.result.diff_id, size=int(desc["size"]),
            files=[FileFacts(f.path, f.sha256, f.size) for f in pl.result.files or []]))
    return out


def _kitignored(root: Any, relpath: str, kitfile: Any) -> bool:
    """Would pack leave ``relpath`` out because of ``.kitignore``? A path named by a
    Kitfile entry is always packed; inside a directory entry the file and each
    directory on the way are tested, as pack's walker does."""
    from kitaudit.ignore import IgnoreMatcher

    ignore_file = root / ".kitignore"
    if not ignore_file.is_file():
        return False
    entries = {_clean_path(str(_get(e, "path") or "")) for _k, e in _kitfile_entries(kitfile)}
    if relpath in entries:
        return False
    holders = [e for e in entries if _within(relpath, e)]
    if not holders:
        return False   # not in any layer at all: build_mlbom sees that from the layers
    start = max(0 if e == "." else e.count("/") + 1 for e in holders)
    matcher = IgnoreMatcher.from_file(ignore_file)
    parts = relpath.split("/")
    for i in range(start + 1, len(parts)):
        if matcher.ignored("/".join(parts[:i]), True):
            return True
    return matcher.ignored(relpath, False)


def _kitfile_entries(kitfile: Any) -> list[tuple[str, Any]]:
    local_entries = getattr(kitfile, "local_entries", None)
    return list(local_entries()) if callable(local_entries) else []


def context_model_card(kitfile: Any, context: str | os.PathLike[str],
                       model_card: str | os.PathLike[str] | None = None) -> ModelCard | None:
    """The model card pack uses: ``model_card`` if given (malformed front matter is an
    error), else the one :func:`kitaudit.modelcard.find_model_card` finds (problems are
    logged as warnings and the card's other facts kept)."""
    import logging
    from pathlib import Path

    from kitaudit.modelcard import ModelCardError, find_model_card, load_model_card

    log = logging.getLogger("kitaudit.mlbom")
    root = Path(context).resolve()

    def rel(p: Path) -> str | None:
        """Context-relative path of a card pack puts in the ModelKit, else None."""
        p = p.resolve()
        if root not in p.parents:
            return None
        relpath = p.relative_to(root).as_posix()
        return None if _kitignored(root, relpath, kitfile) else relpath

    if model_card is not None:
        path = Path(model_card)
        card = load_model_card(path, source=rel(path), strict=True)
    else:
        found = find_model_card(kitfile, root)
        if found is None:
            return None
        try:
            card = load_model_card(found, source=rel(found), strict=False)
        except ModelCardError as err:
            log.warning("ignoring model card: %s", err)
            return None
    for warning in card.warnings:
        log.warning("%s", warning)
    return None if card.is_empty() and not card.source else card


def attach_to_pack(store: Any, result: Any, *, spec: str = "1.6",
                   context: str | os.PathLike[str] = ".",
                   model_card: str | os.PathLike[str] | None = None) -> str:
    """Build the ML-BOM from a :class:`kitaudit.pack.PackResult` (pack's single read
    pass: no layer file is read again; only the model card, and ``.kitignore`` to tell
    whether the card is packed) and store it as a referrer of the manifest. Returns the
    referrer manifest digest."""
    from kitaudit import mediatypes as mt

    card = context_model_card(result.kitfile, context, model_card)
    created = (result.manifest.get("annotations") or {}).get(mt.ANN_CREATED)
    bom = build_mlbom(result.kitfile, manifest_digest=result.digest,
                      layers=pack_layer_facts(result.layers),
                      reference=result.tags[0] if result.tags else None,
                      ancestors=result.ancestors, model_card=card, spec=spec,
                      created=_parse_created(created))
    subject = {"mediaType": result.manifest.get("mediaType") or mt.OCI_MANIFEST,
               "digest": result.digest, "size": len(result.manifest_bytes)}
    return store_mlbom(store, subject, bom, created=created)


def _pick(found: list[tuple[dict[str, Any], str, bytes]], spec: str | None
          ) -> tuple[dict[str, Any], str, bytes]:
    if spec:
        for item in reversed(found):
            try:
                if str(json.loads(item[2]).get("specVersion")) == spec:
                    return item
            except (ValueError, AttributeError):
                continue
    return found[-1]


def _referrer_layer(raw: bytes, referrer: str) -> dict[str, Any]:
    from kitaudit import mediatypes as mt

    try:
        man = json.loads(raw)
        layers = [layer for layer in man.get("layers") or []
                  if layer.get("mediaType") == mt.CYCLONEDX_JSON] or man.get("layers") or []
        layer = layers[0]
        _ = layer["digest"]
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        raise KitauditError(f"SBOM referrer {referrer} has no CycloneDX layer",
                            fix="re-create it with `kitaudit pack`") from None
    return layer


def load_mlbom(ref: str, *, store: Any = None, remote: bool = False, spec: str | None = None,
               **net: Any) -> StoredMlbom:
    """The ML-BOM attached to ``ref``: from the local store, or (``remote=True``, or
    when ``ref`` names another registry and is not in the store) from the registry via
    the referrers API or fallback tag. With ``spec``, prefer a BOM of that version.
    Raises :class:`NotFound` when the ModelKit has no ML-BOM."""
    from kitaudit import mediatypes as mt
    from kitaudit.digest import sha256_bytes
    from kitaudit.errors import DigestMismatch, NotFound
    from kitaudit.reference import parse_for_command

    parsed = parse_for_command(ref)
    if not remote:
        from kitaudit.store import default_store

        store = store or default_store()
        name = str(parsed) if parsed.digest is None else parsed.digest
        try:
            desc = store.resolve(name)
        except NotFound:
            if parsed.registry == "localhost":
                raise
            remote = True
        else:
            subject = desc["digest"]
            found = []
            for rdesc in store.referrers(subject, mt.CYCLONEDX_JSON):
                raw = store.read_blob(rdesc["digest"])
                layer = _referrer_layer(raw, rdesc["digest"])
                found.append((layer, rdesc["digest"], store.read_blob(layer["digest"])))
            if not found:
                raise NotFound(f"{ref} has no ML-BOM in the local store",
                               fix="pack it again without --no-sbom, or pull it with its "
                                   "referrers")
            layer, referrer, bom = _pick(found, spec)
            return StoredMlbom(subject, referrer, layer["digest"], bom, "local")

    from kitaudit import referrers
    from kitaudit.registry.transfer import _net, open_client

    subject, descs = referrers.list_remote_referrers(parsed, mt.CYCLONEDX_JSON, **net)
    if not descs:
        raise NotFound(f"{ref} has no ML-BOM referrer on {parsed.registry}",
                       fix="attach one by pushing a ModelKit packed with kitaudit")
    found = []
    with open_client(parsed.registry, _net(net)) as client:
        for rdesc in descs:
            man = client.get_manifest(parsed.repository, rdesc["digest"])
            raw = man.raw
            layer = _referrer_layer(raw, rdesc["digest"])
            data = client.get_blob_bytes(parsed.repository, layer["digest"])
            if sha256_bytes(data) != layer["digest"]:
                raise DigestMismatch(f"ML-BOM blob {layer['digest']} from {parsed.registry} "
                                     "does not match its digest")
            found.append((layer, rdesc["digest"], data))
    layer, referrer, bom = _pick(found, spec)
    return StoredMlbom(subject, referrer, layer["digest"], bom, "remote")


def convert_spec(bom: bytes, spec: str) -> bytes:
    """Re-label a kitaudit ML-BOM as CycloneDX ``spec`` (1.6 ⇄ 1.7).

    kitaudit writes the same content for both versions, so only ``specVersion`` and
    ``$schema`` change. BOMs made by other tools are refused (their content may use
    fields the other version lacks). Returns ``bom`` unchanged when it already is ``spec``.
    """
    if spec not in SPEC_VERSIONS:
        raise UsageError(f"unsupported CycloneDX version {spec!r}",
                         fix="use --spec 1.6 or --spec 1.7")
    try:
        doc = json.loads(bom)
    except ValueError:
        raise KitauditError("the ML-BOM is not JSON") from None
    if not isinstance(doc, dict):
        raise KitauditError("the ML-BOM is not a JSON object")
    if str(doc.get("specVersion")) == spec:
        return bom
    tools = ((doc.get("metadata") or {}).get("tools") or {})
    names = [c.get("name") for c in (tools.get("components") or [] if isinstance(tools, dict)
                                     else tools) if isinstance(c, dict)]
    if "kitaudit" not in names or str(doc.get("specVersion")) not in SPEC_VERSIONS:
        raise UsageError(f"this ML-BOM is CycloneDX {doc.get('specVersion')} and was not "
                         "made by kitaudit; it cannot be relabelled",
                         fix="export it as stored (without --spec)")
    doc["specVersion"] = spec
    doc["$schema"] = f"http://cyclonedx.org/schema/bom-{spec}.schema.json"
    return json.dumps(doc, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


# --------------------------------------------------------------------------- policy input

def _hash_map(comp: dict[str, Any]) -> dict[str, str]:
    return {str(h["alg"]): str(h["content"]) for h in comp.get("hashes") or []
            if isinstance(h, dict) and h.get("alg") and h.get("content")}


def _one_license(comp: dict[str, Any]) -> str:
    """One licence string: the id/name/expression, several joined with `` AND ``."""
    values = _license_strings(comp)
    if len(values) > 1:
        return " AND ".join(f"({v})" if " " in v else v for v in values)
    return values[0] if values else ""


def _names(parties: Any) -> list[str]:
    out = []
    for party in parties or []:
        if not isinstance(party, dict):
            continue
        for key in ("organization", "contact"):
            name = (party.get(key) or {}).get("name") if isinstance(party.get(key), dict) \
                else None
            if name:
                out.append(str(name))
                break
    return out


def _oci_reference(purl: str | None) -> str:
    """``registry/repo:tag`` (or ``@digest``) from a ``pkg:oci`` purl, else ``""``."""
    if not purl or not purl.startswith("pkg:oci/"):
        return ""
    from urllib.parse import parse_qs, unquote

    head, _, query = _normalise_purl(purl).partition("?")
    qs = {k: v[0] for k, v in parse_qs(query).items()}
    repo = unquote(qs.get("repository_url", ""))
    if not repo:
        return ""
    if qs.get("tag"):
        return f"{repo}:{qs['tag']}"
    digest = _purl_digest(head)
    return f"{repo}@{digest}" if digest else repo


def sbom_input(bom: dict[str, Any]) -> dict[str, Any]:
    """The ``sbom`` content of the policy input document (docs/policy.md): the keys
    ``spec_version``, ``licenses``, ``model``, ``datasets``, ``ancestors`` and
    ``completeness``. verify adds ``present``, ``verified``, ``digest``, ``signed_by``,
    ``matches_manifest`` and ``mismatches`` (see :func:`manifest_mismatches`)."""
    comps = _components_of(bom)
    model = _model_of(bom)
    licenses: set[str] = set()
    pkg = (bom.get("metadata") or {}).get("component") or {}
    for c in [pkg, *comps]:
        licenses.update(_license_strings(c))
        for anc in (c.get("pedigree") or {}).get("ancestors") or []:
            licenses.update(_license_strings(anc))

    model_doc: dict[str, Any] = {"name": "", "version": "", "license": "", "purl": "",
                                 "hashes": {}, "card": {}}
    ancestors: list[dict[str, Any]] = []
    if model is not None:
        mc = model.get("modelCard") or {}
        mp = mc.get("modelParameters") or {}
        cons = mc.get("considerations") or {}
        qa = mc.get("quantitativeAnalysis") or {}
        datasets = []
        for d in mp.get("datasets") or []:
            if isinstance(d, dict) and (d.get("ref") or d.get("name")):
                datasets.append(str(d.get("ref") or d.get("name")))
        model_doc = {
            "name": model.get("name") or "", "version": model.get("version") or "",
            "license": _one_license(model), "purl": model.get("purl") or "",
            "hashes": _hash_map(model),
            "card": {
                "approach": (mp.get("approach") or {}).get("type") or "",
                "task": mp.get("task") or "",
                "architecture_family": mp.get("architectureFamily") or "",
                "architecture": mp.get("modelArchitecture") or "",
                "intended_use": list(cons.get("useCases") or []),
                "users": list(cons.get("users") or []),
                "limitations": list(cons.get("technicalLimitations") or []),
                "tradeoffs": list(cons.get("performanceTradeoffs") or []),
                "metrics": [{"type": str(m.get("type") or ""), "value": str(m.get("value") or ""),
                             "slice": str(m.get("slice") or "")}
                            for m in qa.get("performanceMetrics") or [] if isinstance(m, dict)],
                "fairness": list(cons.get("fairnessAssessments") or []),
                "ethical_considerations": list(cons.get("ethicalConsiderations") or []),
                "energy": list((cons.get("environmentalConsiderations") or {})
                               .get("energyConsumptions") or []),
                "datasets": datasets,
            },
        }
        for anc in (model.get("pedigree") or {}).get("ancestors") or []:
            purl = anc.get("purl") or ""
            digest = _purl_digest(purl) or (
                "sha256:" + str(_sha256_of(anc)) if _sha256_of(anc) else "")
            ancestors.append({"name": anc.get("name") or "", "version": anc.get("version") or "",
                              "purl": _normalise_purl(purl), "reference": _oci_reference(purl),
                              "digest": digest, "license": _one_license(anc)})

    datasets_doc = []
    for c in comps:
        if c.get("type") != "data":
            continue
        data = next((d for d in c.get("data") or [] if isinstance(d, dict)), {})
        url = (data.get("contents") or {}).get("url") or next(
            (r.get("url") for r in c.get("externalReferences") or []
             if isinstance(r, dict) and r.get("type") in ("distribution", "vcs")), "")
        source = ((c.get("supplier") or {}).get("name") or c.get("publisher")
                  or next((a.get("name") for a in c.get("authors") or []
                           if isinstance(a, dict) and a.get("name")), "") or "")
        gov = data.get("governance") or {}
        classification = data.get("classification") or ""
        datasets_doc.append({
            "name": c.get("name") or "", "version": c.get("version") or "",
            "license": _one_license(c), "hashes": _hash_map(c),
            "classification": classification if isinstance(classification, str) else "",
            "provenance": {"url": url or "", "source": source},
            "governance": {k: _names(gov.get(k)) for k in ("owners", "custodians", "stewards")},
            "sensitive_data": [str(s) for s in data.get("sensitiveData") or []],
        })
    findings = check(bom)
    return {
        "spec_version": str(bom.get("specVersion") or ""),
        "licenses": sorted(licenses),
        "model": model_doc,
        "datasets": datasets_doc,
        "ancestors": ancestors,
        "completeness": {
            "score": completeness(findings) / 100.0,
            "missing": [f.id for f in findings if f.status == "missing"],
            "partial": [f.id for f in findings if f.status == "partial"],
        },
    }


def manifest_mismatches(bom: dict[str, Any], manifest: dict[str, Any], *,
                        manifest_digest: str | None = None,
                        kitfile: Any = None) -> list[str]:
    """Differences between an ML-BOM and the ModelKit it claims to describe, one line
    each (empty = it matches): every manifest layer digest must be a layer of the BOM
    and vice versa, the package purl (if any) must name ``manifest_digest``, and the
    Kitfile's model, datasets, code and docs must be the BOM's components."""
    out: list[str] = []
    comps = _components_of(bom)
    bom_layers: dict[str, dict[str, Any]] = {}
    for c in comps:
        digest = _prop_value(c, "layer.digest")
        if digest:
            bom_layers[digest] = c
    man_layers = [d for d in manifest.get("layers") or [] if isinstance(d, dict)]
    man_digests = {d.get("digest") for d in man_layers}
    for desc in man_layers:
        if desc.get("digest") not in bom_layers:
            path = (desc.get("annotations") or {}).get("org.cncf.model.filepath")
            where = f" ({path})" if path else ""
            out.append(f"layer {desc.get('digest')}{where} is not in the ML-BOM")
    for digest, comp in sorted(bom_layers.items()):
        if digest not in man_digests:
            out.append(f"the ML-BOM lists layer {digest} ({comp.get('name')}) that the "
                       "manifest does not have")
        elif _sha256_of(comp) and "sha256:" + str(_sha256_of(comp)) != digest:
            out.append(f"component {comp.get('name')} hash differs from its layer digest")
    pkg = (bom.get("metadata") or {}).get("component") or {}
    purl_digest = _purl_digest(pkg.get("purl"))
    if manifest_digest and purl_digest and purl_digest != manifest_digest:
        out.append(f"the ML-BOM describes {purl_digest}, not {manifest_digest}")
    if kitfile is not None:
        kf = _as_dict(kitfile)
        model = _get(kf, "model")
        bom_model = _model_of(bom)
        if model and bom_model is None:
            out.append("the Kitfile has a model; the ML-BOM has no machine-learning-model")
        elif bom_model is not None and not model:
            out.append("the ML-BOM has a model; the Kitfile has none")
        elif model and bom_model is not None and _get(model, "name") and \
                _get(model, "name") != bom_model.get("name"):
            out.append(f"model name {bom_model.get('name')!r} in the ML-BOM, "
                       f"{_get(model, 'name')!r} in the Kitfile")
        for kind, key in (("dataset", ("datasets",)), ("code", ("code",)),
                          ("docs", ("docs",))):
            want = sorted(_clean_path(str(_get(e, "path") or ""))
                          for e in _get(kf, *key) or [])
            have = sorted(_clean_path(str(_prop_value(c, "path") or ""))
                          for c in comps if _prop_value(c, "kind") == kind)
            if want != have:
                out.append(f"{kind} entries differ: Kitfile {want}, ML-BOM {have}")
    return out
