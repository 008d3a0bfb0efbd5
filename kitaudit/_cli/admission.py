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

from kitaudit._cli._options import remote_net, remote_options
from kitaudit._cli._output import output_option, print_json
from kitaudit._cli.verify import trust_options, verify_options_from


def _verify_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The trust and policy flags of ``kitaudit verify``, its registry flags (without
    --proxy) and the webhook's own."""
    options = [
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
    return trust_options(remote_options(proxy=False)(f))


def _build(kw: dict[str, Any], cache_ttl: float, workers: int, tag_ttl: float = 0.0) -> Any:
    from kitaudit.admission.server import WebhookConfig, build_controller

    options = verify_options_from(kw)
    config = WebhookConfig(mode=kw["mode"], failure_policy=kw["failure_policy"],
                           timeout=kw["timeout"], image_patterns=tuple(kw["image_patterns"]),
                           workers=workers, tag_ttl=tag_ttl)
    return build_controller(options, net=remote_net(kw), config=config,
                            cache_ttl=cache_ttl)


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
