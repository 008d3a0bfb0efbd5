"""Signing and signature verification in cosign/Sigstore formats.

Public API (imported lazily so that ``import kitaudit.signing`` stays cheap; the
keyless parts load sigstore-python only when used):

* keys: :func:`generate_key_pair`, :func:`load_private_key`, :func:`load_public_key`
* signing: :class:`KeySigner`, :class:`KeylessSigner`, :func:`sign_modelkit`,
  :class:`SignedReferrer`
* verification: :func:`verify_bundle`, :class:`SignerPolicy`, :class:`BundleVerification`,
  :func:`load_trusted_root`
"""

from __future__ import annotations

from kitaudit._lazy import lazy_exports

_EXPORTS = {
    "generate_key_pair": "kitaudit.signing.keys",
    "load_private_key": "kitaudit.signing.keys",
    "load_private_key_file": "kitaudit.signing.keys",
    "load_public_key": "kitaudit.signing.keys",
    "write_key_pair": "kitaudit.signing.keys",
    "public_key_hint": "kitaudit.signing.keys",
    "KeySigner": "kitaudit.signing.signer",
    "Signer": "kitaudit.signing.signer",
    "sign_modelkit": "kitaudit.signing.signer",
    "SignedReferrer": "kitaudit.signing.cosign",
    "KeylessSigner": "kitaudit.signing.keyless",
    "verify_bundle": "kitaudit.signing.verify_bundle",
    "SignerPolicy": "kitaudit.signing.verify_bundle",
    "BundleVerification": "kitaudit.signing.verify_bundle",
    "load_trusted_root": "kitaudit.signing.verify_bundle",
    "parse_bundle": "kitaudit.signing.bundle",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
