"""``kitaudit generate-key-pair`` and ``kitaudit sign``: cosign-compatible signatures."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import click

from kitaudit._cli._options import remote_net, remote_options
from kitaudit._cli._output import emit, output_option, print_table


def _password_prompt(confirm: bool) -> str:
    from kitaudit.errors import SigningError

    if not sys.stdin.isatty():
        raise SigningError("no password for the private key and no terminal to ask on",
                           fix="set KITAUDIT_PASSWORD (or COSIGN_PASSWORD)")
    value: str = click.prompt("Enter password for private key", hide_input=True,
                              confirmation_prompt="Enter password for private key again"
                              if confirm else False, default="", show_default=False,
                              err=True)
    return value


@click.command("generate-key-pair")
@click.option("--output-key-prefix", default="cosign", show_default=True,
              help="Write <prefix>.key and <prefix>.pub.")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing key files.")
@output_option()
def generate_key_pair_cmd(output_key_prefix: str, force: bool, output: str) -> None:
    """Generate an ECDSA P-256 key pair in cosign's format, for key-based (air-gapped)
    signing.

    The private key is encrypted (scrypt + nacl/secretbox, PEM ``ENCRYPTED SIGSTORE
    PRIVATE KEY``) with the password from KITAUDIT_PASSWORD, COSIGN_PASSWORD or a prompt;
    cosign reads it, and kitaudit reads cosign's keys.
    """
    from kitaudit.signing.keys import generate_key_pair, public_key_hint, write_key_pair

    private_pem, public_pem = generate_key_pair(prompt=_password_prompt)
    key_path, pub_path = write_key_pair(output_key_prefix, private_pem, public_pem,
                                        force=force)
    from cryptography.hazmat.primitives import serialization

    hint = public_key_hint(serialization.load_pem_public_key(public_pem))
    emit(output, {"privateKey": str(key_path), "publicKey": str(pub_path), "keyHint": hint},
         lambda: click.echo(f"Private key written to {key_path}\n"
                            f"Public key written to {pub_path}"))


@contextlib.contextmanager
def signer_session(key_file: str | None, identity_token: str | None, staging: bool,
                   trust_config: str | None) -> Iterator[Any]:
    """:func:`make_signer`, closed afterwards (a keyless signer holds HTTP sessions)."""
    signer = make_signer(key_file, identity_token, staging, trust_config)
    try:
        yield signer
    finally:
        close = getattr(signer, "close", None)
        if callable(close):
            close()


def make_signer(key_file: str | None, identity_token: str | None, staging: bool,
                trust_config: str | None) -> Any:
    """A KeySigner for ``--key``, else a KeylessSigner (shared by sign, pack --sign and
    push --sign)."""
    from kitaudit.errors import UsageError

    if key_file:
        if identity_token or staging or trust_config:
            raise UsageError("--key cannot be combined with keyless options",
                             fix="drop --identity-token/--staging/--trust-config, or --key")
        from kitaudit.signing.signer import KeySigner

        return KeySigner.from_file(key_file, prompt=_password_prompt)
    if staging and trust_config:
        raise UsageError("--staging and --trust-config are exclusive")
    from kitaudit.signing.keyless import KeylessSigner

    return KeylessSigner(identity_token, staging=staging, trust_config=trust_config,
                         interactive=sys.stdin.isatty())


def signer_options(key_flag: str = "--key"):
    """The signing flags of ``sign`` for commands that sign as they go (``--sign``)."""
    def decorate(f):
        for option in reversed([
            click.option("--sign", "sign", is_flag=True,
                         help="Sign the ModelKit and its ML-BOM (see `kitaudit sign`)."),
            click.option(key_flag, "sign_key", type=click.Path(dir_okay=False),
                         help="Signing key (cosign.key or PEM EC key); keyless without it."),
            click.option("--identity-token", "identity_token", default=None,
                         help="OIDC identity token for keyless signing."),
            click.option("--staging", is_flag=True, help="Use Sigstore's staging instance."),
            click.option("--trust-config", type=click.Path(dir_okay=False, exists=True),
                         help="ClientTrustConfig JSON of a private Sigstore deployment."),
        ]):
            f = option(f)
        return f
    return decorate


def sign_after(store: Any, ref: str, sign_key: str | None, identity_token: str | None,
               staging: bool, trust_config: str | None) -> Any:
    """Sign a ModelKit just written to the local store; returns the SignResult."""
    from kitaudit.signing.attach import sign_local

    with signer_session(sign_key, identity_token, staging, trust_config) as signer:
        return sign_local(store, ref, signer)


@click.command("sign")
@click.argument("ref")
@click.option("--key", "key_file", type=click.Path(dir_okay=False),
              help="Sign with this private key (cosign.key or PEM EC key) instead of "
                   "keyless.")
@click.option("--identity-token", envvar=None, default=None,
              help="OIDC identity token for keyless signing (else SIGSTORE_ID_TOKEN, "
                   "ambient CI credentials, or the browser flow).")
@click.option("--staging", is_flag=True, help="Use Sigstore's staging instance.")
@click.option("--trust-config", type=click.Path(dir_okay=False, exists=True),
              help="ClientTrustConfig JSON of a private Sigstore deployment.")
@click.option("--signature-format", type=click.Choice(["bundle", "legacy"]),
              default="bundle", show_default=True,
              help="legacy also writes cosign's .sig/.att tags for older verifiers.")
@click.option("-r", "--remote", is_flag=True,
              help="Sign the ModelKit in the registry even if it is stored locally.")
@remote_options(proxy=False)
@output_option()
def sign_cmd(ref: str, key_file: str | None, identity_token: str | None, staging: bool,
             trust_config: str | None, signature_format: str, remote: bool, output: str,
             **kw: Any) -> None:
    """Sign the ModelKit REF and its ML-BOM, and attach the signatures as cosign does.

    Writes two Sigstore bundles (v0.3, DSSE + in-toto): the ModelKit signature
    (predicate https://sigstore.dev/cosign/sign/v1) and, when REF has an ML-BOM, a
    CycloneDX attestation (https://cyclonedx.org/bom), each as an OCI referrer. A local
    ModelKit is signed in the local store (push carries the signatures); a registry
    reference is signed in place.
    """
    from kitaudit.signing.attach import sign_reference

    with signer_session(key_file, identity_token, staging, trust_config) as signer:
        result = sign_reference(ref, signer, remote=remote, signature_format=signature_format,
                                **remote_net(kw))

    def human() -> None:
        click.echo(f"Signed {result.reference} ({result.subject}) as {result.signer}",
                   err=True)
        if not result.sbom_signed:
            click.echo("note: no ML-BOM attached to this ModelKit; only the ModelKit was "
                       "signed", err=True)
        print_table(["predicate", "format", "attached", "digest"],
                    [(a["predicateType"], a["format"], a.get("tag") or a["method"],
                      a["digest"]) for a in result.attached])

    emit(output, result.to_dict(), human)


def register(main: click.Group) -> None:
    main.add_command(generate_key_pair_cmd)
    main.add_command(sign_cmd)
