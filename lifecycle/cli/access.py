"""``lifecycle suspend``, ``lifecycle restore`` and ``lifecycle approvals``: reversible access,
through the running service's API (admin token)."""

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
    wait_for_run,
)

approvals_app = typer.Typer(
    help="Restores awaiting a second admin's approval (two-person rule).", no_args_is_help=True
)
Reason = Annotated[str, typer.Option(help="Why (recorded on the run and in the evidence).")]
Wait = Annotated[bool, typer.Option(help="Wait for the run to finish, showing progress.")]
Timeout = Annotated[float, typer.Option(help="Seconds to wait.")]


def _finished(run: dict[str, Any], as_json: bool) -> None:
    emit(run, as_json, f"run {run['id']}: {run['status']}")
    if run["status"] not in SUCCEEDED:
        raise typer.Exit(1)


def suspend(
    worker: Annotated[str, typer.Argument(help="Worker id, e.g. W0042.")],
    reason: Reason,
    wait: Wait = True,
    timeout: Timeout = 300,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Suspend WORKER now (an incident): disable every account and revoke sessions, keeping
    their access until `lifecycle restore`."""
    with client(url, token) as http:
        run = api_call(http, "POST", "/v1/suspend", json={"worker_id": worker, "reason": reason})
        if not wait:
            emit(run, as_json, f"suspension run {run['id']} accepted")
            return
        run = wait_for_run(http, run, timeout, live=True, as_json=as_json)
    _finished(run, as_json)


def restore(
    worker: Annotated[str, typer.Argument(help="Worker id, e.g. W0042.")],
    reason: Reason,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore a suspended or wrongly terminated WORKER: exactly the access their suspension or
    termination took. Waits for another admin's approval (`lifecycle approvals approve ID`)
    unless the service is configured otherwise."""
    with client(url, token) as http:
        run = api_call(http, "POST", "/v1/restore", json={"worker_id": worker, "reason": reason})
    reverses = run.get("reverses") or {}
    snapshot = run.get("snapshot") or {}
    lines = [
        f"restore run {run['id']} of {worker}: {run['status']}",
        f"reverses {reverses.get('kind')} run {reverses.get('run_id')} "
        f"(evidence seq {reverses.get('seq')})",
        *(f"  {system}: {', '.join(items)}" for system, items in snapshot.items()),
    ]
    if run["status"] == "awaiting_approval":
        lines.append(f"another admin approves it with: lifecycle approvals approve {run['id']}")
    emit(run, as_json, "\n".join(lines))


@approvals_app.command("list")
def approvals_list(
    url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Runs awaiting approval: id, worker, kind, who asked, when, why."""
    with client(url, token) as http:
        data = api_call(http, "GET", "/v1/approvals")
    rows = data["approvals"]
    emit(
        data,
        as_json,
        "\n".join(
            f"{r['id']}  {r['kind']:<8} {r['worker_id']:<8} requested by {r['actor']} at "
            f"{r['received_at']}: {r['reason']}"
            for r in rows
        )
        or "nothing awaits approval",
    )


@approvals_app.command("approve")
def approvals_approve(
    run_id: Annotated[str, typer.Argument(help="The run awaiting approval.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept with the approval).")] = None,
    wait: Wait = True,
    timeout: Timeout = 300,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Approve RUN_ID (you must not be the admin who requested it); it executes now."""
    body = {"reason": reason} if reason else {}
    with client(url, token) as http:
        run = api_call(http, "POST", f"/v1/approvals/{run_id}/approve", json=body)
        if not wait:
            emit(run, as_json, f"run {run['id']} approved: {run['status']}")
            return
        run = wait_for_run(http, run, timeout, live=True, as_json=as_json)
    _finished(run, as_json)


@approvals_app.command("reject")
def approvals_reject(
    run_id: Annotated[str, typer.Argument(help="The run awaiting approval.")],
    reason: Reason,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Reject RUN_ID: it ends cancelled, with your reason kept."""
    with client(url, token) as http:
        run = api_call(http, "POST", f"/v1/approvals/{run_id}/reject", json={"reason": reason})
    emit(run, as_json, f"run {run['id']} rejected: {run['status']}")
