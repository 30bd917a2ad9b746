"""``lifecycle policy`` and ``lifecycle reconcile``: MFA, lockout, session and inactivity policy
per system, and orphan accounts (through the running service)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from lifecycle.cli.common import (
    DEFAULT_URL,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    api_call,
    client,
    emit,
    out,
)

policy_app = typer.Typer(help="MFA, lockout, session and inactivity policy.", no_args_is_help=True)


def findings_text(report: dict[str, Any]) -> str:
    """One line per system and control (plain text: it is read by people and by grep)."""
    lines = ["policy: " + ("compliant" if report["compliant"] else "FINDINGS")]
    for f in report["findings"]:
        mark = {True: "ok", False: "FINDING", None: "unknown"}[f["compliant"]]
        actual = f["actual"] if f["actual"] is not None else (f["note"] or "-")
        lines.append(
            f"{mark:<8} {f['system']:<8} {f['control']:<26} expected {f['expected']} "
            f"({f['expected_source']}), actual {actual}"
            + (f" ({f['actual_source']})" if f["actual_source"] else "")
        )
    return "\n".join(lines)


@policy_app.command("check")
def policy_check(
    url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Per system and control: expected value, actual value and their sources. Exit 1 when
    a system is out of policy."""
    with client(url, token) as http:
        report = api_call(http, "GET", "/v1/policy/findings")
    if as_json:
        emit(report, True)
    else:
        out.print(escape(findings_text(report)), highlight=False)
    if not report["compliant"]:
        raise typer.Exit(1)


@policy_app.command("enforce")
def policy_enforce(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show findings.")] = False,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Bring every out-of-policy system to its baseline through its connector (a policy
    run with evidence). Exit 1 when findings remain."""
    with client(url, token) as http:
        report = api_call(http, "POST", "/v1/policy/enforce", json={"dry_run": dry_run})
    if as_json:
        emit(report, True)
    else:
        out.print(escape(findings_text(report)), highlight=False)
        for run_id in report["run_ids"]:
            out.print(f"remediation run {run_id}")
        if dry_run and not report["compliant"]:
            out.print("dry run: nothing was changed")
    if not report["compliant"] and not dry_run:
        raise typer.Exit(1)


def reconcile(
    disable: Annotated[
        bool | None,
        typer.Option("--disable/--report-only", help="Disable orphans (default: config)."),
    ] = None,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Report enabled accounts that belong to no active worker (orphans)."""
    with client(url, token) as http:
        report = api_call(http, "POST", "/v1/reconcile", json={"disable": disable})
    emit(
        report,
        as_json,
        "\n".join(
            f"{o['system']}: {o['login'] or o['account_id']} ({o['reason']})"
            + (f" disabled by run {o['run_id']}" if o["run_id"] else "")
            for o in report["orphans"]
        )
        or "no orphan accounts",
    )
