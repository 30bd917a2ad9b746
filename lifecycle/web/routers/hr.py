"""HR systems post their events here (each authenticated as its vendor documents); admins read
the inbox (``GET /v1/hr/events``) with every event's outcome."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from lifecycle.auth import Principal
from lifecycle.exceptions import ConfigError, LifecycleError, PayloadTooLargeError
from lifecycle.web.deps import Auth
from lifecycle.web.openapi import errors, json_answer
from lifecycle.web.problems import error_problem
from lifecycle.web.render import inbox_json

if TYPE_CHECKING:
    from lifecycle.service import Service

Outcome = Literal["run", "ignored", "unmapped", "pending", "conflict"]
EventType = Literal["termination", "hire", "transfer", "update"]
MAX_OFFSET = 1_000_000


EVENTS_PATH = re.compile(r"/v1/hr/([^/]{1,64})/events")


class FastIntake:
    """``POST /v1/hr/{source}/events`` served without FastAPI's routing, dependency solving and
    exception middleware, as an ASGI layer in front of the app: HR deliveries are the route
    that takes thousands of requests a second, and those layers cost as much CPU as storing
    the event. The answer is the route's own (the same ``HrIntake.receive``, problem+json from
    the same ``problem``); anything else, including what the route refuses before it runs (a
    source name over 64 characters: 422), goes on to the app, which also documents the route."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        intake = self.service.intake
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or intake is None
            or (match := EVENTS_PATH.fullmatch(scope["path"])) is None
        ):
            await self.app(scope, receive, send)
            return
        response: Response
        try:
            body = await read_body(scope, receive, self.service.settings.service.max_body_bytes)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            reply = await intake.receive(match[1], body, headers)
            response = JSONResponse(reply.body, status_code=reply.status_code)
        except LifecycleError as exc:  # as the app's exception handler answers it
            response = error_problem(exc)
        await response(scope, receive, send)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request body, refused (413) as soon as it is larger than ``limit``."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLargeError(f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body is larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
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
        body = await read_body(
            request.scope, request.receive, service.settings.service.max_body_bytes
        )
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
