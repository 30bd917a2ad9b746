"""``lifecycle hr events``: the HR inbox of a running service (admin token), with filters.
Kept apart from ``cli.py``; ``register`` adds the command to its ``hr`` Typer app."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table


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


def _utc(value: datetime | None) -> str | None:
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


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


def register(hr_app: typer.Typer) -> None:
    from lifecycle import cli as c

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
        url: c.UrlOpt = c.DEFAULT_URL,
        token: c.TokenOpt = None,
        as_json: c.JsonOpt = False,
    ) -> None:
        """The HR inbox: every authenticated HR event and what became of it (run, ignored with
        the reason, unmapped, pending a vendor look-up), newest first (admin token)."""
        params = {
            "source": source,
            "outcome": outcome.value if outcome else None,
            "worker": worker,
            "type": event_type.value if event_type else None,
            "since": _utc(since),
            "until": _utc(until),
            "limit": limit,
            "offset": offset,
        }
        with c.client(url, token) as http:
            data = c.api_call(
                http, "GET", "/v1/hr/events", params={k: v for k, v in params.items() if v}
            )
        if as_json:
            c.emit(data, True)
            return
        if not data["events"]:
            c.out.print("no HR events", highlight=False)
            return
        c.out.print(table(data["events"]))
