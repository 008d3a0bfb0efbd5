"""Registry commands: push, pull, login, logout (and the network flags other command
modules reuse through :func:`network_options` / :func:`net_kwargs`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from kitaudit._cli._output import emit, output_option
from kitaudit._cli.sign import sign_after, signer_options

_NET_PARAMS = ("plain_http", "tls_verify", "tls_cert", "cert", "key", "concurrency", "proxy")


_FALSE = {"false", "0", "no", "off", "f", "n"}
_TRUE = {"true", "1", "yes", "on", "t", "y"}


class NetCommand(click.Command):
    """A command that accepts Go-style ``--tls-verify=false`` (kit's spelling) besides
    ``--tls-verify``/``--no-tls-verify``, and ``--tls-verify false`` when the next word
    is a boolean (a reference after a bare ``--tls-verify`` stays an argument)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "--":
                out.extend(args[i:])
                break
            if arg.startswith("--tls-verify="):
                value = arg.split("=", 1)[1].lower()
                if value in _FALSE:
                    out.append("--no-tls-verify")
                elif value in _TRUE:
                    out.append("--tls-verify")
                else:
                    raise click.BadParameter(f"{value!r} is not true or false",
                                             param_hint="--tls-verify")
            elif arg == "--tls-verify" and i + 1 < len(args) and \
                    args[i + 1].lower() in _FALSE | _TRUE:
                out.append("--no-tls-verify" if args[i + 1].lower() in _FALSE
                           else "--tls-verify")
                i += 1
            else:
                out.append(arg)
            i += 1
        return super().parse_args(ctx, out)


def network_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """kit's network flags: --plain-http/--http, --tls-verify[=false], --tls-cert,
    --cert/--key, --concurrency, --proxy. Pass the values on with :func:`net_kwargs`."""
    options = [
        click.option("--plain-http", "--http", "plain_http", is_flag=True, default=False,
                     help="Use plain HTTP (no TLS), for loopback and lab registries."),
        click.option("--tls-verify/--no-tls-verify", "tls_verify", default=True,
                     show_default=True,
                     help="Verify the registry's TLS certificate (--tls-verify=false "
                          "to skip; needs a command with cls=NetCommand)."),
        click.option("--tls-cert", "tls_cert", type=click.Path(dir_okay=False, exists=True),
                     help="CA bundle (PEM) to trust for the registry."),
        click.option("--cert", "cert", type=click.Path(dir_okay=False, exists=True),
                     help="Client certificate (PEM) for mutual TLS."),
        click.option("--key", "key", type=click.Path(dir_okay=False, exists=True),
                     help="Private key (PEM) of the client certificate."),
        click.option("--concurrency", type=click.IntRange(1, 64), default=5,
                     show_default=True, help="Blobs transferred at the same time."),
        click.option("--proxy", help="HTTP(S) proxy URL."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def net_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """Pick the network flags out of a command's keyword arguments (removing them)."""
    out = {}
    for name in _NET_PARAMS:
        if name in params:
            value = params.pop(name)
            if value is not None:
                out[name] = value
    if out.get("key") and not out.get("cert"):
        from kitaudit.errors import UsageError

        raise UsageError("--key needs --cert", fix="pass the client certificate with --cert")
    return out


def _progress_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--progress", type=click.Choice(["none", "plain", "fancy"]),
                        default=None,
                        help="Progress display (default: fancy on a terminal, else none).")(f)


def _filter_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--filter", "-filter", "filters", multiple=True, metavar="FILTER",
                        help="Only fetch matching layers: TYPE[,TYPE][:NAME[,NAME]] with "
                             "types kitfile (config), model, datasets (dataset), code, docs, "
                             "prompts, mcpservers. Repeat for OR.")(f)


def _full(ref: str) -> str:
    from kitaudit.reference import parse_for_command

    return str(parse_for_command(ref))


@click.command(cls=NetCommand)
@click.argument("src")
@click.argument("dest", required=False)
@click.option("--no-referrers", is_flag=True,
              help="Do not push the ModelKit's signatures and SBOMs (referrers).")
@network_options
@signer_options(key_flag="--signing-key")
@_progress_option
@output_option(default="text", choices=("text", "json"))
def push(src: str, dest: str | None, no_referrers: bool, progress: str | None, output: str,
         sign: bool, sign_key: str | None, identity_token: str | None, staging: bool,
         trust_config: str | None, **params: Any) -> None:
    """Push SRC from the local store to its registry (or to DEST).

    With --sign the ModelKit and its ML-BOM are signed first (--signing-key FILE, or
    keyless), so the signatures travel with it. (--key is kit's TLS client key here.)"""
    from kitaudit.registry.transfer import push as do_push

    net = net_kwargs(params)
    if (sign_key or identity_token or staging or trust_config) and not sign:
        raise click.UsageError("signing options need --sign")
    if sign:
        from kitaudit.store import default_store

        if no_referrers:
            raise click.UsageError("--sign with --no-referrers would leave the signatures "
                                   "behind")
        signed = sign_after(default_store(), _full(src), sign_key, identity_token, staging,
                            trust_config)
        if output != "json":
            click.echo(f"Signed {signed.subject} as {signed.signer}", err=True)
    result = do_push(src, dest, progress=progress or "auto", referrers=not no_referrers,
                     **net)

    def human() -> None:
        sent = sum(b.size for b in result.blobs if b.action == "uploaded")
        counts: dict[str, int] = {}
        for b in result.blobs:
            counts[b.action] = counts.get(b.action, 0) + 1
        summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items()))
        click.echo(f"Pushed {result.reference} ({result.digest}): {summary}; "
                   f"{sent} bytes sent"
                   + (f"; {len(result.referrers)} referrer(s)" if result.referrers else ""))

    emit(output, result.to_dict(), human)


