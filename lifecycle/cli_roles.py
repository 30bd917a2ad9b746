"""``lifecycle playbook|policy|reconcile`` and ``lifecycle hr import``: role playbooks, policy
conformance, orphan accounts and the workforce roster. Kept apart from ``cli.py`` (terminations);
``register`` adds these commands to its Typer app."""

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from connectors.base import utcnow
from lifecycle.exceptions import LifecycleError


def register(app: typer.Typer, hr_app: typer.Typer) -> None:
    from lifecycle import cli as c

    playbook_app = typer.Typer(help="Role playbooks (joiner / mover).", no_args_is_help=True)
    policy_app = typer.Typer(
        help="MFA, lockout, session and inactivity policy.", no_args_is_help=True
    )
    app.add_typer(playbook_app, name="playbook")
    app.add_typer(policy_app, name="policy")

    def library(config: Path | None) -> Any:
        from lifecycle.service import load_playbooks

        try:
            return load_playbooks(c.settings_from(config))
        except LifecycleError as exc:
            c.fail(exc.message)

    @playbook_app.command("list")
    def playbook_list(config: c.ConfigOpt = None, as_json: c.JsonOpt = False) -> None:
        """The playbooks, their SHA-256 and the job codes mapped to them (local files)."""
        books = library(config)
        data = [
            {
                "name": b.name,
                "sha256": b.sha256,
                "systems": sorted(b.playbook.systems),
                "job_codes": sorted(k for k, v in books.job_codes.items() if v == b.name),
            }
            for b in sorted(books.playbooks.values(), key=lambda b: b.name)
        ]
        c.emit(
            data,
            as_json,
            "\n".join(
                f"{d['name']:<16} {d['sha256'][:12]}  systems: {', '.join(d['systems'])}"
                f"  job codes: {', '.join(d['job_codes']) or '-'}"
                for d in data
            )
            or "no playbooks",
        )

    @playbook_app.command("show")
    def playbook_show(name: str, config: c.ConfigOpt = None) -> None:
        """Print one playbook file and its SHA-256 (validated first)."""
        books = library(config)
        try:
            book = books.get(name)
        except LifecycleError as exc:
            c.fail(exc.message)
        c.out.print(f"# {book.path} sha256={book.sha256}", highlight=False)
        c.out.print(escape(book.path.read_text(encoding="utf-8")), highlight=False)

    def diff_text(plan: dict[str, Any]) -> str:
        lines = [
            f"{plan['kind']} of {plan['worker_id']} to {plan['playbook']}"
            + (f" (from {plan['from']})" if plan["from"] else "")
            + f", playbook sha256 {plan['playbook_sha256'][:12]}"
        ]
        for s in plan["systems"]:
            if s["error"]:
                lines.append(f"  {s['system']}: cannot read: {s['error']}")
                continue
            parts = []
            if s["create"]:
                parts.append("create account")
            parts += [f"+{e}" for e in s["add"]] + [f"-{e}" for e in s["remove"]]
            lines.append(f"  {s['system']}: {', '.join(parts) or 'no change'}")
        return "\n".join(lines)

    @playbook_app.command("plan")
    def playbook_plan(
        role: Annotated[str, typer.Argument(help="Playbook name, e.g. scheduling-va.")],
        worker: Annotated[str, typer.Option(help="Worker id.")],
        url: c.UrlOpt = c.DEFAULT_URL,
        token: c.TokenOpt = None,
        as_json: c.JsonOpt = False,
    ) -> None:
        """Show what applying ROLE to the worker would create, add (+) and remove (-), per
        system, without changing anything."""
        with c.client(url, token) as http:
            plan = c.api_call(
                http, "POST", f"/v1/playbooks/{role}/plan", json={"worker_id": worker}
            )
        c.emit(plan, as_json, diff_text(plan))

    @playbook_app.command("apply")
    def playbook_apply(
        role: Annotated[str, typer.Argument(help="Playbook name, e.g. scheduling-va.")],
        worker: Annotated[str, typer.Option(help="Worker id.")],
        reason: Annotated[str, typer.Option(help="Why (recorded in the evidence).")] = (
            "playbook applied by an admin"
        ),
        wait: Annotated[bool, typer.Option(help="Wait until the run is verified.")] = True,
        timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 300,
        url: c.UrlOpt = c.DEFAULT_URL,
        token: c.TokenOpt = None,
        as_json: c.JsonOpt = False,
    ) -> None:
        """Apply ROLE to the worker (onboard or transfer run) and wait for its read-back."""
        body = {"worker_id": worker, "reason": reason}
        with c.client(url, token) as http:
            run = c.api_call(http, "POST", f"/v1/playbooks/{role}/apply", json=body)
            deadline = time.monotonic() + timeout
            while wait and run["status"] not in c.FINISHED and time.monotonic() < deadline:
                time.sleep(0.2)
                run = c.api_call(http, "GET", f"/v1/runs/{run['id']}")
        c.emit(run, as_json, f"run {run['id']} ({run['kind']}): {run['status']}")
        if wait and run["status"] not in ("verified", "no_accounts"):
            raise typer.Exit(1)

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
        url: c.UrlOpt = c.DEFAULT_URL, token: c.TokenOpt = None, as_json: c.JsonOpt = False
    ) -> None:
        """Per system and control: expected value, actual value and their sources. Exit 1 when
        a system is out of policy."""
        with c.client(url, token) as http:
            report = c.api_call(http, "GET", "/v1/policy/findings")
        if as_json:
            c.emit(report, True)
        else:
            c.out.print(escape(findings_text(report)), highlight=False)
        if not report["compliant"]:
            raise typer.Exit(1)

    @policy_app.command("enforce")
    def policy_enforce(
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show findings.")] = False,
        url: c.UrlOpt = c.DEFAULT_URL,
        token: c.TokenOpt = None,
        as_json: c.JsonOpt = False,
    ) -> None:
        """Bring every out-of-policy system to its baseline through its connector (a policy
        run with evidence). Exit 1 when findings remain."""
        with c.client(url, token) as http:
            report = c.api_call(http, "POST", "/v1/policy/enforce", json={"dry_run": dry_run})
        if as_json:
            c.emit(report, True)
        else:
            c.out.print(escape(findings_text(report)), highlight=False)
            for run_id in report["run_ids"]:
                c.out.print(f"remediation run {run_id}")
            if dry_run and not report["compliant"]:
                c.out.print("dry run: nothing was changed")
        if not report["compliant"] and not dry_run:
            raise typer.Exit(1)

    @app.command("reconcile")
    def reconcile_cmd(
        disable: Annotated[
            bool | None,
            typer.Option("--disable/--report-only", help="Disable orphans (default: config)."),
        ] = None,
        url: c.UrlOpt = c.DEFAULT_URL,
        token: c.TokenOpt = None,
        as_json: c.JsonOpt = False,
    ) -> None:
        """Report enabled accounts that belong to no active worker (orphans)."""
        with c.client(url, token) as http:
            report = c.api_call(http, "POST", "/v1/reconcile", json={"disable": disable})
        c.emit(
            report,
            as_json,
            "\n".join(
                f"{o['system']}: {o['login'] or o['account_id']} ({o['reason']})"
                + (f" disabled by run {o['run_id']}" if o["run_id"] else "")
                for o in report["orphans"]
            )
            or "no orphan accounts",
        )

    @hr_app.command("import")
    def hr_import(
        roster: Annotated[Path, typer.Argument(help="CSV with a header row.", exists=True)],
        complete: Annotated[
            bool,
            typer.Option(help="The file is the whole workforce: mark unlisted workers absent."),
        ] = False,
        config: c.ConfigOpt = None,
        as_json: c.JsonOpt = False,
    ) -> None:
        """Load or refresh the workforce roster (worker_id, name, email, job_code, engagement,
        vendor, status). Rejected rows are listed with their line; exit 1 if there are any."""
        from lifecycle.service import open_store
        from lifecycle.services.roster import import_roster

        settings = c.settings_from(config)
        store = open_store(settings)
        try:
            result = import_roster(store, roster, utcnow(), complete=complete)
        except LifecycleError as exc:
            c.fail(exc.message)
        data = {
            "added": result.added,
            "updated": result.updated,
            "absent": result.absent,
            "rejected": [{"line": r.line, "reason": r.reason} for r in result.rejected],
        }
        c.emit(
            data,
            as_json,
            f"roster: {result.added} added, {result.updated} updated, {result.absent} marked "
            f"absent, {len(result.rejected)} rejected",
        )
        for r in result.rejected:
            c.err.print(f"line {r.line}: {escape(r.reason)}", highlight=False)
        if result.rejected:
            raise typer.Exit(1)
