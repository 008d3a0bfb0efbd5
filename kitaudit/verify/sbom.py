"""The ML-BOM check: a CycloneDX attestation signed by an accepted signer, whose content
matches the ModelKit.

* **signed**: only a BOM inside a verified attestation (cosign v3 bundle referrer or
  legacy ``.att`` layer) whose statement subject is the manifest digest counts. An
  unsigned CycloneDX referrer, or an attestation from a signer not accepted, only makes
  the BOM *present*.
* **matches**: every manifest layer is in the BOM with the same digest (kitaudit's
  ``kitaudit:layer.digest`` property, or a component ``SHA-256`` hash for BOMs written by
  other tools) and, where the BOM says so, the same size, media type and kind; the BOM
  lists no layer the manifest lacks; the BOM's package digest (when given) is the
  manifest digest; the Kitfile's package, model and datasets agree with the BOM's
  components (names, licences, layer digests, remote URLs).
* ``--deep``: every layer is streamed again from the registry/store and re-hashed.

:func:`sbom_section` turns the chosen BOM into the input document's ``sbom`` map (every
field documented in docs/policy.md) — only ever from a verified attestation.
"""

from __future__ import annotations

from typing import Any

from kitaudit.verify.signatures import Checked, Findings


def _norm(text: Any) -> str:
    return " ".join(str(text or "").split()).lower()


def _layer_index(bom: dict[str, Any], f: dict[str, Any]
                 ) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """(kitaudit layer facts by digest, every sha256 hash of any component); ``f`` is
    :func:`kitaudit.mlbom.facts` of ``bom``."""
    from kitaudit.mlbom import _components_of

    layers = {str(x["digest"]): x for x in f["layers"] if x.get("digest")}
    hashes: set[str] = set()
    comps = _components_of(bom)
    pkg = (bom.get("metadata") or {}).get("component")
    for c in [*comps, *([pkg] if isinstance(pkg, dict) else [])]:
        for h in c.get("hashes") or []:
            if isinstance(h, dict) and h.get("alg") == "SHA-256" and \
                    isinstance(h.get("content"), str):
                hashes.add("sha256:" + h["content"].lower())
    return layers, hashes


def compare(bom: dict[str, Any], digest: str, manifest: dict[str, Any],
            kitfile: Any) -> list[str]:
    """One line per difference between the BOM and the ModelKit (empty: it matches)."""
    from kitaudit.mlbom import facts
    from kitaudit.modelkit import map_layers

    f = facts(bom)
    out: list[str] = []
    pkg_digest = (f.get("package") or {}).get("digest")
    if pkg_digest and pkg_digest != digest:
        out.append(f"the ML-BOM describes manifest {pkg_digest}, not {digest}")

    bom_layers, hashes = _layer_index(bom, f)
    mapped = {e.descriptor.get("digest"): e for e in map_layers(manifest, kitfile)}
    manifest_digests: set[str] = set()
    for desc in manifest.get("layers") or []:
        if not isinstance(desc, dict):
            continue
        d = str(desc.get("digest") or "")
        manifest_digests.add(d)
        entry = mapped.get(d)
        label = f"{entry.kind} layer {entry.path}" if entry is not None else "layer"
        bl = bom_layers.get(d)
        if bl is None:
            if d not in hashes:
                out.append(f"{label} ({d}) is not in the ML-BOM")
            continue
        if bl.get("size") is not None and desc.get("size") is not None and \
                int(bl["size"]) != int(desc["size"]):
            out.append(f"{label} ({d}): size {desc['size']} in the manifest, "
                       f"{bl['size']} in the ML-BOM")
        if bl.get("media_type") and bl["media_type"] != desc.get("mediaType"):
            out.append(f"{label} ({d}): media type {desc.get('mediaType')} in the manifest, "
                       f"{bl['media_type']} in the ML-BOM")
        if entry is not None and bl.get("kind") and bl["kind"] != entry.kind:
            out.append(f"{label} ({d}): kind {entry.kind} in the manifest, {bl['kind']} in "
                       "the ML-BOM")
    for d, bl in bom_layers.items():
        if d not in manifest_digests:
            out.append(f"the ML-BOM lists a {bl.get('kind') or ''} layer "
                       f"{bl.get('path') or ''} ({d}) that the ModelKit does not have"
                       .replace("a  layer", "a layer"))

    if kitfile is None:
        return out
    pkg = f.get("package") or {}
    for attr in ("name", "version"):
        mine = getattr(kitfile.package, attr, "")
        theirs = pkg.get(attr)
        if mine and theirs and _norm(mine) != _norm(theirs):
            out.append(f"package {attr}: {mine!r} in the Kitfile, {theirs!r} in the ML-BOM")
    model = f.get("model")
    km = kitfile.model
    if km is not None:
        if model is None:
            out.append("the Kitfile has a model but the ML-BOM has no machine-learning-model "
                       "component")
        else:
            if km.name and model.get("name") and _norm(km.name) != _norm(model["name"]):
                out.append(f"model name: {km.name!r} in the Kitfile, {model['name']!r} in the "
                           "ML-BOM")
            lic = [_norm(x) for x in model.get("licenses") or []]
            if km.license and _norm(km.license) not in lic:
                out.append(f"model licence: {km.license!r} in the Kitfile, "
                           f"{', '.join(model.get('licenses') or []) or 'none'} in the ML-BOM")
            if km.digest and model.get("digest") and km.digest != model["digest"]:
                out.append(f"model layer: {km.digest} in the Kitfile, {model['digest']} in "
                           "the ML-BOM")
    elif model is not None and model.get("digest"):
        out.append("the ML-BOM has a model layer but the Kitfile has no model")

    bom_ds = list(f.get("datasets") or [])
    claimed: set[int] = set()
    for ds in kitfile.datasets:
        label = ds.name or ds.path or ds.remote_path
        idx = None
        for i, b in enumerate(bom_ds):
            if ds.remote_path:
                if b.get("url") == ds.remote_path:
                    idx = i
                    break
            elif ds.digest and b.get("digest") == ds.digest:
                idx = i
                break
            elif not ds.digest and b.get("name") and _norm(b["name"]) == _norm(label):
                idx = i
                break
        if idx is None:
            out.append(f"dataset {label} of the Kitfile is not in the ML-BOM")
            continue
        claimed.add(idx)
        b = bom_ds[idx]
        if ds.name and b.get("name") and _norm(ds.name) != _norm(b["name"]):
            out.append(f"dataset {label}: name {b['name']!r} in the ML-BOM")
        if ds.license and _norm(ds.license) not in [_norm(x) for x in b.get("licenses") or []]:
            out.append(f"dataset {label}: licence {ds.license!r} in the Kitfile, "
                       f"{', '.join(b.get('licenses') or []) or 'none'} in the ML-BOM")
    for i, b in enumerate(bom_ds):
        if i not in claimed and (b.get("digest") or b.get("url")):
            out.append(f"the ML-BOM lists dataset {b.get('name') or b.get('bom_ref')} that "
                       "the Kitfile does not have")
    return out


