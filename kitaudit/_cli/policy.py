"""``kitaudit policy test|lint|eval``: policy unit tests, lint and one-off evaluation."""

from __future__ import annotations

import sys
from typing import Any

import click

from kitaudit._cli._output import emit, output_option, print_table
from kitaudit.errors import Denied, PolicyError


@click.group("policy")
def policy_group() -> None:
    """Write, test and evaluate CEL policies (see docs/policy.md)."""


@policy_group.command("test")
@click.argument("directory", type=click.Path())
@output_option()
@click.option("-v", "--verbose", is_flag=True, help="Also list the cases that passed.")
def test_cmd(directory: str, output: str, verbose: bool) -> None:
    """Run the policy unit tests (*_test.yaml) under DIRECTORY.

    Each case gives an input document (optionally patched) and the expected status of
    named rules; exits 1 when a case fails.
    """
    from kitaudit.policy.testing import run_tests

    run = run_tests(directory)

    def human() -> None:
        for case in run.cases:
            if case.passed and not verbose:
                continue
            click.echo(f"{'PASS' if case.passed else 'FAIL'}  {case.suite}: {case.name}")
            for problem in case.problems:
                click.echo(f"      {problem}")
        click.echo(f"{len(run.cases) - len(run.failed)}/{len(run.cases)} cases passed "
                   f"in {len(run.suites)} suite(s)")

    emit(output, run.to_dict(), human)
    if run.failed:
        raise Denied(f"{len(run.failed)} of {len(run.cases)} policy test cases failed",
                     fix="fix the policy or the expectation; -v lists every case")


@policy_group.command("lint")
@click.argument("files", nargs=-1, type=click.Path())
@output_option()
def lint_cmd(files: tuple[str, ...], output: str) -> None:
    """Check policy and waiver FILES (default: policies/*.yaml).

    Reports bad CEL with the rule id and the position in the expression, unknown
    params, missing or unknown fields. Exits 1 when there is an error (warnings do not
    fail).
    """
    from kitaudit.policy.lint import default_files, lint_files

    paths = list(files) or [str(p) for p in default_files()]
    if not paths:
        raise PolicyError("no policy files given and no policies/*.yaml here",
                          fix="kitaudit policy lint FILE...")
    problems = lint_files(paths)
    errors = [p for p in problems if p.severity == "error"]

    def human() -> None:
        for p in problems:
            click.echo(f"{p.severity}: {p}")
        click.echo(f"{len(paths)} file(s): {len(errors)} error(s), "
                   f"{len(problems) - len(errors)} warning(s)")

    emit(output, {"files": paths, "errors": len(errors),
                  "warnings": len(problems) - len(errors),
                  "problems": [p.to_dict() for p in problems]}, human)
    if errors:
        raise Denied(f"{len(errors)} error(s) in policy files", fix="fix the errors above")


def _read_input(path: str) -> dict[str, Any]:
    import json

    from kitaudit.policy import _yaml

    if path == "-":
        text = sys.stdin.read()
    else:
        text = _yaml.read_text(path)
    try:
        data = json.loads(text)
    except ValueError:
        data = _yaml.loads(text, path)
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: the input document must be a JSON object")
    return data


@policy_group.command("eval")
@click.option("--input", "input_path", required=True, type=click.Path(),
              help="Input document (JSON or YAML; - for stdin), see docs/policy.md.")
@click.option("--policy", "policy_paths", required=True, multiple=True, type=click.Path(),
              help="Policy file (repeatable).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a policy param (JSON or a comma list; repeatable).")
@click.option("--waivers", "waivers_path", type=click.Path(), help="Waivers file.")
@click.option("--now", "now", help="Evaluate at this time (RFC 3339; default: now).")
@output_option()
def eval_cmd(input_path: str, policy_paths: tuple[str, ...], params: tuple[str, ...],
             waivers_path: str | None, now: str | None, output: str) -> None:
    """Evaluate policies over an input document; exits 1 when denied."""
    from kitaudit.policy import evaluate, load_policies, load_waivers, parse_param_args
    from kitaudit.policy.inputdoc import parse_time

    policies = load_policies(policy_paths, params=parse_param_args(params))
    waivers = load_waivers(waivers_path) if waivers_path else []
    when = parse_time(now, "--now") if now else None
    report = evaluate(policies, _read_input(input_path), waivers=waivers, now=when)

    def human() -> None:
        print_table(["STATUS", "POLICY", "RULE", "SEVERITY", "REASON"],
                    [(r.status.upper(), r.policy, r.rule, r.severity, r.reason)
                     for r in report.results])
        for r in report.results:
            if r.status in ("fail", "warn", "error") and r.remediation:
                click.echo(f"fix {r.policy}/{r.rule}: {' '.join(r.remediation.split())}")
        counts = report.counts()
        click.echo(f"decision: {report.decision} ({counts['pass']} passed, {counts['fail']} "
                   f"failed, {counts['warn']} warnings, {counts['waived']} waived, "
                   f"{counts['error']} errors)")

    emit(output, report.to_dict(), human)
    if report.denied:
        failed = [f"{r.policy}/{r.rule}" for r in report.results if r.denies]
        raise Denied(f"policy denied: {', '.join(failed)}",
                     fix="see the reasons and fixes above")


def register(main: click.Group) -> None:
    main.add_command(policy_group)
