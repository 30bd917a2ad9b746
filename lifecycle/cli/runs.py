"""``lifecycle offboard`` and ``lifecycle runs``: start a termination, follow and read runs
(through the running service's API)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from lifecycle.cli.common import (
    DEFAULT_URL,
    SUCCEEDED,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    api_call,
    cell,
    client,
    emit,
    out,
    styled_state,
    table,
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


REVOKING = {"offboard", "suspend", "reverify", "disable"}
"""Kinds that take access away: their time to revoke is the figure that matters."""
PROVISIONING = {"onboard", "transfer", "restore"}


def _duration_ms(started: str | None, finished: str | None) -> int | None:
    if not started or not finished:
        return None
    begin, end = datetime.fromisoformat(started), datetime.fromisoformat(finished)
    return round((end - begin).total_seconds() * 1000)


def outcome_of(run: dict[str, Any]) -> str:
    """The figure that fits the run's kind: time to revoke, the playbook, or nothing."""
    if run["kind"] in REVOKING:
        ms = run.get("time_to_revoke_ms")
        return f"revoked in {ms} ms" if ms is not None else "-"
    if run["kind"] in PROVISIONING and run.get("playbook"):
        return f"playbook {run['playbook']}"
    return "-"


def runs_table(runs: list[dict[str, Any]]) -> Table:
    return table(
        ["run", "kind", "worker", "status", "outcome", "received", "finished"],
        [
            [
                cell(r["id"]),
                cell(r["kind"]),
                cell(r["worker_id"]),
                styled_state(r["status"]),
                cell(outcome_of(r)),
                cell(r["received_at"]),
                cell(r["finished_at"]),
            ]
            for r in runs
        ],
        title=f"runs ({len(runs)})",
    )


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
    if as_json:
        emit(data, True)
    elif not data["runs"]:
        out.print("no runs")
    else:
        out.print(runs_table(data["runs"]))


def _summary(run: dict[str, Any]) -> list[str]:
    lines = [
        f"run {cell(run['id'])}: {cell(run['kind'])} of {cell(run['worker_id'])} - "
        f"{styled_state(run['status'])}",
        f"reason: {cell(run['reason'])}; by {cell(run['actor'])} (source {cell(run['source'])})",
        f"received {cell(run['received_at'])}, started {cell(run['started_at'])}, "
        f"finished {cell(run['finished_at'])}",
    ]
    if run["kind"] in REVOKING:
        ms = run.get("time_to_revoke_ms")
        lines.append(
            f"time to revoke: {ms} ms" if ms is not None else "time to revoke: not (yet) revoked"
        )
    if run.get("playbook"):
        lines.append(
            f"playbook: {cell(run['playbook'])} ({cell((run.get('playbook_sha256') or '')[:12])})"
        )
    if run.get("evidence_seq") is not None:
        lines.append(f"evidence record: seq {run['evidence_seq']}")
    lines.extend(_reversal(run))
    if run.get("next_attempt_at"):
        lines.append(
            f"waiting for an unreachable system; next attempt at {cell(run['next_attempt_at'])}"
        )
    return lines


def _decided(what: str, decision: dict[str, Any] | None) -> list[str]:
    if not decision:
        return []
    why = f": {cell(decision['reason'])}" if decision.get("reason") else ""
    return [f"{what} by {cell(decision['by'])} at {cell(decision['at'])}{why}"]


def _reversal(run: dict[str, Any]) -> list[str]:
    """What a restore reverses and who approved it, findings for review, cancel and retry."""
    lines = []
    if reverses := run.get("reverses"):
        lines.append(
            f"reverses: {cell(reverses['kind'])} run {cell(reverses['run_id'])} "
            f"(evidence seq {cell(reverses['seq'])})"
        )
    approval = run.get("approval") or {}
    if approval:
        lines.append(f"requested by {cell(approval['requested_by'])}")
        lines += _decided("approved", approval.get("approved"))
        lines += _decided("rejected", approval.get("rejected"))
    lines += _decided("cancelled", run.get("cancelled"))
    if run.get("retry_of"):
        lines.append(f"retries run {cell(run['retry_of'])}")
    if run.get("retried_as"):
        lines.append(f"retried as run {cell(run['retried_as'])}")
    for finding in run.get("findings") or []:
        lines.append(
            f"finding ({cell(finding['kind'])}): {cell(finding['system'])} "
            f"{cell(finding['entitlement'])}: {cell(finding['detail'])}"
        )
    return lines


def steps_table(run: dict[str, Any]) -> Table:
    rows = []
    for step in run.get("steps", []):
        result = step.get("result") or {}
        notes = []
        if result.get("removed"):
            notes.append("removed: " + ", ".join(result["removed"]))
        if result.get("added"):
            notes.append("added: " + ", ".join(result["added"]))
        if result.get("skipped"):
            notes.append("not changed: " + ", ".join(result["skipped"]))
        if step.get("readback") is not None:
            notes.append(
                "read-back: "
                + ", ".join(f"{k}={_plain(v)}" for k, v in sorted(step["readback"].items()))
            )
        if step.get("error"):
            notes.append(
                f"error ({step.get('error_class') or '?'}/{step.get('error_code') or '?'}): "
                f"{step['error']}"
            )
        if step.get("next_attempt_at"):
            notes.append(f"next attempt {step['next_attempt_at']}")
        duration = _duration_ms(step.get("started_at"), step.get("finished_at"))
        rows.append(
            [
                cell(step["connector"]),
                cell(step["action"]),
                styled_state(step["status"]),
                str(step["attempts"]),
                cell(step.get("account_id")),
                cell(f"{duration} ms" if duration is not None else None),
                cell("; ".join(notes)),
            ]
        )
    return table(
        ["system", "action", "status", "attempts", "account", "took", "read-back, changes, errors"],
        rows,
        title="steps",
    )


@runs_app.command("show")
def runs_show(
    run_id: str, url: UrlOpt = DEFAULT_URL, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """One run: what, who and when; then every step per system with its timing, the
    entitlements it removed or added, the read-back and any error."""
    with client(url, token) as http:
        run = api_call(http, "GET", f"/v1/runs/{run_id}")
    if as_json:
        emit(run, True)
        return
    for line in _summary(run):
        out.print(line, highlight=False)
    out.print(steps_table(run))


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


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)
