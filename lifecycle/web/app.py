"""The FastAPI app: routers by audience (HR systems, admins, auditors, operators), bearer-token
roles, a body limit on every route, and RFC 9457 problem+json for every error."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lifecycle.exceptions import (
    AuthError,
    ConfigError,
    ConnectorError,
    ForbiddenError,
    IntakeError,
    LifecycleError,
    NotAuthenticatedError,
    NotFoundError,
    PayloadTooLargeError,
    RequestError,
    StoreError,
)
from lifecycle.service import Service
from lifecycle.web.deps import Auth
from lifecycle.web.render import problem
from lifecycle.web.routers import evidence, hr, ops, playbooks, policy, runs, tokens

log = logging.getLogger("lifecycle.api")


def status_of(exc: LifecycleError) -> int:
    if isinstance(exc, IntakeError | RequestError):
        return exc.status_code
    if isinstance(exc, NotAuthenticatedError):
        return 401
    if isinstance(exc, ForbiddenError | AuthError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, StoreError | ConfigError):
        return 503
    return 500


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes on every route, before anything parses them
    (FastAPI reads a JSON body before running the auth dependency): 413 problem+json."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise PayloadTooLargeError(f"body is larger than {self.limit} bytes")
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(413, "PayloadTooLargeError", f"body is larger than {self.limit} bytes")
        await response(scope, receive, send)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LifecycleError)
    async def _lifecycle_error(_: Request, exc: LifecycleError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.error("request failed: %s", exc.message)
        return problem(status, type(exc).__name__, exc.message)

    @app.exception_handler(ConnectorError)
    async def _connector_error(_: Request, exc: ConnectorError) -> JSONResponse:
        # Not a LifecycleError (connectors are a library of their own); answered the same way.
        log.error("request failed: %s", exc.message)
        return problem(500, type(exc).__name__, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors()]
        return problem(422, "ValidationError", "the request is invalid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, "HTTPError", str(exc.detail))


def create_app(service: Service, *, background: bool = True) -> FastAPI:
    """The FastAPI app for ``service``; with ``background`` the executor and signer run in it."""

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
        version="0.1.0",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, limit=service.settings.service.max_body_bytes)
    add_error_handlers(app)
    auth = Auth(service.store, service.clock)
    app.include_router(ops.router(service))
    app.include_router(hr.router(service, auth))
    for audience in (runs, evidence, playbooks, policy, tokens):
        app.include_router(audience.router(service, auth))
    return app
