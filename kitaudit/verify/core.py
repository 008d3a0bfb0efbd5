"""``verify(ref, options)``: the admission check, fail closed.

Steps (docs/verify.md): resolve REF and collect its referrers
(:mod:`~kitaudit.verify.discover`) → verify every signature and attestation
(:mod:`~kitaudit.verify.signatures`) → choose and compare the ML-BOM
(:mod:`~kitaudit.verify.sbom`) → optionally re-hash every layer → build the input
document from verified facts (:mod:`~kitaudit.verify.document`) → evaluate the policies.

Built-in requirements, checked before and independently of any policy:

1. at least one signature over the digest verified with an accepted signer
   (cosign's rule);
2. unless ``require_sbom=False``: an ML-BOM attestation from an accepted signer whose
   content matches the ModelKit;
3. with ``deep``: every layer re-hashes to its digest.

Any exception anywhere gives ``decision="error"`` (exit 2), never ``pass``.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from typing import Any

from kitaudit.digest import sha256_bytes
from kitaudit.errors import KitauditError, UsageError
from kitaudit.verify.discover import FetchedReferrer, Subject, check_modelkit_manifest
from kitaudit.verify.options import CompiledOptions, VerifyOptions, compile_options
from kitaudit.verify.result import VerifyResult


def _compiled(options: VerifyOptions | CompiledOptions | None,
              compiled: CompiledOptions | None) -> tuple[CompiledOptions, bool]:
    if compiled is not None:
        return compiled, False
    if isinstance(options, CompiledOptions):
        return options, False
    if options is None:
        raise UsageError("no verification options given")
    return compile_options(options), True


@contextlib.contextmanager
def _session(options: VerifyOptions | CompiledOptions | None,
             compiled: CompiledOptions | None, result: VerifyResult
             ) -> Iterator[CompiledOptions]:
    """The compiled options to use; closes them afterwards if compiled here."""
    comp, owned = _compiled(options, compiled)
    result.fingerprint = comp.fingerprint
    try:
        yield comp
    finally:
        if owned:
            comp.close()


def _fail(result: VerifyResult, err: BaseException) -> VerifyResult:
    if isinstance(err, KitauditError):
        result.problems.append(err.message)
        if err.fix:
            result.fix = err.fix
    else:
        result.problems.append(f"internal error: {type(err).__name__}: {err}")
    result.set_decision("error")
    return result


def verify(ref: str, options: VerifyOptions | CompiledOptions | None = None, *,
           store: Any = None, remote: bool | None = None, net: dict[str, Any] | None = None,
           compiled: CompiledOptions | None = None) -> VerifyResult:
    """Verify the ModelKit ``ref`` (see the module doc). Never raises: problems are in
    the result, whose ``decision`` is ``pass``, ``deny`` or ``error``.

    ``remote``: None = local store first (a reference to another registry that is not
    stored locally is read from its registry), True = always the registry, False = only
    the local store. ``net``: network keyword arguments (``plain_http``, ``tls_verify``,
    ``tls_cert``...). ``compiled``: from :func:`compile_options`, to reuse keys, trust
    root, policies, connections and caches across calls.
    """
    started = time.perf_counter()
    result = VerifyResult(reference=ref)
    try:
        with _session(options, compiled, result) as comp:
            result = _verify_ref(ref, comp, result, store=store, remote=remote, net=net)
    except Exception as err:  # fail closed: everything unexpected is "could not decide"
        _fail(result, err)
    result.seconds = time.perf_counter() - started
    return result


def _verify_ref(ref: str, comp: CompiledOptions, result: VerifyResult, *, store: Any,
                remote: bool | None, net: dict[str, Any] | None) -> VerifyResult:
    from kitaudit.verify.discover import discover

    started = time.perf_counter()
    hit: list[VerifyResult] = []

    def stop_if(digest: str) -> bool:
        if comp.results is None:
            return False
        cached = comp.results.get(digest)
        if cached is not None:
            hit.append(cached)
        return cached is not None

    subject = discover(ref, store=store, remote=remote, net=net, compiled=comp,
                       stop_if=stop_if)
    if hit:
        out: VerifyResult = copy.copy(hit[0])
        out.reference, out.cached = ref, True
        out.seconds = time.perf_counter() - started
        return out

    def check_base(target: str) -> tuple[str, Any]:
        from kitaudit.verify.signatures import check_referrers

        base = discover(target, store=store, remote=remote, net=net, compiled=comp)
        return base.digest, check_referrers(base.referrers, base.digest,
                                            comp.signer_policy, comp.trusted_root)

    result = decide(subject, comp, check_base=check_base, result=result)
    if result.decision == "pass" and comp.results is not None:
        comp.results.put(result.digest, copy.copy(result))
    return result


def verify_fetched(*, reference: str | None, digest: str, manifest: dict[str, Any] | bytes,
                   config_bytes: bytes, referrers: list[FetchedReferrer],
                   options: VerifyOptions | CompiledOptions | None = None,
                   registry: str | None = None, compiled: CompiledOptions | None = None,
                   referrers_api: bool = False,
                   rehash: Any = None, check_base: Any = None) -> VerifyResult:
    """Verify a ModelKit whose manifest, config and referrers the caller already fetched
    (the crawler). Same checks and result as :func:`verify`.

    ``manifest``: the raw bytes (checked against ``digest``) or the parsed manifest.
    ``referrers``: bundle/CycloneDX referrers and cosign legacy ``.sig``/``.att``
    manifests (``legacy=True``), each with the blobs of its layers. ``rehash(layer
    descriptor) -> (digest, size)`` is needed for ``deep``. ``check_base(reference) ->
    (digest, Findings)`` looks base models up (without it they stay unverified).
    """
    started = time.perf_counter()
    result = VerifyResult(reference=reference or digest)
    try:
        with _session(options, compiled, result) as comp:
            subject = _fetched_subject(reference, digest, manifest, config_bytes, referrers,
                                       registry, referrers_api, rehash)
            result = decide(subject, comp, check_base=check_base, result=result)
    except Exception as err:  # fail closed
        _fail(result, err)
    result.seconds = time.perf_counter() - started
    return result


def _fetched_subject(reference: str | None, digest: str, manifest: dict[str, Any] | bytes,
                     config_bytes: bytes, referrers: list[FetchedReferrer],
                     registry: str | None, referrers_api: bool, rehash: Any) -> Subject:
    import json

    raw: bytes | None = None
    if isinstance(manifest, bytes | bytearray):
        raw = bytes(manifest)
        if sha256_bytes(raw) != digest:
            raise KitauditError(f"the manifest given does not hash to {digest}")
        manifest = json.loads(raw)
        if not isinstance(manifest, dict):
            raise KitauditError(f"manifest {digest} is not a JSON object")
    cfg = (manifest.get("config") or {}).get("digest")
    if cfg and sha256_bytes(config_bytes) != cfg:
        raise KitauditError(f"the config given does not hash to {cfg}")
    text = reference or digest
    check_modelkit_manifest(manifest, text)
    reg, repo, tag = registry or "", "", ""
    if reference:
        from kitaudit.reference import parse

        parsed, _ = parse(reference)
        reg, repo, tag = registry or parsed.registry, parsed.repository, parsed.tag or ""
    return Subject(text=text, registry=reg, repository=repo, tag=tag, digest=digest,
                   manifest=manifest, manifest_raw=raw, config_bytes=config_bytes,
                   location="fetched", referrers_api=referrers_api,
                   referrers=list(referrers), rehash=rehash)


def decide(subject: Subject, comp: CompiledOptions, *, check_base: Any = None,
           result: VerifyResult | None = None) -> VerifyResult:
    """Run every check over a discovered subject and set the decision. Raises only for
    errors that make a decision impossible (the callers turn them into ``error``)."""
    from kitaudit.modelkit import kitfile_from_config
    from kitaudit.verify.document import base_models, build_document
    from kitaudit.verify.sbom import deep_check, sbom_section
    from kitaudit.verify.signatures import check_referrers

    opts = comp.options
    result = result or VerifyResult(reference=subject.text)
    result.digest = subject.digest
    result.location = subject.location
    result.registry = subject.registry
    result.fingerprint = comp.fingerprint
    result.warnings.extend(subject.notes)
    where = {"local": "the local store", "remote": f"registry {subject.registry}",
             "fetched": "data given by the caller"}[subject.location]
    how = ("referrers API" if subject.referrers_api else
           "referrers fallback tag" if subject.location == "remote" else "stored referrers")
    result.checked.append(f"manifest {subject.digest} from {where} ({how}, cosign "
                          ".sig/.att tags)")

    kitfile, _fmt = kitfile_from_config(subject.manifest, subject.config_bytes)
    findings = check_referrers(subject.referrers, subject.digest, comp.signer_policy,
                               comp.trusted_root)
    result.signatures = [c.to_dict() for c in findings.signatures]
    result.attestations = [c.to_dict() for c in findings.attestations]
    denied: list[str] = []

    good = findings.verified_signatures
    if good:
        result.checked.append("signature: " + "; ".join(
            f"{s.describe()} via {s.source}" for s in good))
    else:
        detail = "; ".join(s.error for s in findings.signatures if s.error)
        denied.append(f"no signature over {subject.digest} verified with the accepted "
                      f"signers" + (f" ({detail})" if detail else
                                    " (none found)" if not findings.signatures else ""))
        result.fix = "sign it: `kitaudit sign REF --key cosign.key` or keyless " \
                     "`kitaudit sign REF`; check --key / --certificate-identity / " \
                     "--certificate-oidc-issuer"

    sbom = sbom_section(findings, subject.digest, subject.manifest, kitfile)
    result.sbom = {"present": sbom["present"], "verified": sbom["verified"],
                   "digest": sbom.get("digest", ""),
                   "specVersion": sbom.get("spec_version", ""),
                   "signedBy": sbom.get("signed_by", []),
                   "matchesManifest": sbom.get("matches_manifest", False),
                   "mismatches": sbom.get("mismatches", []), "required": opts.require_sbom}
    if sbom["verified"]:
        signers = ", ".join(s["identity"] or f"key sha256:{s['key_id'][:16]}…"
                            for s in sbom["signed_by"])
        state = "matches the ModelKit" if sbom["matches_manifest"] else \
            f"does NOT match the ModelKit ({len(sbom['mismatches'])} differences)"
        result.checked.append(f"ML-BOM attestation {sbom['digest']} signed by {signers}; "
                              f"{state}")
    elif sbom["present"]:
        errors = "; ".join(a.error for a in findings.bom_attestations() if a.error)
        result.checked.append("ML-BOM present but not in an attestation from an accepted "
                              "signer" + (f" ({errors})" if errors else ""))
    else:
        result.checked.append("ML-BOM: none attached")
    if opts.require_sbom:
        if not sbom["present"]:
            denied.append("no ML-BOM is attached")
            result.fix = result.fix or "pack with an ML-BOM and sign it: `kitaudit pack DIR " \
                "-t REF`, `kitaudit sign REF` (or pass --no-sbom-required)"
        elif not sbom["verified"]:
            denied.append("the ML-BOM is not in an attestation signed by an accepted signer")
            result.fix = result.fix or "attest the ML-BOM with an accepted signer: " \
                "`kitaudit sign REF`"
        elif not sbom["matches_manifest"]:
            denied.append("the signed ML-BOM does not match the ModelKit: "
                          + "; ".join(sbom["mismatches"]))
            result.fix = result.fix or "re-pack so the ML-BOM is rebuilt from the layers " \
                "and re-sign: `kitaudit pack DIR -t REF`, `kitaudit sign REF`"

    if opts.deep:
        if subject.rehash is None:
            raise UsageError("--deep needs access to the layers", fix="verify by reference")
        deep_problems, total = deep_check(subject.manifest, subject.rehash)
        n = len(subject.manifest.get("layers") or [])
        if deep_problems:
            denied.extend(deep_problems)
        else:
            result.checked.append(f"deep: {n} layers re-hashed ({total} bytes), all match")

    lineage: list[dict[str, Any]] = []
    if comp.policies:
        lineage, lineage_problems = base_models(
            sbom, kitfile, check_base or _no_base_lookup)
        result.warnings.extend(lineage_problems)
    from kitaudit.policy.inputdoc import normalize_input

    doc = normalize_input(build_document(subject, kitfile, findings, sbom, lineage),
                          now=opts.now)
    result.input_document = doc
    if comp.policies:
        from kitaudit.policy.evaluate import evaluate_normalized

        report = evaluate_normalized(comp.policies, doc, waivers=comp.waivers)
        result.policy = report
        names = ", ".join(p["name"] for p in report.policies)
        counts = report.counts()
        result.checked.append(f"policies {names}: " + ", ".join(
            f"{v} {k}" for k, v in counts.items() if v))
        if report.decision == "deny":
            failed = [f"{r.policy}/{r.rule}" for r in report.results if r.denies]
            denied.append("policy denied: " + ", ".join(failed))
            first = next((r for r in report.results if r.denies and r.remediation), None)
            if first is not None and not result.fix:
                result.fix = " ".join(first.remediation.split())
        for r in report.results:
            if r.warns:
                result.warnings.append(f"{r.policy}/{r.rule}: {r.reason}")
    result.problems.extend(denied)
    result.set_decision("deny" if denied else "pass")
    if not denied:
        result.fix = ""
    return result


def _no_base_lookup(reference: str) -> tuple[str, Any]:
    raise KitauditError("base models are not looked up for data given by the caller")
