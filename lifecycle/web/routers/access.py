"""Reversible access (admins): suspend a worker during an incident, restore a suspended or
wrongly terminated one, and the two-person rule on restores (approvals). The use cases are
``lifecycle.services.access``; this module only speaks HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from lifecycle.auth import Principal
from lifecycle.services.access import (
    actor_of,
    approve,
    list_approvals,
    reject,
    request_restore,
    start_suspend,
)
from lifecycle.web.deps import Auth
from lifecycle.web.openapi import errors
from lifecycle.web.render import run_json

if TYPE_CHECKING:
    from lifecycle.service import Service


class WorkerRequest(BaseModel):
    worker_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=200)


class ApproveRequest(BaseModel):
    reason: str | None = Field(default=None, min_length=1, max_length=200)


class RejectRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


def router(service: Service, auth: Auth) -> APIRouter:
    v1 = APIRouter(prefix="/v1")

    @v1.post("/suspend", tags=["access"], status_code=202, responses=errors(404, 409))
    async def suspend(body: WorkerRequest, who: Principal = auth.admin) -> JSONResponse:
        """Disable every account of the worker and revoke their sessions now, keeping their
        access for a restore (an incident). 404 unknown worker; 409 terminated or suspending."""
        run = await anyio.to_thread.run_sync(
            lambda: start_suspend(
                service.access,
                body.worker_id,
                reason=body.reason,
                actor=actor_of(who.name),
                now=service.clock(),
            )
        )
        service.executor.wake()
        return JSONResponse(run_json(run), status_code=202)

    @v1.post("/restore", tags=["access"], status_code=202, responses=errors(404, 409))
    async def restore(body: WorkerRequest, who: Principal = auth.admin) -> JSONResponse:
        """Give a suspended or terminated worker back exactly the access their suspension or
        termination took. With ``[service] restore_requires_approval`` (default) the run waits
        ``awaiting_approval`` for another admin. 404 unknown worker; 409 nothing to restore,
        or a restore is already open."""
        run = await anyio.to_thread.run_sync(
            lambda: request_restore(
                service.access,
                body.worker_id,
                reason=body.reason,
                actor=actor_of(who.name),
                now=service.clock(),
            )
        )
        service.executor.wake()
        return JSONResponse(run_json(run), status_code=202)

    @v1.get("/approvals", tags=["access"])
    async def approvals(
        _: Principal = auth.admin, limit: Annotated[int, Query(ge=1, le=500)] = 100
    ) -> dict[str, Any]:
        """Runs awaiting a second admin's approval (their id is the approval id)."""
        runs = await anyio.to_thread.run_sync(lambda: list_approvals(service.access, limit))
        return {"approvals": [run_json(r) for r in runs]}

    @v1.post("/approvals/{run_id}/approve", tags=["access"], responses=errors(409))
    async def approve_run(
        run_id: str, body: ApproveRequest | None = None, who: Principal = auth.admin
    ) -> dict[str, Any]:
        """Approve a run awaiting approval: it executes now. 403 for the admin who requested
        it (two-person rule); 409 when it is not awaiting approval."""
        run = await anyio.to_thread.run_sync(
            lambda: approve(
                service.access,
                run_id,
                actor=actor_of(who.name),
                reason=body.reason if body else None,
                now=service.clock(),
            )
        )
        service.executor.wake()
        return run_json(run)

    @v1.post("/approvals/{run_id}/reject", tags=["access"], responses=errors(409))
    async def reject_run(
        run_id: str, body: RejectRequest, who: Principal = auth.admin
    ) -> dict[str, Any]:
        """Reject a run awaiting approval: it ends ``cancelled``, the decision and its reason
        kept. 409 when it is not awaiting approval."""
        run = await anyio.to_thread.run_sync(
            lambda: reject(
                service.access,
                run_id,
                actor=actor_of(who.name),
                reason=body.reason,
                now=service.clock(),
            )
        )
        return run_json(run)

    return v1
