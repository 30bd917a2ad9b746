"""HR systems post their events here (each authenticated as its vendor documents); admins read
the inbox (``GET /v1/hr/events``) with every event's outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime

from lifecycle.auth import Principal
from lifecycle.exceptions import ConfigError, PayloadTooLargeError
from lifecycle.web.deps import Auth
from lifecycle.web.openapi import errors, json_answer
from lifecycle.web.render import inbox_json

if TYPE_CHECKING:
    from lifecycle.service import Service

Outcome = Literal["run", "ignored", "unmapped", "pending", "conflict"]
EventType = Literal["termination", "hire", "transfer", "update"]
MAX_OFFSET = 1_000_000


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is larger than ``limit``."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def router(service: Service, auth: Auth) -> APIRouter:
    hr = APIRouter(prefix="/v1/hr", tags=["hr"])

    @hr.post(
        "/{source}/events",
        status_code=202,
        responses={
            200: json_answer("A subscription handshake, answered as the vendor expects"),
            **errors(400, 401, 409, 415, 422, 503),
        },
    )
    async def hr_event(
        request: Request, source: Annotated[str, Path(max_length=64)]
    ) -> JSONResponse:
        """Accept one HR delivery, authenticated as its vendor documents. Every event in it is
        stored durably before the 202 (outcome ``run``, ``ignored``, ``unmapped`` or
        ``pending``); a re-delivery returns the same rows. Subscription handshakes (Gusto's
        verification token, HiBob's ping) are answered 200 and store nothing."""
        body = await read_body(request, service.settings.service.max_body_bytes)
        if service.intake is None:
            raise ConfigError("HR intake is not set up in this process")
        reply = await service.intake.receive(source, body, dict(request.headers))
        return JSONResponse(reply.body, status_code=reply.status_code)

    @hr.get("/events", tags=["hr"])
    async def list_hr_events(
        _: Principal = auth.admin,
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

    return hr