def deep_check(manifest: dict[str, Any], rehash: Any) -> tuple[list[str], int]:
    """Re-hash every layer (streaming). Returns (problems, bytes hashed)."""
    problems: list[str] = []
    total = 0
    for desc in manifest.get("layers") or []:
        if not isinstance(desc, dict) or not desc.get("digest"):
            continue
        try:
            got, size = rehash(desc)
        except Exception as err:  # DigestMismatch, network: the layer is not proven
            problems.append(f"layer {desc['digest']} could not be re-hashed: {err}")
            continue
        total += size
        if got != desc["digest"]:
            problems.append(f"layer {desc['digest']} hashes to {got}")
        elif desc.get("size") is not None and int(desc["size"]) != size:
            problems.append(f"layer {desc['digest']} has {size} bytes, the manifest says "
                            f"{desc['size']}")
    return problems, total


# ---------------------------------------------------------------------- input document
def content(bom: dict[str, Any]) -> dict[str, Any]:
    """The content fields of the input document's ``sbom`` map (the ML-BOM module's
    :func:`kitaudit.mlbom.sbom_input`)."""
    from kitaudit.mlbom import sbom_input

    return sbom_input(bom)


def choose(findings: Findings, digest: str, manifest: dict[str, Any], kitfile: Any
           ) -> tuple[Checked | None, dict[str, Any] | None, list[str]]:
    """The verified BOM attestation to use: the first that matches the ModelKit, else
    the first verified one. Returns (attestation, BOM, mismatches)."""
    best: tuple[Checked | None, dict[str, Any] | None, list[str]] = (None, None, [])
    for att in findings.bom_attestations():
        if not att.verified or not isinstance(att.predicate, dict):
            continue
        mism = compare(att.predicate, digest, manifest, kitfile)
        if not mism:
            return att, att.predicate, []
        if best[0] is None:
            best = (att, att.predicate, mism)
    return best


def sbom_section(findings: Findings, digest: str, manifest: dict[str, Any],
                 kitfile: Any) -> dict[str, Any]:
    """The input document's ``sbom`` map (verified content only)."""
    boms = findings.bom_attestations()
    present = bool(boms or findings.unsigned_boms)
    att, bom, mismatches = choose(findings, digest, manifest, kitfile)
    if att is None or bom is None:
        return {"present": present, "verified": False}
    signed_by = []
    for a in boms:
        if a.verified and a.referrer == att.referrer and a.signer() not in signed_by:
            signed_by.append(a.signer())
    return {"present": True, "verified": True, "digest": att.referrer,
            "signed_by": signed_by, "matches_manifest": not mismatches,
            "mismatches": mismatches, **content(bom)}

