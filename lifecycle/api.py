"""The HTTP API (FastAPI). Routers by audience: HR sources (signed webhooks), admins, auditors,
operators. Every route but the HR intake (signature), the checkpoint and the probes needs a
bearer token with the right role. Errors are RFC 9457 problem+json."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, BaseModel, Field
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lifecycle.api_hr import add_hr_routes
from lifecycle.api_roles import add_lifecycle_routes
from lifecycle.auth import Principal, Role, token_hash
from lifecycle.domain import Run, Step, iso_z
from lifecycle.evidence.export import export_bundle
from lifecycle.exceptions import (
    AuthError,
    ConfigError,
    ConnectorError,
    EvidenceError,
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
from lifecycle.services.offboard import plan_offboard, start_offboard

log = logging.getLogger("lifecycle.api")
PROBLEM = "application/problem+json"
MAX_INDEX = 2**31 - 1
"""Upper bound of integer query parameters (offsets, log sizes): larger ones are a 422, not a
database overflow."""


# ---------------------------------------------------------------------- representations


def step_json(step: Step) -> dict[str, Any]:
    return {
        "connector": step.system,
        "action": step.action,
        "status": step.status.value,
        "attempts": step.attempts,
        "account_id": step.account_id,
        "started_at": iso_z(step.started_at),
        "finished_at": iso_z(step.finished_at),
        "next_attempt_at": iso_z(step.next_attempt_at),
        "error": step.error.message if step.error else None,
        "error_class": step.error.error_class if step.error else None,
        "error_code": step.error.code if step.error else None,
        "result": step.result.as_json() if step.result else None,
        "readback": dict(step.readback) if step.readback is not None else None,
    }


def run_json(run: Run, steps: Sequence[Step] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": run.id,
        "kind": run.kind,
        "worker_id": run.worker_id,
        "status": run.status.value,
        "reason": run.reason,
        "actor": run.actor,
        "source": run.source,
        "source_event_id": run.source_event_id,
        "received_at": iso_z(run.received_at),
        "effective_at": iso_z(run.effective_at),
        "not_before": iso_z(run.not_before),
        "started_at": iso_z(run.started_at),
        "finished_at": iso_z(run.finished_at),
        "next_attempt_at": iso_z(run.next_attempt_at),
        "time_to_revoke_ms": run.time_to_revoke_ms,
        "evidence_seq": run.evidence_seq,
        "playbook": run.playbook_name,
        "playbook_sha256": run.playbook_sha256,
    }
    if steps is not None:
        body["steps"] = [step_json(s) for s in steps]
    return body


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra},
        status_code=status,
        media_type=PROBLEM,
        headers=headers,
    )


def _status_of(exc: LifecycleError) -> int:
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


# ---------------------------------------------------------------------- request models


class OffboardRequest(BaseModel):
    worker_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=200)
    dry_run: bool = False


# ---------------------------------------------------------------------- the app


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
    bearer = HTTPBearer(auto_error=False)
    app.add_middleware(BodyLimit, limit=service.settings.service.max_body_bytes)

    async def db(fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)

    def require(*roles: Role) -> Any:
        async def check(
            credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
        ) -> Principal:
            if credentials is None or credentials.scheme.lower() != "bearer":
                raise NotAuthenticatedError()
            token = await db(service.store.token_by_hash, token_hash(credentials.credentials))
            if token is None:
                raise NotAuthenticatedError("the bearer token is unknown or revoked")
            if token.role not in roles:
                raise ForbiddenError(
                    f"role {token.role!r} may not do this; needs {' or '.join(roles)}"
                )
            return Principal(token.name, Role(token.role))

        return Depends(check)

    admin = require(Role.ADMIN)
    auditor = require(Role.AUDITOR)
    reader = require(Role.ADMIN, Role.AUDITOR)

    @app.exception_handler(LifecycleError)
    async def _lifecycle_error(_: Request, exc: LifecycleError) -> JSONResponse:
        status = _status_of(exc)
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

    # ------------------------------------------------------------------ HR sources

    hr = APIRouter(prefix="/v1/hr", tags=["hr"])

    @hr.post("/{source}/events", status_code=202)
    async def hr_event(
        request: Request, source: Annotated[str, Path(max_length=64)]
    ) -> JSONResponse:
        """Accept one HR delivery, authenticated as its vendor documents. Every event in it is
        stored durably before the 202 (outcome ``run``, ``ignored``, ``unmapped`` or
        ``pending``); a re-delivery returns the same rows. Subscription handshakes (Gusto's
        verification token, HiBob's ping) are answered 200 and store nothing."""
        limit = service.settings.service.max_body_bytes
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
        body = b"".join(chunks)
        if service.intake is None:
            raise ConfigError("HR intake is not set up in this process")
        reply = await service.intake.receive(source, body, dict(request.headers))
        return JSONResponse(reply.body, status_code=reply.status_code)

    add_hr_routes(hr, service, admin=admin)

    # ------------------------------------------------------------------ admins

    v1 = APIRouter(prefix="/v1")

    @v1.post("/offboard", tags=["admin"], status_code=202)
    async def offboard(body: OffboardRequest, who: Principal = admin) -> JSONResponse:
        """Terminate a worker now in every system (``dry_run`` shows what would happen)."""
        worker = await db(service.store.get_worker, body.worker_id)
        if worker is None:
            raise NotFoundError(f"worker {body.worker_id!r} is not in the workforce roster")
        if body.dry_run:
            plan = await plan_offboard(service.connectors, service.kinds, worker.identity())
            return JSONResponse(
                {
                    "dry_run": True,
                    "worker_id": body.worker_id,
                    "systems": [asdict(p) for p in plan],
                },
                status_code=200,
            )
        run = await anyio.to_thread.run_sync(
            lambda: start_offboard(
                service.store,
                service.kinds,
                body.worker_id,
                reason=body.reason,
                actor=f"admin:{who.name}",
                systems=service.connector_names,
                now=service.clock(),
            )
        )
        service.executor.wake()
        return JSONResponse(run_json(run), status_code=202)

    # ------------------------------------------------------------------ admins and auditors

    @v1.get("/runs", tags=["runs"])
    async def list_runs(
        _: Principal = reader,
        status: str | None = None,
        worker: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_INDEX)] = 0,
    ) -> dict[str, Any]:
        runs = await anyio.to_thread.run_sync(
            lambda: service.store.list_runs(
                status=status, worker_id=worker, limit=limit, offset=offset
            )
        )
        return {"runs": [run_json(r) for r in runs], "limit": limit, "offset": offset}

    @v1.get("/runs/{run_id}", tags=["runs"])
    async def get_run(run_id: str, _: Principal = reader) -> dict[str, Any]:
        detail = await db(service.store.load_run, run_id)
        return run_json(detail.run, detail.steps)

    @v1.get("/evidence/checkpoint", tags=["evidence"], response_class=PlainTextResponse)
    async def checkpoint() -> PlainTextResponse:
        """The latest signed checkpoint (C2SP signed note); public by design."""
        latest = await service.evidence.sign()
        if latest is None:
            raise NotFoundError("no checkpoint has been signed yet (is the evidence key loaded?)")
        return PlainTextResponse(latest.note, media_type="text/plain; charset=utf-8")

    @v1.get("/evidence/bundle", tags=["evidence"], response_class=FileResponse)
    async def bundle(
        _: Principal = auditor,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        worker: Annotated[str | None, Query(max_length=64)] = None,
        previous_size: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
    ) -> FileResponse:
        """The evidence bundle of records appended in [since, until), streamed as a zip."""
        if service.key is None:
            raise EvidenceError("the evidence key is not loaded; no bundle can be signed")
        key = service.key
        handle, name = tempfile.mkstemp(prefix="lifecycle-bundle-", suffix=".zip")
        os.close(handle)
        try:
            summary = await anyio.to_thread.run_sync(
                lambda: export_bundle(
                    service.store,
                    key,
                    service.settings.service.log_origin,
                    name,
                    now=service.clock(),
                    since=since,
                    until=until,
                    worker=worker,
                    previous_tree_size=previous_size,
                )
            )
        except BaseException:
            os.unlink(name)
            raise
        return FileResponse(
            name,
            media_type="application/zip",
            filename=f"evidence-{summary.tree_size}.zip",
            headers={
                "X-Evidence-Tree-Size": str(summary.tree_size),
                "X-Evidence-Records": str(summary.records),
            },
            background=BackgroundTask(os.unlink, name),
        )

    # ------------------------------------------------------------------ operators

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await db(service.store.ping)
            checks["database"] = "ok"
        except LifecycleError as exc:
            checks["database"] = exc.message
        checks["evidence_key"] = "ok" if service.key is not None else "not loaded"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        data = await db(generate_latest, service.metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    add_lifecycle_routes(v1, service, admin=admin, reader=reader)
    app.include_router(hr)
    app.include_router(v1)
    return app
