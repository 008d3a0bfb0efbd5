"""``kitaudit report``: the compliance report from the audit database, and
``kitaudit verify-report``: check a signed report file.

Exit codes of ``report``: 0 written; 1 written, and the ``--fail-on`` condition holds
(violations, or new violations since the baseline) — use it for alerting; 2 nothing
written or not signed (bad database, bad option, signing failed).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click

from kitaudit._cli._output import print_json
from kitaudit._cli.verify import accepted_signer_options


@click.command("report")
@click.option("--db", "db_path", required=True, type=click.Path(dir_okay=False),
              help="The audit database written by `kitaudit crawl`.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Directory to write the report into (created if needed).")
@click.option("--format", "formats", default="html,md,json", show_default=True,
              help="Comma-separated: html (self-contained page), md (Markdown with .svg "
                   "charts), json (docs/report.md schema).")
@click.option("--since", default="last", show_default=True,
              help="Baseline for 'changes': last (previous complete crawl of each target), "
                   "crawl:ID, a previous report.json (or its directory), or none.")
@click.option("--policy", "policies", multiple=True, type=click.Path(dir_okay=False),
              help="Report only these policies, with their rules and controls from the "
                   "file (repeatable). Default: every policy the crawl evaluated.")
@click.option("--waivers", type=click.Path(dir_okay=False),
              help="Waivers file: list every waiver and its expiry, used or not.")
@click.option("--repository", "repositories", multiple=True, metavar="GLOB",
              help="Only repositories matching GLOB (registry/repository; repeatable).")
@click.option("--target", default=None,
              help="Only crawls of this target (as given to `kitaudit crawl`).")
@click.option("--title", default=None, help="Report title.")
@click.option("--fail-on", type=click.Choice(["violations", "new-violations"]),
              default=None, help="Exit 1 when there are violations (fail/error results), "
                                 "or violations new since the baseline.")
@click.option("--sign", "sign", is_flag=True,
              help="Sign every file written: a Sigstore bundle FILE.sigstore.json next "
                   "to each (keyless unless --key).")
@click.option("--key", "key_file", type=click.Path(dir_okay=False),
              help="With --sign: sign with this private key (cosign.key or PEM EC key).")
@click.option("--identity-token", default=None,
              help="With --sign, keyless: OIDC identity token (else SIGSTORE_ID_TOKEN, "
                   "ambient CI credentials, or the browser flow).")
@click.option("--staging", is_flag=True, help="With --sign: Sigstore's staging instance.")
@click.option("--trust-config", type=click.Path(dir_okay=False, exists=True),
              help="With --sign: ClientTrustConfig JSON of a private Sigstore deployment.")
@click.option("--template-dir", type=click.Path(file_okay=False, exists=True),
              help="Render with these templates (copies of kitaudit/report/templates).")
@click.option("--output", "output", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="What to print: a summary, or JSON.")
def report_cmd(db_path: str, out_dir: str, formats: str, since: str,
               policies: tuple[str, ...], waivers: str | None,
               repositories: tuple[str, ...], target: str | None, title: str | None,
               fail_on: str | None, sign: bool, key_file: str | None,
               identity_token: str | None, staging: bool, trust_config: str | None,
               template_dir: str | None, output: str) -> None:
    """Write the compliance report of the ModelKits in the audit database --db into
    --out: summary, controls (EU AI Act / NIST AI RMF / ISO/IEC 42001 references from
    secondary sources), inventory, changes since the baseline, waivers, lineage graph
    and charts.

    Exit codes: 0 written; 1 written and the --fail-on condition holds; 2 not written
    (or not signed).
    """
    from kitaudit.errors import UsageError
    from kitaudit.report.data import build_report, fail_on_triggered
    from kitaudit.report.render import parse_formats, write_report

    fmts = parse_formats(formats)
    if (key_file or identity_token or staging or trust_config) and not sign:
        raise UsageError("signing options given without --sign", fix="add --sign")
    from kitaudit._cli.sign import signer_session

    session: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if sign:
        session = signer_session(key_file, identity_token, staging, trust_config)
    with session as signer:
        report = build_report(db_path, since=None if since == "none" else since,
                              policies=list(policies), waivers=waivers,
                              repositories=list(repositories), target=target, title=title)
        files = write_report(report, out_dir, formats=fmts, template_dir=template_dir)
        bundles = []
        if signer is not None:
            from kitaudit.report.sign import sign_report_files

            bundles = sign_report_files(files, signer, report=report)
    triggered = fail_on_triggered(report, fail_on)
    s = report["summary"]
    if output == "json":
        print_json({"files": [str(f) for f in files], "bundles": [str(b) for b in bundles],
                    "summary": s, "fail_on": fail_on, "triggered": triggered,
                    "exit_code": 1 if triggered else 0})
    else:
        new = "—" if s["new_violations"] is None else s["new_violations"]
        click.echo(f"{s['modelkits']} ModelKits: {s['signed']} signed, {s['sbom_valid']} "
                   f"with a valid signed ML-BOM; {s['violations']} violations "
                   f"({new} new), {s['warnings']} warnings, {s['waived']} waived")
        for f in files:
            click.echo(f"wrote {f}")
        for b in bundles:
            click.echo(f"signed {b}")
        if triggered:
            click.echo(f"--fail-on {fail_on}: condition met (exit 1)", err=True)
    if triggered:
        sys.exit(1)


@click.command("verify-report")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@accepted_signer_options
@click.option("--output", "output", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="Output format.")
def verify_report_cmd(files: tuple[str, ...], keys: tuple[str, ...],
                      certificate_identity: str | None, certificate_identity_regexp: str | None,
                      certificate_oidc_issuer: str | None,
                      certificate_oidc_issuer_regexp: str | None, trusted_root: str | None,
                      output: str) -> None:
    """Verify report FILES against their bundles (FILE.sigstore.json).

    Keyless bundles are checked against --trusted-root, else the pinned production root
    shipped with kitaudit (never TUF).

    Exit codes: 0 every file verified; 1 one did not (changed, wrong signer);
    2 could not check (missing file, bad options).
    """
    from kitaudit.errors import UsageError, VerificationError
    from kitaudit.report.sign import verify_report_file
    from kitaudit.signing.verify_bundle import SignerPolicy, load_trusted_root

    base = SignerPolicy.from_key_files(*keys) if keys else SignerPolicy()
    policy = SignerPolicy(keys=base.keys, identity=certificate_identity,
                          identity_regexp=certificate_identity_regexp,
                          issuer=certificate_oidc_issuer,
                          issuer_regexp=certificate_oidc_issuer_regexp)
    if not policy.keys and not policy.keyless_configured:
        raise UsageError("no accepted signer given",
                         fix="pass --key cosign.pub, or --certificate-identity[-regexp] with "
                             "--certificate-oidc-issuer[-regexp]")
    root = None
    if policy.keyless_configured:
        root = load_trusted_root(trusted_root, offline=True)
    results = []
    failed = False
    for f in files:
        try:
            res = verify_report_file(f, policy=policy, trusted_root=root)
            results.append({"file": f, "verified": True, "signer": res.signer,
                            "issuer": res.issuer})
        except VerificationError as err:
            failed = True
            results.append({"file": f, "verified": False, "error": err.message})
    if output == "json":
        print_json({"results": results, "verified": not failed})
    else:
        for r in results:
            if r["verified"]:
                click.echo(f"OK {r['file']} (signed by {r['signer']})")
            else:
                click.echo(f"FAILED {r['file']}: {r['error']}")
    if failed:
        sys.exit(1)


def register(main: click.Group) -> None:
    main.add_command(report_cmd)
    main.add_command(verify_report_cmd)
