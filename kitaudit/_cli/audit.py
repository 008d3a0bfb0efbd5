"""``kitaudit crawl``, ``kitaudit query …``, ``kitaudit db merge`` and ``kitaudit browse``:
the audit database (``docs/audit-db.md``)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from kitaudit._cli._options import remote_net, remote_options
from kitaudit._cli._output import print_json, print_table
from kitaudit._cli.verify import trust_options, verify_options_from

DB_OPTION = click.option("--db", "db", default="audit.db", show_default=True,
                         type=click.Path(dir_okay=False), help="The audit database.")


def _query_output(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--output", "--format", "output",
                        type=click.Choice(["table", "json", "csv"]), default="table",
                        show_default=True, help="Output format.")(f)


def _emit_rows(output: str, columns: list[str], rows: list[dict[str, Any]],
               title: str | None = None) -> None:
    if output == "json":
        print_json(rows)
    elif output == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        for r in rows:
            writer.writerow(["" if r.get(c) is None else r.get(c) for c in columns])
    else:
        print_table(columns, [[r.get(c) for c in columns] for r in rows], title=title)


# ---------------------------------------------------------------------- crawl
@click.command("crawl")
@click.argument("target", required=False, default="local")
@DB_OPTION
@click.option("--concurrency", type=click.IntRange(1, 64), default=8, show_default=True,
              help="Requests in flight at once.")
@click.option("--shard", metavar="I/N",
              help="Crawl only the repositories of shard I of N (stable hash).")
@click.option("--run-id", help="Label shared by the shards of one crawl (default: new).")
@click.option("--reverify", is_flag=True,
              help="Verify every ModelKit again, even when nothing changed.")
@trust_options
@remote_options()
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: on a terminal).")
@click.option("--output", "--format", "output", type=click.Choice(["table", "json"]),
              default="table", show_default=True, help="Output format.")
def crawl_cmd(target: str, db: str, concurrency: int, shard: str | None, run_id: str | None,
              reverify: bool, progress: bool | None, output: str, **params: Any) -> None:
    """Crawl TARGET into the audit database: a registry HOST[:PORT][/PREFIX], an OCI
    layout (oci:DIR) or the local store (`local`, the default).

    Every manifest is read once; ModelKits (KitOps and ModelPack) are recorded with their
    Kitfile, layers, datasets, referrers, ML-BOM facts and base-model lineage. With trust
    options (--key or the keyless pair) signatures are verified and --policy files are
    evaluated. A recrawl reads only what changed; an interrupted crawl resumes.
    """
    from kitaudit.audit.crawl import crawl, parse_shard
    from kitaudit.errors import UsageError

    options = None
    if params.get("keys") or params.get("certificate_identity") or \
            params.get("certificate_identity_regexp") or \
            params.get("certificate_oidc_issuer") or \
            params.get("certificate_oidc_issuer_regexp"):
        options = verify_options_from(params)
    elif params.get("policies") or params.get("waivers") or params.get("params"):
        raise UsageError("--policy needs trust options: policies only see verified facts",
                         fix="add --key cosign.pub or --certificate-identity with "
                             "--certificate-oidc-issuer")
    net = remote_net(params)
    show = sys.stderr.isatty() if progress is None else progress
    bar: Any = None
    task: Any = None

    def on_progress(stats: Any) -> None:
        nonlocal bar, task
        if not show:
            return
        if bar is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            bar = Progress(TextColumn("crawl"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.description}"), console=Console(stderr=True),
                           transient=True)
            bar.start()
            task = bar.add_task("", total=stats.repositories_total or None)
        bar.update(task, total=stats.repositories_total or None,
                   completed=stats.repositories,
                   description=f"{stats.manifests} manifests, {stats.modelkits} ModelKits, "
                               f"{stats.unchanged} unchanged, {stats.errors} errors")

    try:
        stats = crawl(target, db, options=options, concurrency=concurrency,
                      shard=parse_shard(shard), progress=on_progress, net=net,
                      run_id=run_id, reverify=reverify)
    finally:
        if bar is not None:
            bar.stop()
    data = stats.to_dict()
    if output == "json":
        print_json(data)
        return
    click.echo(f"crawl {stats.crawl_id} of {stats.target}"
               + (f" (shard {stats.shard})" if stats.shard else "")
               + f": {stats.status} in {stats.seconds:.1f}s")
    click.echo(f"  {stats.repositories} repositories, {stats.tags} tags, {stats.manifests} "
               f"manifests ({stats.manifests_new} new, {stats.unchanged} unchanged)")
    click.echo(f"  {stats.modelkits} ModelKits, {stats.other_artifacts} other artifacts, "
               f"{stats.referrers} referrers, {stats.signatures} verified signatures")
    if stats.errors:
        hint = "SELECT * FROM errors WHERE crawl_id = " + str(stats.crawl_id)  # noqa: S608
        click.echo(f"  {stats.errors} errors: kitaudit query sql \"{hint}\" --db {db}")


# ---------------------------------------------------------------------- query
@click.group("query")
def query_group() -> None:
    """Ask the audit database: lineage, dataset use, unsigned ModelKits, policy
    violations, tag history, or any read-only SQL."""


@query_group.command("lineage")
@click.argument("ref")
@DB_OPTION
@_query_output
def query_lineage(ref: str, db: str, output: str) -> None:
    """Ancestors (base models) and descendants of REF (tag, digest or package name)."""
    from kitaudit.audit.queries import lineage, lineage_lines

    tree = lineage(db, ref)
    if output == "json":
        print_json(tree)
        return
    if output == "csv":
        rows: list[dict[str, Any]] = [{"relation": "self", "depth": 0, **_flat(tree)}]

        def walk(nodes: list[dict[str, Any]], key: str, relation: str) -> None:
            for n in nodes:
                rows.append({"relation": relation, "depth": n.get("depth"), **_flat(n)})
                walk(n.get(key) or [], key, relation)

        walk(tree.get("ancestors") or [], "ancestors", "ancestor")
        walk(tree.get("descendants") or [], "descendants", "descendant")
        _emit_rows("csv", ["relation", "depth", "digest", "name", "tags", "reference",
                           "signed"], rows)
        return
    for line in lineage_lines(tree):
        click.echo(line)


def _flat(n: dict[str, Any]) -> dict[str, Any]:
    return {"digest": n.get("digest"), "name": n.get("name"),
            "tags": " ".join(n.get("tags") or []), "reference": n.get("reference"),
            "signed": n.get("signed")}


@query_group.command("uses")
@click.argument("dataset")
@DB_OPTION
@_query_output
def query_uses(dataset: str, db: str, output: str) -> None:
    """Every ModelKit that contains DATASET (name, path, layer digest or remote URL)."""
    from kitaudit.audit.queries import uses

    res = uses(db, dataset)
    _emit_rows(output, res.columns, res.rows)


@query_group.command("unsigned")
@DB_OPTION
@_query_output
def query_unsigned(db: str, output: str) -> None:
    """ModelKits without a verified signature."""
    from kitaudit.audit.queries import unsigned

    res = unsigned(db)
    _emit_rows(output, res.columns, res.rows)


@query_group.command("violations")
@DB_OPTION
@click.option("--policy", help="Only this policy (by name).")
@click.option("--severity", type=click.Choice(["deny", "warn"]),
              help="Only rules of this severity.")
@_query_output
def query_violations(db: str, policy: str | None, severity: str | None, output: str) -> None:
    """Failing, warning and erroring policy rules per ModelKit."""
    from kitaudit.audit.queries import violations

    res = violations(db, policy=policy, severity=severity)
    _emit_rows(output, res.columns, res.rows)


@query_group.command("history")
@click.argument("repo")
@DB_OPTION
@_query_output
def query_history(repo: str, db: str, output: str) -> None:
    """Where REPO[:TAG] pointed at each crawl (retags show as `moved`)."""
    from kitaudit.audit.queries import history

    res = history(db, repo)
    _emit_rows(output, res.columns, res.rows)


@query_group.command("sql")
@click.argument("query")
@DB_OPTION
@_query_output
def query_sql(query: str, db: str, output: str) -> None:
    """Run one SELECT on a read-only connection."""
    from kitaudit.audit.queries import sql

    res = sql(db, query)
    _emit_rows(output, res.columns, res.rows)


# ---------------------------------------------------------------------- db
@click.group("db")
def db_group() -> None:
    """Maintain audit databases."""


@db_group.command("merge")
@click.argument("out", type=click.Path(dir_okay=False))
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--output", "--format", "output", type=click.Choice(["table", "json"]),
              default="table", show_default=True, help="Output format.")
def db_merge(out: str, shards: tuple[str, ...], output: str) -> None:
    """Merge shard databases (from `crawl --shard I/N`) into OUT."""
    from kitaudit.audit.merge import merge

    stats = merge(out, list(shards))
    if output == "json":
        print_json(stats.to_dict())
        return
    click.echo(f"merged {len(shards)} databases ({stats.crawls} crawls) into {out}")
    rows = [[t, n] for t, n in stats.rows.items()]
    print_table(["table", "rows added"], rows)


# ---------------------------------------------------------------------- browse
@click.command("browse")
@DB_OPTION
@click.option("--port", type=int, default=8001, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def browse_cmd(db: str, port: int, host: str) -> None:
    """Open the audit database in Datasette (pip install 'kitaudit[browse]')."""
    import importlib.util
    import os
    import subprocess

    from kitaudit.errors import KitauditError, NotFound

    if not os.path.isfile(db):
        raise NotFound(f"audit database {db} does not exist",
                       fix="run `kitaudit crawl TARGET --db PATH` first")
    if importlib.util.find_spec("datasette") is None:
        raise KitauditError("Datasette is not installed",
                            fix="pip install 'kitaudit[browse]' (or pip install datasette)")
    click.echo(f"Datasette on http://{host}:{port}/ (^C to stop)", err=True)
    code = subprocess.call([sys.executable, "-m", "datasette", "serve", db, "--host", host,
                            "--port", str(port)])
    sys.exit(code)


def register(main: click.Group) -> None:
    main.add_command(crawl_cmd)
    main.add_command(query_group)
    main.add_command(db_group)
    main.add_command(browse_cmd)
