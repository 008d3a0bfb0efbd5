"""Printing helpers shared by the command modules: JSON for machines, rich tables for
people (plain text when stdout is not a terminal)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

OUTPUT_CHOICE = click.Choice(["table", "json"])


def output_option(default: str = "table", choices: Sequence[str] = ("table", "json")):
    """``-o/--output table|json`` (kit spells it ``--format``; both accepted)."""
    return click.option("--output", "--format", "output", type=click.Choice(list(choices)),
                        default=default, show_default=True, help="Output format.")


def is_tty() -> bool:
    return sys.stdout.isatty()


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]],
                title: str | None = None) -> None:
    """A rich table on a terminal, tab-separated plain text otherwise."""
    if is_tty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        Console().print(table)
    else:
        click.echo("\t".join(columns))
        for row in rows:
            click.echo("\t".join("" if v is None else str(v) for v in row))


def emit(output: str, data: Any, human: Callable[[], None]) -> None:
    """Print ``data`` as JSON or call ``human`` to print it for people."""
    if output == "json":
        print_json(data)
    else:
        human()


def progress(enabled: bool | None = None):
    """A rich Progress for transfers, or None when not on a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), transient=True)
