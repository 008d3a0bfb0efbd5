"""``kitaudit verify REF``: the admission check (signatures, signed ML-BOM, policies).

Exit codes: 0 pass, 1 denied, 2 could not decide (treat as denied).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from kitaudit._cli._options import remote_net, remote_options
from kitaudit._cli._output import output_option, print_json

_SIGNER_OPTIONS = [
    click.option("--key", "keys", multiple=True, type=click.Path(dir_okay=False),
                 help="Accept signatures made with this public key (cosign.pub, PEM); "
                      "repeatable."),
    click.option("--certificate-identity", help="Keyless: the exact certificate identity "
                 "(email, URI) to accept."),
    click.option("--certificate-identity-regexp", help="Keyless: a regular expression the "
                 "identity must match (searched; anchor it with ^...$)."),
    click.option("--certificate-oidc-issuer",
                 help="Keyless: the exact OIDC issuer to accept."),
    click.option("--certificate-oidc-issuer-regexp", help="Keyless: a regular expression "
                 "the OIDC issuer must match."),
    click.option("--trusted-root", type=click.Path(dir_okay=False),
                 help="Sigstore trusted_root.json (or ClientTrustConfig) to verify against "
                      "(no TUF access)."),
]
_TRUST_OPTIONS = [
    *_SIGNER_OPTIONS,
    click.option("--offline", is_flag=True,
                 help="Never contact Sigstore: use --trusted-root or the pinned production "
                      "root shipped with kitaudit."),
    click.option("--staging", is_flag=True, help="Trust Sigstore's staging instance."),
    click.option("--policy", "policies", multiple=True, type=click.Path(dir_okay=False),
                 help="Policy file (CEL rules) to evaluate; repeatable. None: only the "
                      "built-in signature and ML-BOM checks."),
    click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                 help="Override a policy parameter; repeatable."),
    click.option("--waivers", type=click.Path(dir_okay=False), help="Waivers file."),
    click.option("--no-sbom-required", is_flag=True,
                 help="Do not require a signed, matching ML-BOM (leave it to the "
                      "policies)."),
]
_TRUST_PARAMS = ("keys", "certificate_identity", "certificate_identity_regexp",
                 "certificate_oidc_issuer", "certificate_oidc_issuer_regexp", "trusted_root",
                 "offline", "staging", "policies", "params", "waivers", "no_sbom_required")


def trust_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """cosign's trust flags plus policies, for any command that verifies (verify, the
    crawler, the webhook): turn the parameters into options with
    :func:`verify_options_from`."""
    for option in reversed(_TRUST_OPTIONS):
        f = option(f)
    return f


def accepted_signer_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Only the accepted-signer flags of :func:`trust_options` (``--key``, the keyless
    identity and issuer, ``--trusted-root``), for checking signatures over files
    (``verify-report``)."""
    for option in reversed(_SIGNER_OPTIONS):
        f = option(f)
    return f


def verify_options_from(params: dict[str, Any], **extra: Any) -> Any:
    """A :class:`kitaudit.verify.VerifyOptions` from the parameters :func:`trust_options`
    added (``params`` may hold others; they are ignored). ``extra``: more fields
    (``deep``, ``now``). Raises :class:`~kitaudit.errors.KitauditError` for a bad
    ``--param``."""
    from kitaudit.verify import VerifyOptions

    p = {k: params.get(k) for k in _TRUST_PARAMS}
    parsed: dict[str, str] = {}
    if p["params"]:
        from kitaudit.policy.loader import parse_param_args

        parsed = parse_param_args(list(p["params"]))
    return VerifyOptions(
        keys=list(p["keys"] or ()), certificate_identity=p["certificate_identity"],
        certificate_identity_regexp=p["certificate_identity_regexp"],
        certificate_oidc_issuer=p["certificate_oidc_issuer"],
        certificate_oidc_issuer_regexp=p["certificate_oidc_issuer_regexp"],
        trusted_root=p["trusted_root"], offline=bool(p["offline"]),
        staging=bool(p["staging"]), policies=list(p["policies"] or ()), params=parsed,
        waivers=p["waivers"], require_sbom=not p["no_sbom_required"], **extra)


@click.command("verify")
@click.argument("ref")
@trust_options
@click.option("--deep", is_flag=True, help="Also re-hash every layer (streams all of them).")
@click.option("-r", "--remote", "where", flag_value="remote",
              help="Always read REF from its registry (not the local store).")
@click.option("--local", "where", flag_value="local",
              help="Only look in the local store.")
@remote_options()
@output_option()
def verify_cmd(ref: str, deep: bool, where: str | None, output: str, **kw: Any) -> None:
    """Verify the ModelKit REF: a signature from an accepted signer over its manifest
    digest, a signed ML-BOM that matches it, and the given policies — fail closed.

    REF is looked up in the local store first; a reference to another registry that is
    not stored locally is read from the registry (-r: always the registry). Signatures
    are found through the OCI referrers API, the sha256-<hex> fallback tag and cosign's
    .sig/.att tags; cosign's own bundles verify like kitaudit's.

    Exit codes: 0 pass, 1 denied (signature, ML-BOM or policy), 2 could not decide
    (usage, network, registry, bad policy) — treat 2 as denied.
    """
    from kitaudit.errors import KitauditError
    from kitaudit.verify import verify
    from kitaudit.verify.result import VerifyResult

    try:
        opts = verify_options_from(kw, deep=deep)
    except KitauditError as err:
        result = VerifyResult(reference=ref, problems=[err.message], fix=err.fix or "")
    else:
        remote = {"remote": True, "local": False}.get(where or "")
        result = verify(ref, opts, remote=remote, net=remote_net(kw))
    if output == "json":
        print_json(result.to_dict())
    else:
        for line in result.summary_lines():
            click.echo(line)
    sys.exit(result.exit_code)


def register(main: click.Group) -> None:
    main.add_command(verify_cmd)
