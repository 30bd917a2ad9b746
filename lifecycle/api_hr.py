"""HTTP routes of the HR inbox: ``GET /v1/hr/events`` (admin) lists every stored HR event with
its outcome (``run``, ``ignored``, ``unmapped``, ``pending``), filtered.

Kept apart from ``api.py`` (the intake route itself stays there); ``create_app`` mounts it on
its ``/v1/hr`` router with its own role check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from lifecycle.auth import Principal
from lifecycle.domain import InboxEvent, iso_z

if TYPE_CHECKING:
    from lifecycle.service import Service

Outcome = Literal["run", "ignored", "unmapped", "pending", "conflict"]
EventType = Literal["termination", "hire", "transfer", "update"]
MAX_OFFSET = 1_000_000


def inbox_json(row: InboxEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "source": row.source,
        "source_event_id": row.source_event_id,
        "type": row.type,
        "worker_id": row.worker_id,
        "outcome": row.outcome,
        "detail": row.detail,
        "run_id": row.run_id,
        "received_at": iso_z(row.received_at),
        "effective_at": iso_z(row.effective_at),
        "reason": row.reason,
        "payload_sha256": row.payload_sha256,
        "attempts": row.attempts,
        "next_attempt_at": iso_z(row.next_attempt_at) if row.outcome == "pending" else None,
        "escalated_at": iso_z(row.escalated_at),
    }


def add_hr_routes(hr: APIRouter, service: Service, *, admin: Any) -> None:
    @hr.get("/events", tags=["hr"])
    async def list_hr_events(
        _: Principal = admin,
        source: Annotated[str | None, Query(max_length=64)] = None,
        outcome: Outcome | None = None,
        worker: Annotated[str | None, Query(max_length=64)] = None,
        type: EventType | None = None,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """The HR inbox, newest first: every authenticated HR event and what became of it."""
        rows = await anyio.to_thread.run_sync(
            lambda: service.store.list_inbox(
                source=source,
                outcome=outcome,
                worker_id=worker,
                type=type,
                since=since,
                until=until,
                limit=limit,
                offset=offset,
            )
        )
        return {"events": [inbox_json(r) for r in rows], "limit": limit, "offset": offset}
