"""``kitaudit demo``: the whole mission end to end on a local store."""

from __future__ import annotations

import click

from kitaudit._cli._output import emit, output_option


@click.command()
@click.option("--home", default=".demo", show_default=True, type=click.Path(file_okay=False),
              help="Where the demo keeps its store, keys and project (wiped first).")
@click.option("--registry", metavar="HOST",
              help="Also push to this registry and check the ModelKit there.")
@click.option("--plain-http", "--http", "plain_http", is_flag=True,
              help="Talk plain HTTP to --registry (loopback and labs).")
@click.option("--report-dir", default="reports/demo", show_default=True,
              type=click.Path(file_okay=False), help="Where the compliance report goes.")
@output_option(default="text", choices=("text", "json"))
def demo(home, registry, plain_http, report_dir, output):
    """Run kitaudit's main job end to end: train, pack with ML-BOM, sign, verify, promote,
    crawl and report."""
    from dataclasses import asdict

    from kitaudit.demo import run_demo

    result = run_demo(home, registry=registry, plain_http=plain_http, report_dir=report_dir,
                      echo=(lambda _t: None) if output == "json" else click.echo)
    emit(output, asdict(result), lambda: click.echo(f"Demo finished: {result.reference} "
                                                     f"({result.digest})"))


def register(main: click.Group) -> None:
    main.add_command(demo)
