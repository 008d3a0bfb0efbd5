"""The ``kitaudit`` command line: a thin layer over the library.

Each command parses its arguments, calls one library function and prints the result.
Command groups live in one module per concern (see ``_COMMAND_MODULES``) and register
themselves on ``main``; shared option groups are in ``_options`` and ``_output``.
Heavy libraries are imported inside commands so that start-up stays fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from kitaudit import __version__
from kitaudit.errors import KitauditError

# Modules under kitaudit._cli that define a ``register(group)`` function.
_COMMAND_MODULES = (
    "local", "registry", "sbom", "sign", "verify", "policy", "admission", "audit", "report",
    "demo",
)


class _Group(click.Group):
    """Turns library errors into one line (plus the fix) and the documented exit code."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except KitauditError as err:
            click.echo(f"error: {err.message}", err=True)
            if err.fix:
                click.echo(f"fix: {err.fix}", err=True)
            sys.exit(err.exit_code)
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="kitaudit")
def main() -> None:
    """Govern ML models like container images: pack, sign, verify, audit and report on
    KitOps ModelKits.

    Exit codes: 0 success; 1 denied (verification, policy) or differs (diff);
    2 could not decide (usage, bad input, network, registry).
    """


for _name in _COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"kitaudit._cli.{_name}")
    except ModuleNotFoundError as _err:  # a concern not built yet
        if _err.name != f"kitaudit._cli.{_name}":
            raise
        continue
    _mod.register(main)
