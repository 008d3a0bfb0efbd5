"""The policy input document (schema version 1, docs/policy.md) from verified facts.

What goes in, and why it may:

* ``reference``, ``digest``, ``registry``: what was asked for and where it was found;
* ``manifest`` and ``kitfile``: the content addressed by ``digest`` (integrity by hash:
  the manifest hashed to the digest, the config to its descriptor);
* ``signatures`` / ``attestations``: only entries that verified against the accepted
  signers (:mod:`kitaudit.verify.signatures`);
* ``sbom``: content only from a verified ML-BOM attestation (:mod:`kitaudit.verify.sbom`);
* ``lineage``: base models named by the verified ML-BOM (or, without one, by the Kitfile's
  ``model.path``), each looked up and its signatures verified with the same trust
  settings.

:func:`kitaudit.policy.normalize_input` enforces the first two rules again.
"""

from __future__ import annotations

import json
from typing import Any

from kitaudit import mediatypes as mt
from kitaudit.verify.discover import Subject
from kitaudit.verify.signatures import Checked, Findings


def _layers(manifest: dict[str, Any], kitfile: Any) -> list[dict[str, Any]]:
    from kitaudit.modelkit import map_layers

    mapped = {e.descriptor.get("digest"): e for e in map_layers(manifest, kitfile)}
    out = []
    for desc in manifest.get("layers") or []:
        if not isinstance(desc, dict):
            continue
        entry = mapped.get(desc.get("digest"))
        ann = {str(k): str(v) for k, v in (desc.get("annotations") or {}).items()}
        out.append({"mediaType": str(desc.get("mediaType") or ""),
                    "digest": str(desc.get("digest") or ""),
                    "size": int(desc.get("size") or 0),
                    "kind": entry.kind if entry is not None else "",
                    "path": entry.path if entry is not None else ann.get(mt.ANN_FILEPATH, ""),
                    "annotations": ann})
    return out


def _kitfile_json(subject: Subject, kitfile: Any) -> dict[str, Any]:
    config = subject.manifest.get("config") or {}
    if config.get("mediaType") == mt.KIT_CONFIG:
        try:
            doc = json.loads(subject.config_bytes)
            if isinstance(doc, dict):
                return doc
        except ValueError:
            pass
    return dict(kitfile.to_dict()) if kitfile is not None else {}


def _entry(c: Checked, *, attestation: bool) -> dict[str, Any]:
    out = {"verified": True, "kind": c.kind, "identity": c.identity, "issuer": c.issuer,
           "key_id": c.key_id, "predicate_type": c.predicate_type, "created": c.created,
           "source": c.source}
    if attestation:
        out["digest"] = c.referrer
    return out


def build_document(subject: Subject, kitfile: Any, findings: Findings,
                   sbom: dict[str, Any], lineage: list[dict[str, Any]]) -> dict[str, Any]:
    """The input document; ``now`` and ``params`` are set by evaluation."""
    manifest = subject.manifest
    config = manifest.get("config") or {}
    return {
        "schema_version": 1,
        "reference": {"registry": subject.registry, "repository": subject.repository,
                      "tag": subject.tag, "text": subject.text},
        "digest": subject.digest,
        "registry": {"host": subject.registry, "referrers_api": subject.referrers_api},
        "manifest": {
            "mediaType": str(manifest.get("mediaType") or ""),
            "artifactType": str(manifest.get("artifactType") or ""),
            "config": {"mediaType": str(config.get("mediaType") or ""),
                       "digest": str(config.get("digest") or ""),
                       "size": int(config.get("size") or 0)},
            "annotations": {str(k): str(v)
                            for k, v in (manifest.get("annotations") or {}).items()},
            "layers": _layers(manifest, kitfile),
        },
        "kitfile": _kitfile_json(subject, kitfile),
        "sbom": sbom,
        "signatures": [_entry(s, attestation=False) for s in findings.signatures
                       if s.verified],
        "attestations": [_entry(a, attestation=True) for a in findings.attestations
                         if a.verified],
        "lineage": {"base_models": lineage,
                    "depth": max((b["depth"] for b in lineage), default=0)},
    }


def base_models(sbom: dict[str, Any], kitfile: Any, check: Any) -> tuple[list[dict[str, Any]],
                                                                          list[str]]:
    """``lineage.base_models`` and problems. ``check(reference)`` looks a base model up
    and returns ``(digest, Findings)`` (raising when it cannot).

    The chain comes from the verified ML-BOM's OCI ancestors (nearest first); Hugging
    Face ancestors cannot be looked up and are left to ``sbom.ancestors``. Without a
    verified ML-BOM, the Kitfile's ``model.path`` (a ModelKit reference) is the chain.
    """
    wanted: list[tuple[str, str, int]] = []
    if sbom.get("verified"):
        for depth, a in enumerate(sbom.get("ancestors") or [], start=1):
            if a.get("purl", "").startswith("pkg:huggingface/"):
                continue
            if a.get("reference") or a.get("digest"):
                wanted.append((str(a.get("reference") or ""), str(a.get("digest") or ""),
                               depth))
    elif kitfile is not None and kitfile.base_model_reference():
        wanted.append((str(kitfile.base_model_reference()), "", 1))
    out: list[dict[str, Any]] = []
    problems: list[str] = []
    for reference, digest, depth in wanted:
        item = {"reference": reference, "digest": digest, "signed": False, "verified": False,
                "identity": "", "issuer": "", "depth": depth}
        out.append(item)
        if not reference:
            problems.append(f"base model {digest} has no reference to look it up by")
            continue
        target = reference
        if digest and "@" not in reference:
            target = f"{reference}@{digest}"
        try:
            found_digest, findings = check(target)
        except Exception as err:  # not found, network: it stays unverified
            problems.append(f"base model {reference} could not be checked: {err}")
            continue
        if digest and found_digest != digest:
            problems.append(f"base model {reference} resolved to {found_digest}, the ML-BOM "
                            f"pins {digest}")
            continue
        item["digest"] = found_digest
        item["signed"] = bool(findings.signatures)
        good = findings.verified_signatures
        if good:
            item["verified"] = True
            item["identity"] = good[0].identity  # "" for key-based signatures
            item["issuer"] = good[0].issuer
    return out, problems
