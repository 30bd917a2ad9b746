"""The FastAPI app: routers by audience (HR systems, admins, auditors, operators), bearer-token
roles, a body limit on every route, and RFC 9457 problem+json for every error."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Annotated

import anyio
from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lifecycle.exceptions import (
    ConnectorError,
    LifecycleError,
    NotFoundError,
    PayloadTooLargeError,
)
from lifecycle.service import Service
from lifecycle.web import console
from lifecycle.web.deps import Auth
from lifecycle.web.openapi import describe_errors
from lifecycle.web.problems import KINDS, error_problem, kind_for_status, kind_of, problem
from lifecycle.web.routers import (
    access,
    docs,
    evidence,
    hr,
    ops,
    playbooks,
    policy,
    runs,
    tokens,
    workers,
)

log = logging.getLogger("lifecycle.api")


def status_of(exc: LifecycleError) -> int:
    """The HTTP status an error of the service is answered with."""
    return kind_of(exc).status


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes on every route, before anything parses them
    (FastAPI reads a JSON body before running the auth dependency): 413 problem+json."""

    def __init__(self, app: ASGIApp, limit: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.larger = larger or {}
        """Paths with a limit of their own (the console's bundle upload)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.limit)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLargeError(f"body is larger than {limit} bytes")
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem(KINDS["payload-too-large"], f"body is larger than {limit} bytes")
        await response(scope, receive, send)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LifecycleError)
    async def _lifecycle_error(_: Request, exc: LifecycleError) -> JSONResponse:
        return error_problem(exc)

    @app.exception_handler(ConnectorError)
    async def _connector_error(_: Request, exc: ConnectorError) -> JSONResponse:
        # Not a LifecycleError (connectors are a library of their own); answered the same way.
        log.error("request failed: %s", exc.message)
        return problem(kind_of(exc), exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return problem(KINDS["validation"], "the request is invalid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Routing: 404 for no route, 405 (with Allow, which Starlette puts in the headers).
        return problem(kind_for_status(exc.status_code), str(exc.detail), headers=exc.headers)


def add_problem_pages(app: FastAPI) -> None:
    """``GET /problems/<kind>``: what each problem ``type`` means (the URIs are relative)."""

    @app.get("/problems/{kind}", tags=["ops"], response_class=PlainTextResponse)
    async def problem_page(kind: Annotated[str, PathParam(max_length=64)]) -> PlainTextResponse:
        """What a problem ``type`` means (docs/problems.md lists them all)."""
        found = KINDS.get(kind)
        if found is None:
            raise NotFoundError(f"no problem kind {kind!r} (docs/problems.md lists them)")
        return PlainTextResponse(f"{found.type}: {found.status} {found.title}\n\n{found.meaning}\n")


def create_app(service: Service, *, background: bool = True, fast_intake: bool = True) -> FastAPI:
    """The FastAPI app for ``service``; with ``background`` the executor and signer run in it.
    ``fast_intake`` False: HR deliveries go through FastAPI's route too (tests compare)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not background:
            yield
            return
        async with anyio.create_task_group() as tg:
            await tg.start(service.run)
            yield
            tg.cancel_scope.cancel()

    app = FastAPI(
        title="lifecycle",
        summary="Identity lifecycle automation: parallel revocation with verifiable evidence",
        version=version("lifecycle"),
        lifespan=lifespan,
        docs_url=None,  # served from the package's own assets (routers/docs.py)
        redoc_url=None,
    )
    if fast_intake:
        app.add_middleware(hr.FastIntake, service=service)
    app.add_middleware(  # outside FastIntake: every body is counted
        BodyLimit, limit=service.settings.service.max_body_bytes, larger=console.LARGE_BODIES
    )
    add_error_handlers(app)
    add_problem_pages(app)
    auth = Auth(service.store, service.clock)
    app.include_router(ops.router(service))
    app.include_router(hr.router(service, auth))
    for audience in (runs, evidence, playbooks, policy, access, tokens, workers):
        app.include_router(audience.router(service, auth))
    describe_errors(app)
    docs.mount(app)
    console.mount(app, service)
    return app
