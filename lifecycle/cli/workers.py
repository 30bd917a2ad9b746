"""``lifecycle workers``: the roster and one worker's accounts and runs (through the running
service's API, admin or auditor token)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from lifecycle.cli.common import (
    DEFAULT_URL,
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
)
from lifecycle.cli.runs import runs_table

workers_app = typer.Typer(help="The workforce roster.", no_args_is_help=True)


class Status(StrEnum):
    ACTIVE = "active"
    TERMINATED = "terminated"
    LEAVE = "leave"
    ABSENT = "absent"


@workers_app.command("list")
def workers_list(
    q: Annotated[str | None, typer.Argument(help="Part of the id, name or email.")] = None,
    status: Annotated[Status | None, typer.Option(help="Only workers in this status.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Workers by id, searched and filtered."""
    params: dict[str, Any] = {"q": q, "status": status.value if status else None}
    params |= {"limit": limit, "offset": offset}
    with client(url, token) as http:
        data = api_call(
            http, "GET", "/v1/workers", params={k: v for k, v in params.items() if v is not None}
        )
    if as_json:
        emit(data, True)
        return
    if not data["workers"]:
        out.print("no workers match")
        return
    out.print(
        table(
            ["worker", "name", "email", "job code", "engagement", "vendor", "status"],
            [
                [
                    cell(w["worker_id"]),
                    cell(w["name"]),
                    cell(w["email"]),
                    cell(w["job_code"]),
                    cell(w["engagement"]),
                    cell(w["vendor"]),
                    styled_state(w["status"]),
                ]
                for w in data["workers"]
            ],
            title=f"workers ({len(data['workers'])} from {offset})",
        )
    )


@workers_app.command("show")
def workers_show(
    worker_id: Annotated[str, typer.Argument(help="Worker id, e.g. W0042.")],
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One worker: the roster entry, the account lifecycle knows in each system, and runs."""
    with client(url, token) as http:
        worker = api_call(http, "GET", f"/v1/workers/{worker_id}")
    if as_json:
        emit(worker, True)
        return
    out.print(
        f"{cell(worker['worker_id'])}: {cell(worker['name'])} <{cell(worker['email'])}> - "
        f"{styled_state(worker['status'])}",
        highlight=False,
    )
    out.print(
        f"job code {cell(worker['job_code'])}, {cell(worker['engagement'])}"
        + (f" of {cell(worker['vendor'])}" if worker["vendor"] else ""),
        highlight=False,
    )
    out.print(
        table(
            ["system", "account", "login", "linked"],
            [
                [
                    cell(a["system"]) + ("" if a["configured"] else " (not configured)"),
                    cell(a["account_id"], "none known"),
                    cell(a["login"]),
                    cell(a["linked_at"]),
                ]
                for a in worker["accounts"]
            ],
            title="accounts",
        )
    )
    if worker["runs"]:
        out.print(runs_table(worker["runs"]))
    else:
        out.print("no runs")
