"""Keyless signing with sigstore-python (Fulcio certificate + Rekor entry + TSA).

The identity token comes from, in order: the ``identity_token`` argument
(``--identity-token``), ``SIGSTORE_ID_TOKEN``, ambient CI credentials
(``sigstore.oidc.detect_credential()``: GitHub Actions, GitLab, GCP, Buildkite,
CircleCI), or — only when ``interactive=True`` — the browser flow of the trust
config's OIDC issuer. One :class:`KeylessSigner` holds ONE token and ONE ephemeral
key/certificate, so the ModelKit signature and the ML-BOM attestation are signed by the
same certificate with one Fulcio round trip.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from kitaudit.errors import SigningError


class KeylessSigner:
    """Keyless signer; implements :class:`kitaudit.signing.signer.Signer`.

    ``trust_config`` is a ClientTrustConfig JSON file (private Sigstore deployments, or
    the loopback test services); otherwise production, or staging with ``staging``.
    """

    def __init__(self, identity_token: str | None = None, *, staging: bool = False,
                 trust_config: str | Path | None = None, interactive: bool = False) -> None:
        self._token_arg = identity_token
        self._staging = staging
        self._trust_config_path = Path(trust_config) if trust_config else None
        self._interactive = interactive
        self._signer: Any = None
        self._token: Any = None
        self._config: Any = None
        self._ctx_manager: Any = None
        self._identity: str | None = None
        self._issuer: str | None = None

    # -- setup ---------------------------------------------------------------------

    def _trust_config(self) -> Any:
        from sigstore.models import ClientTrustConfig

        try:
            if self._trust_config_path is not None:
                return ClientTrustConfig.from_json(self._trust_config_path.read_text())
            if self._staging:
                return ClientTrustConfig.staging()
            return ClientTrustConfig.production()
        except FileNotFoundError:
            raise SigningError(f"trust config {self._trust_config_path} does not exist")
        except Exception as err:
            raise SigningError(f"cannot load the Sigstore trust config: {err}",
                               fix="check --trust-config, or network access to Sigstore's "
                                   "TUF repository")

    def _raw_token(self, trust_config: Any) -> str:
        if self._token_arg:
            return self._token_arg
        env = os.environ.get("SIGSTORE_ID_TOKEN")
        if env:
            return env
        from sigstore.oidc import IdentityError, detect_credential

        try:
            ambient = detect_credential()
        except IdentityError as err:
            raise SigningError(f"ambient OIDC credential detection failed: {err}",
                               fix="pass --identity-token or set SIGSTORE_ID_TOKEN")
        if ambient:
            return str(ambient)
        if not self._interactive:
            raise SigningError("no identity token for keyless signing",
                               fix="pass --identity-token, set SIGSTORE_ID_TOKEN, run in CI "
                                   "with OIDC, or use --key")
        from sigstore.oidc import Issuer

        try:
            token = Issuer(trust_config.signing_config.get_oidc_url()).identity_token()
        except Exception as err:
            raise SigningError(f"interactive OIDC login failed: {err}",
                               fix="pass --identity-token or set SIGSTORE_ID_TOKEN")
        return str(token._raw_token)

    def _ensure_token(self) -> Any:
        if self._token is not None:
            return self._token
        from sigstore.oidc import IdentityError, IdentityToken

        self._config = self._trust_config()
        raw = self._raw_token(self._config)
        try:
            token = IdentityToken(raw)
        except IdentityError as err:
            raise SigningError(f"identity token rejected: {err} (expired or malformed)",
                               fix="get a fresh token (audience 'sigstore')")
        self._identity, self._issuer = token.identity, token.issuer
        self._token = token
        return token

    def _ensure_signer(self) -> Any:
        if self._signer is not None:
            return self._signer
        from sigstore.sign import SigningContext

        token = self._ensure_token()
        try:
            ctx = SigningContext.from_trust_config(self._config)
            self._ctx_manager = ctx.signer(token, cache=True)
            self._signer = self._ctx_manager.__enter__()
        except Exception as err:
            raise SigningError(f"could not get a signing certificate: {err}",
                               fix="check the identity token and the Fulcio URL")
        return self._signer

    def fingerprint(self) -> str:
        """Who will sign (issuer, identity, Sigstore instance), known before any signing
        request: used to recognise an interrupted run's signatures."""
        self._ensure_token()
        where = (str(self._trust_config_path) if self._trust_config_path
                 else "staging" if self._staging else "production")
        return f"keyless:{self._issuer}:{self._identity}:{where}"

    # -- Signer protocol -----------------------------------------------------------

    @property
    def description(self) -> str:
        if self._identity:
            return f"keyless {self._identity} ({self._issuer})"
        return "keyless"

    @property
    def identity(self) -> str | None:
        return self._identity

    @property
    def issuer(self) -> str | None:
        return self._issuer

    def sign_dsse(self, statement: bytes) -> dict[str, Any]:
        import json

        from sigstore.errors import Error as SigstoreError

        signer = self._ensure_signer()
        try:
            bundle = signer.sign_dsse(_sigstore_statement(statement))
        except SigstoreError as err:
            raise SigningError(f"keyless signing failed: {err}")
        except Exception as err:  # network / service errors from requests
            raise SigningError(f"keyless signing failed: {err}",
                               fix="check access to Fulcio, Rekor and the TSA")
        doc: dict[str, Any] = json.loads(bundle.to_json())
        return doc

    def sign_payload(self, payload: bytes) -> Any:
        """Legacy ``.sig`` signature: a hashedrekord signature over ``payload`` with the
        same certificate, converted to cosign's layer annotations."""
        import json

        from sigstore.errors import Error as SigstoreError

        from kitaudit.signing.signer import LegacySignature, rekor_bundle_from_entry

        signer = self._ensure_signer()
        try:
            bundle = json.loads(signer.sign_artifact(payload).to_json())
        except SigstoreError as err:
            raise SigningError(f"keyless signing failed: {err}")
        except Exception as err:
            raise SigningError(f"keyless signing failed: {err}",
                               fix="check access to Fulcio, Rekor and the TSA")
        vm = bundle["verificationMaterial"]
        cert_b64 = vm["certificate"]["rawBytes"]
        lines = [cert_b64[i:i + 64] for i in range(0, len(cert_b64), 64)]
        cert_pem = ("-----BEGIN CERTIFICATE-----\n" + "\n".join(lines)
                    + "\n-----END CERTIFICATE-----\n").encode()
        stamps = (vm.get("timestampVerificationData") or {}).get("rfc3161Timestamps") or []
        return LegacySignature(
            signature=base64.b64decode(bundle["messageSignature"]["signature"]),
            certificate_pem=cert_pem, chain_pem=b"",
            rekor_bundle=rekor_bundle_from_entry((vm.get("tlogEntries") or [None])[0]),
            rfc3161_timestamp=base64.b64decode(stamps[0]["signedTimestamp"]) if stamps else None)

    def close(self) -> None:
        if self._ctx_manager is not None:
            self._ctx_manager.__exit__(None, None, None)
            self._ctx_manager = None
            self._signer = None


def _sigstore_statement(statement: bytes) -> Any:
    """A sigstore-python ``dsse.Statement`` holding exactly ``statement``'s bytes.

    sigstore-python 4.5 requires a ``name`` in every subject (its model has
    ``name: Optional[str]`` without a default), but cosign writes image subjects without
    one and we sign the same bytes. So the statement is validated with ``name: null``
    added to a copy, and the original bytes are what gets signed. This relies on
    ``Statement._contents`` / ``_inner`` (pinned by the keyless tests).
    """
    import json

    from sigstore.dsse import Statement, _Statement

    doc = json.loads(statement)
    for sub in doc.get("subject") or []:
        if isinstance(sub, dict):
            sub.setdefault("name", None)
    try:
        inner = _Statement.model_validate(doc)
    except Exception as err:
        raise SigningError(f"malformed in-toto statement: {err}")
    st = Statement.__new__(Statement)
    st._contents = statement
    st._inner = inner
    return st
