"""``lifecycle offboard`` and ``lifecycle runs``: start a termination, follow and read runs
(through the running service's API)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from lifecycle.cli.common import (
    DEFAULT_URL,
    SUCCEEDED,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    api_call,
    client,
    emit,
    out,
    progress_table,
    wait_for_run,
)

runs_app = typer.Typer(help="Runs (terminations, joiners, movers).", no_args_is_help=True)


def _dry_run_text(plan: dict[str, Any]) -> str:
    return "\n".join(
        f"{s['system']}: "
        + (
            f"account {s['account_id']} ({s['login']}), "
            f"enabled={s['enabled']}, would {', '.join(s['actions'])}"
            if s["account_id"]
            else (s["error"] or "no account")
        )
        for s in plan["systems"]
    )


def offboard(
    worker: Annotated[str, typer.Argument(help="Worker id, e.g. W0042.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the evidence).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Terminate again even if already terminated.")
    ] = False,
    wait: Annotated[bool, typer.Option(help="Wait for verification, showing progress.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for verification.")] = 300,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Terminate WORKER now in every connected system, and wait until each is verified off."""
    with client(url, token) as http:
        body = {"worker_id": worker, "reason": reason, "dry_run": dry_run, "force": force}
        run = api_call(http, "POST", "/v1/offboard", json=body)
        if run.get("already_terminated"):
            run = run["run"]
            emit(
                run,
                as_json,
                f"{worker} is already terminated by run {run['id']} ({run['status']}); "
                "use --force to start another termination",
            )
            if run["status"] not in SUCCEEDED | {"pending", "running"}:
                raise typer.Exit(1)
            return
        if dry_run:
            emit(run, as_json, _dry_run_text(run))
            return
        if not wait:
            emit(run, as_json, f"run {run['id']} accepted")
            return
        run = wait_for_run(http, run, timeout, live=True, as_json=as_json)
    emit(
        run,
        as_json,
        f"run {run['id']}: {run['status']}"
        + (f" in {run['time_to_revoke_ms']} ms" if run["time_to_revoke_ms"] is not None else ""),
    )
    if run["status"] not in SUCCEEDED:
        raise typer.Exit(1)


@runs_app.command("list")
def runs_list(
    status: str | None = None,
    worker: str | None = None,
    limit: int = 20,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List recent runs (admin or auditor token)."""
    params = {k: v for k, v in {"status": status, "worker": worker, "limit": limit}.items() if v}
    with client(url, token) as http:
        data = api_call(http, "GET", "/v1/runs", params=params)
    emit(
        data,
        as_json,
        "\n".join(
            f"{r['id']}  {r['kind']:<9} {r['worker_id']:<8} {r['status']:<12} "
            f"{r['time_to_revoke_ms'] if r['time_to_revoke_ms'] is not None else '-':>7} ms  "
            f"{r['received_at']}"
            for r in data["runs"]
        )
        or "no runs",
    )


@runs_app.command("show")
def runs_show(
    run_id: str, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """One run with its steps and read-backs."""
    with client(url, token) as http:
        run = api_call(http, "GET", f"/v1/runs/{run_id}")
    if as_json:
        emit(run, True)
        return
    out.print(progress_table(run))
    out.print(f"time to revoke: {run['time_to_revoke_ms']} ms; evidence seq: {run['evidence_seq']}")
    if run.get("next_attempt_at"):
        out.print(f"waiting for an unreachable system; next attempt at {run['next_attempt_at']}")


@runs_app.command("retry")
def runs_retry(
    run_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded on the new run).")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run an incomplete or failed run again, as a new run (admin token)."""
    with client(url, token) as http:
        run = api_call(http, "POST", f"/v1/runs/{run_id}/retry", json={"reason": reason})
    emit(run, as_json, f"run {run['id']} retries run {run_id}: {run['status']}")


@runs_app.command("cancel")
def runs_cancel(
    run_id: str,
    reason: Annotated[str, typer.Option(help="Why (recorded on the run).")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a run that has not started: future-dated, or awaiting approval (admin token)."""
    with client(url, token) as http:
        run = api_call(http, "POST", f"/v1/runs/{run_id}/cancel", json={"reason": reason})
    emit(run, as_json, f"run {run['id']}: {run['status']}")
