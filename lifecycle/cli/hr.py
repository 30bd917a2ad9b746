"""``lifecycle hr``: send a signed test event, read the HR inbox of a running service (admin
token), and import the workforce roster from a CSV (on the configuration's database)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from lifecycle.cli.common import (
    DEFAULT_URL,
    ConfigOpt,
    JsonOpt,
    TokenOpt,
    UrlOpt,
    api_call,
    client,
    emit,
    err,
    fail,
    local_store,
    out,
    settings_from,
)
from lifecycle.domain import iso_z, utc, utcnow
from lifecycle.exceptions import LifecycleError
from lifecycle.secrets import resolve_secret

hr_app = typer.Typer(help="HR intake helpers.", no_args_is_help=True)


class Outcome(StrEnum):
    RUN = "run"
    IGNORED = "ignored"
    UNMAPPED = "unmapped"
    PENDING = "pending"
    CONFLICT = "conflict"


class EventType(StrEnum):
    TERMINATION = "termination"
    HIRE = "hire"
    TRANSFER = "transfer"
    UPDATE = "update"


@hr_app.command("send-test-event")
def hr_send_test_event(
    worker: Annotated[str, typer.Option(help="Worker id.")] = "W0042",
    event_type: Annotated[str, typer.Option("--type", help="worker.terminated|hired|...")] = (
        "worker.terminated"
    ),
    source: Annotated[
        str | None,
        typer.Option(help="HR source name (default: the first standardwebhooks source)."),
    ] = None,
    effective_at: Annotated[
        datetime | None, typer.Option(help="Future-dated effect (UTC).")
    ] = None,
    event_id: Annotated[str | None, typer.Option(help="webhook-id (re-use to test dedup).")] = None,
    reason: str = "contract_end",
    config: ConfigOpt = None,
    url: UrlOpt = DEFAULT_URL,
    as_json: JsonOpt = False,
) -> None:
    """Sign a sample HR event with the configured secret and POST it to the service."""
    from standardwebhooks.webhooks import Webhook

    settings = settings_from(config)
    sources = {n: s for n, s in settings.hr.sources.items() if s.kind == "standardwebhooks"}
    name = source or next(iter(sources), None)
    if name is None or name not in sources:
        fail("no standardwebhooks HR source is configured (see [hr.sources.*])")
    try:
        secret = resolve_secret(
            sources[name].secret,
            allow_inline=settings.service.demo,
            what=f"[hr.sources.{name}].secret",
        )
    except LifecycleError as exc:
        fail(exc.message)
    now = utcnow()
    data: dict[str, Any] = {"worker_id": worker, "reason": reason}
    if effective_at is not None:
        data["effective_at"] = utc(effective_at).isoformat()
    body = json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": data})
    msg_id = event_id or f"msg_{uuid.uuid4().hex}"
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret.get_secret_value()).sign(msg_id, now, body),
        "content-type": "application/json",
    }
    with client(url, None) as http:
        answer = api_call(http, "POST", f"/v1/hr/{name}/events", content=body, headers=headers)
    emit(
        answer,
        as_json,
        f"accepted event {answer['event_id']} -> run {answer['run_id']}"
        + (f" ({answer['outcome']}: {answer['detail']})" if answer.get("detail") else "")
        + (" (duplicate delivery)" if answer["duplicate"] else ""),
    )


def table(events: list[dict[str, Any]]) -> Table:
    grid = Table(title=f"HR inbox ({len(events)} events)")
    for column in ("received", "source", "type", "worker", "outcome", "run", "detail"):
        grid.add_column(column)
    for e in events:
        grid.add_row(
            e["received_at"] or "",
            e["source"],
            e["type"],
            e["worker_id"],
            e["outcome"] or "",
            e["run_id"] or "",
            e["detail"] or "",
        )
    return grid


@hr_app.command("events")
def hr_events(
    source: Annotated[str | None, typer.Option(help="Only this HR source.")] = None,
    outcome: Annotated[Outcome | None, typer.Option(help="Only this outcome.")] = None,
    worker: Annotated[str | None, typer.Option(help="Only this worker id.")] = None,
    event_type: Annotated[
        EventType | None, typer.Option("--type", help="Only this event type.")
    ] = None,
    since: Annotated[datetime | None, typer.Option(help="Received at or after (UTC).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Received before (UTC).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0, max=1_000_000)] = 0,
    url: UrlOpt = DEFAULT_URL,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The HR inbox: every authenticated HR event and what became of it (run, ignored with
    the reason, unmapped, pending a vendor look-up), newest first (admin token)."""
    params = {
        "source": source,
        "outcome": outcome.value if outcome else None,
        "worker": worker,
        "type": event_type.value if event_type else None,
        "since": iso_z(utc(since)) if since else None,
        "until": iso_z(utc(until)) if until else None,
        "limit": limit,
        "offset": offset,
    }
    with client(url, token) as http:
        data = api_call(http, "GET", "/v1/hr/events", params={k: v for k, v in params.items() if v})
    if as_json:
        emit(data, True)
        return
    if not data["events"]:
        out.print("no HR events", highlight=False)
        return
    out.print(table(data["events"]))


@hr_app.command("import")
def hr_import(
    roster: Annotated[Path, typer.Argument(help="CSV with a header row.", exists=True)],
    complete: Annotated[
        bool,
        typer.Option(help="The file is the whole workforce: mark unlisted workers absent."),
    ] = False,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Load or refresh the workforce roster (worker_id, name, email, job_code, engagement,
    vendor, status). Rejected rows are listed with their line; exit 1 if there are any."""
    from lifecycle.services.roster import RosterImport, import_roster

    def progress(read: int, counts: RosterImport) -> None:
        # Long imports say how far they are, on stderr (stdout stays the result / --json).
        err.print(
            f"roster: {read} rows read, {counts.added} added, {counts.updated} updated, "
            f"{len(counts.rejected)} rejected",
            highlight=False,
        )

    settings = settings_from(config)
    with local_store(settings) as store:
        try:
            result = import_roster(store, roster, utcnow(), complete=complete, progress=progress)
        except LifecycleError as exc:
            fail(exc.message)
    data = {
        "added": result.added,
        "updated": result.updated,
        "absent": result.absent,
        "rejected": [{"line": r.line, "reason": r.reason} for r in result.rejected],
    }
    emit(
        data,
        as_json,
        f"roster: {result.added} added, {result.updated} updated, {result.absent} marked "
        f"absent, {len(result.rejected)} rejected",
    )
    for r in result.rejected:
        err.print(f"line {r.line}: {escape(r.reason)}", highlight=False)
    if result.rejected:
        raise typer.Exit(1)
