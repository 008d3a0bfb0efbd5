"""``kitaudit sbom``: print, export or check the CycloneDX ML-BOM attached to a ModelKit."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from kitaudit._cli._output import emit, output_option, print_table
from kitaudit._cli.registry import NetCommand, net_kwargs, network_options


@click.command(cls=NetCommand)
@click.argument("ref")
@click.option("-o", "--out", "out_file", type=click.Path(dir_okay=False, writable=True),
              help="Write the ML-BOM to FILE instead of standard output.")
@click.option("--spec", type=click.Choice(["1.6", "1.7"]), default=None,
              help="CycloneDX version to export (default: as stored). A kitaudit BOM is "
                   "relabelled; use 1.6 for Dependency-Track.")
@click.option("--check", "run_check", is_flag=True,
              help="Print the AI-readiness checklist instead of the BOM.")
@click.option("-r", "--remote", is_flag=True,
              help="Read the ML-BOM from the registry even if the ModelKit is stored locally.")
@network_options
@output_option(default="text", choices=("text", "json"))
def sbom(ref: str, out_file: str | None, spec: str | None, run_check: bool, remote: bool,
         output: str, **params: Any) -> None:
    """Print or export the ML-BOM of REF (local store first; other registries remotely).

    The BOM is written exactly as stored (byte-identical, so its digest and signatures
    still match) unless --spec asks for another CycloneDX version. With --check, list
    what a governance reviewer would miss and the completeness score.
    """
    from kitaudit import mlbom

    net = net_kwargs(params)
    stored = mlbom.load_mlbom(ref, remote=remote, spec=spec, **net)
    data = stored.bom
    if spec:
        data = mlbom.convert_spec(data, spec)

    if run_check:
        findings = mlbom.check(stored.json())
        score = mlbom.completeness(findings)

        def human() -> None:
            print_table(["check", "status", "detail"],
                        [(f.id, f.status, f.detail) for f in findings],
                        title=f"AI-readiness of {ref}")
            missing = sum(1 for f in findings if f.status != "ok")
            click.echo(f"completeness: {score}% ({missing} of {len(findings)} items "
                       "missing or partial)")

        emit(output, {"reference": ref, "subject": stored.subject, "bom": stored.digest,
                      "completeness": score,
                      "findings": [f.to_dict() for f in findings]}, human)
        if out_file is None:
            return

    if out_file is not None:
        try:
            Path(out_file).write_bytes(data)
        except OSError as err:
            from kitaudit.errors import UsageError

            raise UsageError(f"cannot write {out_file}: {err.strerror}",
                             fix="choose a writable path for -o") from None
        if not run_check:
            emit(output, {"reference": ref, "subject": stored.subject, "bom": stored.digest,
                          "file": out_file, "size": len(data), "source": stored.source},
                 lambda: click.echo(f"ML-BOM of {ref} written to {out_file}", err=True))
        return
    if not run_check:
        out = sys.stdout.buffer
        sys.stdout.flush()
        out.write(data)
        if not data.endswith(b"\n") and sys.stdout.isatty():
            out.write(b"\n")
        out.flush()


def register(main: click.Group) -> None:
    main.add_command(sbom)
