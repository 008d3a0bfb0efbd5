"""Option groups shared by commands that talk to a registry without the full set of
kit's network flags (``verify``, ``sign``, ``admission``; ``push``/``pull`` use
:func:`kitaudit._cli.registry.network_options`, whose ``--key`` is a TLS client key)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

_REMOTE_PARAMS = ("plain_http", "tls_verify", "tls_cert", "proxy")


def remote_options(*, proxy: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--plain-http/--http``, ``--tls-verify/--no-tls-verify``, ``--tls-cert`` and
    (``proxy=True``) ``--proxy``, all defaulting to None (= the library's default). Turn
    the values into network keyword arguments with :func:`remote_net`."""
    options = [
        click.option("--plain-http", "--http", "plain_http", is_flag=True, default=None,
                     help="Use HTTP, not HTTPS, for the registry."),
        click.option("--tls-verify/--no-tls-verify", default=None,
                     help="Verify the registry's TLS certificate (default: on)."),
        click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True),
                     default=None, help="CA bundle to trust for the registry."),
    ]
    if proxy:
        options.append(click.option("--proxy", default=None,
                                    help="HTTP(S) proxy URL for the registry."))

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def remote_net(params: dict[str, Any]) -> dict[str, Any]:
    """The flags of :func:`remote_options` that were given, as network keyword arguments
    (``params`` may hold other parameters; they are ignored)."""
    return {k: params[k] for k in _REMOTE_PARAMS if params.get(k) is not None}
