"""``kitaudit admission``: the Kubernetes validating admission webhook.

``kitaudit admission serve`` verifies the ModelKits that Pods and KServe
InferenceServices reference (docs/admission.md); ``kitaudit admission review FILE``
answers one AdmissionReview from a file with the same logic (for trying policies and
debugging without a cluster).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from kitaudit._cli._output import output_option, print_json


def _verify_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The trust and policy flags of ``kitaudit verify``, plus its registry flags."""
    options = [
        click.option("--key", "keys", multiple=True, type=click.Path(dir_okay=False),
                     help="Accept signatures made with this public key (cosign.pub); "
                          "repeatable."),
        click.option("--certificate-identity",
                     help="Keyless: the exact certificate identity to accept."),
        click.option("--certificate-identity-regexp",
                     help="Keyless: a regular expression the identity must match "
                          "(anchor it with ^...$)."),
        click.option("--certificate-oidc-issuer",
                     help="Keyless: the exact OIDC issuer to accept."),
        click.option("--certificate-oidc-issuer-regexp",
                     help="Keyless: a regular expression the OIDC issuer must match."),
        click.option("--trusted-root", type=click.Path(dir_okay=False),
                     help="Sigstore trusted_root.json to verify against (no TUF access)."),
        click.option("--offline", is_flag=True,
                     help="Never contact Sigstore: --trusted-root or the pinned root."),
        click.option("--policy", "policies", multiple=True, type=click.Path(dir_okay=False),
                     help="Policy file (CEL rules); repeatable."),
        click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                     help="Override a policy parameter; repeatable."),
        click.option("--waivers", type=click.Path(dir_okay=False), help="Waivers file."),
        click.option("--no-sbom-required", is_flag=True,
                     help="Do not require a signed, matching ML-BOM (leave it to policies)."),
        click.option("--plain-http", "--http", "plain_http", is_flag=True, default=None,
                     help="Use HTTP, not HTTPS, for registries."),
        click.option("--tls-verify/--no-tls-verify", default=None,
                     help="Verify registries' TLS certificates (default: on)."),
        click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True),
                     default=None, help="CA bundle to trust for registries."),
        click.option("--mode", type=click.Choice(["enforce", "warn"]), default="enforce",
                     show_default=True,
                     help="warn: admit everything, with warnings for what enforce denies."),
        click.option("--failure-policy", type=click.Choice(["deny", "allow"]),
                     default="deny", show_default=True,
                     help="When a ModelKit could not be verified in time or at all."),
        click.option("--timeout", type=click.FloatRange(0.1, 30), default=8.0,
                     show_default=True,
                     help="Seconds per review; keep it below the webhook's timeoutSeconds."),
        click.option("--image-pattern", "image_patterns", multiple=True, metavar="GLOB",
                     help="Container images and image volumes matching this "
                          "registry/repository glob are ModelKits to verify (* within a "
                          "path segment, ** across); repeatable."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _build(kw: dict[str, Any], cache_ttl: float, workers: int, tag_ttl: float = 0.0) -> Any:
    from kitaudit.admission.server import WebhookConfig, build_controller
    from kitaudit.policy import parse_param_args
    from kitaudit.verify import VerifyOptions

    options = VerifyOptions(
        keys=list(kw["keys"]), certificate_identity=kw["certificate_identity"],
        certificate_identity_regexp=kw["certificate_identity_regexp"],
        certificate_oidc_issuer=kw["certificate_oidc_issuer"],
        certificate_oidc_issuer_regexp=kw["certificate_oidc_issuer_regexp"],
        trusted_root=kw["trusted_root"], offline=kw["offline"],
        policies=list(kw["policies"]), params=parse_param_args(list(kw["params"])),
        waivers=kw["waivers"], require_sbom=not kw["no_sbom_required"])
    net = {k: kw[k] for k in ("plain_http", "tls_verify", "tls_cert") if kw[k] is not None}
    config = WebhookConfig(mode=kw["mode"], failure_policy=kw["failure_policy"],
                           timeout=kw["timeout"], image_patterns=tuple(kw["image_patterns"]),
                           workers=workers, tag_ttl=tag_ttl)
    return build_controller(options, net=net, config=config, cache_ttl=cache_ttl)


@click.group("admission")
def admission() -> None:
    """Kubernetes admission webhook: verify the ModelKits Pods and InferenceServices use."""


@admission.command("serve")
@click.option("--tls-cert-file", required=True, type=click.Path(dir_okay=False, exists=True),
              help="Serving certificate chain (PEM); reloaded when the file changes.")
@click.option("--tls-private-key-file", required=True,
              type=click.Path(dir_okay=False, exists=True),
              help="Private key of the serving certificate (PEM).")
@click.option("--address", default="0.0.0.0", show_default=True,  # noqa: S104
              help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8443, show_default=True)
@click.option("--cache-ttl", type=click.FloatRange(0), default=300.0, show_default=True,
              help="Seconds a clean pass is remembered (0: no cache). Failures never are.")
@click.option("--workers", type=click.IntRange(1, 256), default=16, show_default=True,
              help="Verifications running at the same time.")
@click.option("--tag-cache-ttl", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds a tag's digest is reused without asking the registry (0: "
                   "resolve every time). Digest-pinned references never need the "
                   "registry once cached.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
@_verify_options
def serve_cmd(tls_cert_file: str, tls_private_key_file: str, address: str, port: int,
              cache_ttl: float, workers: int, tag_cache_ttl: float, log_level: str,
              **kw: Any) -> None:
    """Serve the validating webhook over HTTPS: POST /validate (AdmissionReview v1),
    GET /healthz, GET /metrics.

    Every ModelKit reference in the object — kit:// URIs (args, env, KServe storageUri),
    the KitOps init container's MODELKIT_REF, images matching --image-pattern — is
    verified like `kitaudit verify REF --remote` with the given keys, identities and
    policies. Denials name the failed rules. Stops on SIGTERM.
    """
    import logging

    from kitaudit.admission.server import serve

    logging.basicConfig(level=getattr(logging, log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    controller = _build(kw, cache_ttl, workers, tag_cache_ttl)
    serve(controller, certfile=tls_cert_file, keyfile=tls_private_key_file, host=address,
          port=port)


@admission.command("review")
@click.argument("file", type=click.File("rb"))
@_verify_options
@output_option(default="json")
def review_cmd(file: Any, output: str, **kw: Any) -> None:
    """Answer the AdmissionReview in FILE ('-': stdin) as the webhook would, and print
    the response. Exit codes: 0 allowed, 1 denied, 2 malformed review or bad options."""
    from kitaudit.admission.review import MalformedReview
    from kitaudit.errors import UsageError

    controller = _build(kw, 0.0, 4)
    try:
        response = controller.review(file.read())
    except MalformedReview as err:
        raise UsageError(f"malformed AdmissionReview: {err}",
                         fix="give an AdmissionReview v1 request (apiVersion "
                             "admission.k8s.io/v1, kind AdmissionReview)") from None
    finally:
        controller.close()
    r = response["response"]
    if output == "json":
        print_json(response)
    else:
        click.echo("allowed" if r["allowed"] else f"denied: {r['status']['message']}")
        for w in r.get("warnings", []):
            click.echo(f"warning: {w}")
    sys.exit(0 if r["allowed"] else 1)


def register(main: click.Group) -> None:
    main.add_command(admission)
