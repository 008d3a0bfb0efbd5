"""Sign the report files, and verify them.

Each file gets a Sigstore bundle next to it, ``<file>.sigstore.json`` (the name cosign
uses for ``--bundle``), holding a DSSE envelope over an in-toto Statement v1::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "report.html", "digest": {"sha256": "<hex of the file>"}}],
     "predicateType": "https://kitaudit.dev/attestations/compliance-report/v1",
     "predicate": {"generator": "kitaudit 0.1.0", "title": ..., "generated_at": ...,
                   "report_schema_version": 1, "format": "html", "crawls": [...]}}

The same signers as ``kitaudit sign`` (:class:`kitaudit.signing.signer.KeySigner`,
:class:`kitaudit.signing.keyless.KeylessSigner`); one keyless signer signs every file
with one certificate. :func:`verify_report_file` hashes the file (streaming) and checks
the bundle with :func:`kitaudit.signing.verify_bundle` (signature, signer policy,
subject digest) and the predicate type. cosign verifies the same bundle with
``cosign verify-blob-attestation --bundle FILE.sigstore.json --type
https://kitaudit.dev/attestations/compliance-report/v1 ... FILE``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kitaudit.errors import UsageError, VerificationError

REPORT_PREDICATE = "https://kitaudit.dev/attestations/compliance-report/v1"
BUNDLE_SUFFIX = ".sigstore.json"
_FORMATS = {".html": "html", ".md": "md", ".json": "json", ".svg": "svg"}


def bundle_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name + BUNDLE_SUFFIX)


def report_statement(path: str | Path, digest: str,
                     report: dict[str, Any] | None = None) -> bytes:
    """The in-toto statement signed for one report file (``digest`` = ``sha256:<hex>``)."""
    from kitaudit import __version__
    from kitaudit.signing.dsse import STATEMENT_TYPE_V1

    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64:
        raise UsageError(f"not a sha256 digest: {digest!r}")
    p = Path(path)
    predicate: dict[str, Any] = {"generator": f"kitaudit {__version__}",
                                 "format": _FORMATS.get(p.suffix, "other")}
    if report is not None:
        predicate.update({
            "title": report.get("title"), "generated_at": report.get("generated_at"),
            "report_schema_version": report.get("schema_version"),
            "crawls": [{"id": c.get("id"), "run_id": c.get("run_id"),
                        "target": c.get("target")}
                       for c in (report.get("scope") or {}).get("crawls", [])],
            "policy_set": (report.get("policy_set") or {}).get("fingerprint"),
        })
    doc = {"_type": STATEMENT_TYPE_V1,
           "subject": [{"name": p.name, "digest": {"sha256": hexpart}}],
           "predicateType": REPORT_PREDICATE, "predicate": predicate}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def sign_report_files(paths: Sequence[str | Path], signer: Any, *,
                      report: dict[str, Any] | None = None) -> list[Path]:
    """Sign every file in ``paths``; write ``<file>.sigstore.json`` next to each.

    All signatures are made before any bundle is written, so a signing failure (no
    identity token, wrong key password) leaves no partial set of bundles.
    """
    from kitaudit.digest import sha256_file
    from kitaudit.signing.bundle import dumps

    bundles: list[tuple[Path, bytes]] = []
    for path in paths:
        p = Path(path)
        digest, _size = sha256_file(p)
        bundle = signer.sign_dsse(report_statement(p, digest, report))
        bundles.append((bundle_path(p), dumps(bundle)))
    written = []
    for target, data in bundles:
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        written.append(target)
    return written


def verify_report_file(path: str | Path, *, policy: Any, trusted_root: Any = None,
                       bundle: str | Path | None = None) -> Any:
    """Verify ``path`` against its bundle (default ``<path>.sigstore.json``) and the
    signer ``policy`` (:class:`kitaudit.signing.SignerPolicy`). Returns the
    :class:`kitaudit.signing.BundleVerification`; raises
    :class:`kitaudit.errors.VerificationError` when the file changed, the signer is not
    accepted or the bundle is not a kitaudit report attestation."""
    from kitaudit.digest import sha256_file
    from kitaudit.signing.verify_bundle import verify_bundle

    p = Path(path)
    bpath = Path(bundle) if bundle else bundle_path(p)
    try:
        data = bpath.read_bytes()
        digest, _size = sha256_file(p)
    except OSError as err:
        raise UsageError(f"cannot read {err.filename}: {err.strerror}",
                         fix="give the report file; its bundle is FILE.sigstore.json") from None
    result = verify_bundle(data, expected_digest=digest, policy=policy,
                           trusted_root=trusted_root)
    if result.predicate_type != REPORT_PREDICATE:
        raise VerificationError(f"{bpath} is not a kitaudit report attestation "
                                f"(predicate type {result.predicate_type!r})")
    return result