@click.command(cls=NetCommand)
@click.argument("ref")
@_filter_option
@click.option("-d", "--dir", "directory", type=click.Path(file_okay=False),
              help="Also unpack what was pulled into this directory.")
@click.option("-o", "--overwrite", is_flag=True, help="With -d: overwrite existing files.")
@click.option("-i", "--ignore-existing", is_flag=True,
              help="With -d: keep existing files, skip them.")
@click.option("--no-referrers", is_flag=True,
              help="Do not pull the ModelKit's signatures and SBOMs (referrers).")
@network_options
@_progress_option
@output_option(default="text", choices=("text", "json"))
def pull(ref: str, filters: tuple[str, ...], directory: str | None, overwrite: bool,
         ignore_existing: bool, no_referrers: bool, progress: str | None, output: str,
         **params: Any) -> None:
    """Pull REF from its registry into the local store (only the layers that --filter
    selects, plus the manifest and config)."""
    from kitaudit.registry.transfer import pull as do_pull

    net = net_kwargs(params)
    result = do_pull(ref, filters=list(filters) or None, progress=progress or "auto",
                     referrers=not no_referrers, unpack_dir=directory, overwrite=overwrite,
                     ignore_existing=ignore_existing, **net)

    def human() -> None:
        got = [b for b in result.blobs if b.action == "downloaded"]
        nbytes = sum(b.size for b in got)
        skipped = sum(1 for b in result.blobs if b.action == "filtered")
        text = f"Pulled {result.reference} ({result.digest}): {len(got)} blob(s), {nbytes} bytes"
        if skipped:
            text += f"; {skipped} layer(s) not selected by --filter"
        if result.referrers:
            text += f"; {len(result.referrers)} referrer(s)"
        if result.unpacked_to:
            text += f"; unpacked into {result.unpacked_to}"
        click.echo(text)

    emit(output, result.to_dict(), human)


@click.command(cls=NetCommand)
@click.argument("registry")
@click.option("-u", "--username", help="Username.")
@click.option("-p", "--password", help="Password (prefer --password-stdin: argv is visible).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@network_options
def login(registry: str, username: str | None, password: str | None, password_stdin: bool,
          **params: Any) -> None:
    """Log in to REGISTRY; credentials are checked, then saved in kitaudit's own
    credentials file (docker format, mode 0600)."""
    from kitaudit.errors import UsageError
    from kitaudit.registry.credentials import login as do_login

    net = net_kwargs(params)
    if password and password_stdin:
        raise UsageError("--password and --password-stdin are exclusive")
    if password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    if not username:
        if not sys.stdin.isatty() or password_stdin:
            raise UsageError("a username is required", fix="pass -u USER")
        username = click.prompt("Username")
    if not password:
        if not sys.stdin.isatty():
            raise UsageError("no password given", fix="pipe it with --password-stdin")
        password = click.prompt("Password", hide_input=True)
    path = do_login(registry, username or "", password or "", **net)
    click.echo(f"Login succeeded; credentials saved in {path}")


@click.command()
@click.argument("registry")
def logout(registry: str) -> None:
    """Forget the credentials kitaudit saved for REGISTRY."""
    from kitaudit.registry.credentials import logout as do_logout

    if do_logout(registry):
        click.echo(f"Removed credentials for {registry}")
    else:
        click.echo(f"No credentials saved for {registry}")


def register(main: click.Group) -> None:
    for cmd in (push, pull, login, logout):
        main.add_command(cmd)
