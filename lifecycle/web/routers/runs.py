"""Runs: admins start terminations; admins and auditors read every run with its steps."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from lifecycle.auth import Principal
from lifecycle.exceptions import NotFoundError
from lifecycle.services.access import actor_of, cancel_run, existing_termination, retry_run
from lifecycle.services.offboard import plan_offboard, start_offboard
from lifecycle.web.deps import MAX_INDEX, Auth
from lifecycle.web.openapi import errors, json_answer
from lifecycle.web.render import run_json

if TYPE_CHECKING:
    from lifecycle.service import Service


class OffboardRequest(BaseModel):
    worker_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=200)
    dry_run: bool = False
    force: bool = False
    """Start another termination even if the worker is already terminated."""


class ReasonRequest(BaseModel):
    reason: str = Field(min_length=1, max_length=200)


def router(service: Service, auth: Auth) -> APIRouter:
    v1 = APIRouter(prefix="/v1")

    @v1.post(
        "/offboard",
        tags=["admin"],
        status_code=202,
        responses={
            200: json_answer("The dry run, or the termination that already covers the worker"),
            **errors(404),
        },
    )
    async def offboard(body: OffboardRequest, who: Principal = auth.admin) -> JSONResponse:
        """Terminate a worker now in every system (``dry_run`` shows what would happen). A
        worker already terminated (or being terminated) gets 200 with ``already_terminated``
        and that run, unless ``force``."""
        worker = await anyio.to_thread.run_sync(service.store.get_worker, body.worker_id)
        if worker is None:
            raise NotFoundError(f"worker {body.worker_id!r} is not in the workforce roster")
        if not body.dry_run and not body.force:
            existing = await anyio.to_thread.run_sync(
                existing_termination, service.access, worker, service.clock()
            )
            if existing is not None:
                return JSONResponse({"already_terminated": True, "run": run_json(existing)})
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
                actor=actor_of(who.name),
                systems=service.connector_names,
                now=service.clock(),
            )
        )
        service.executor.wake()
        return JSONResponse(run_json(run), status_code=202)

    @v1.get("/runs", tags=["runs"])
    async def list_runs(
        _: Principal = auth.reader,
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
    async def get_run(run_id: str, _: Principal = auth.reader) -> dict[str, Any]:
        detail = await anyio.to_thread.run_sync(service.store.load_run, run_id)
        return run_json(detail.run, detail.steps)

    @v1.post("/runs/{run_id}/retry", tags=["runs"], status_code=202, responses=errors(409))
    async def retry(run_id: str, body: ReasonRequest, who: Principal = auth.admin) -> JSONResponse:
        """Run an incomplete or failed run again, as a new run (``retry_of`` names this one)."""
        run = await anyio.to_thread.run_sync(
            lambda: retry_run(
                service.access,
                run_id,
                actor=actor_of(who.name),
                reason=body.reason,
                now=service.clock(),
            )
        )
        service.executor.wake()
        return JSONResponse(run_json(run), status_code=202)

    @v1.post("/runs/{run_id}/cancel", tags=["runs"], responses=errors(409))
    async def cancel(
        run_id: str, body: ReasonRequest, who: Principal = auth.admin
    ) -> dict[str, Any]:
        """Cancel a run that has not started (future-dated, or awaiting approval); 409 else."""
        run = await anyio.to_thread.run_sync(
            lambda: cancel_run(
                service.access,
                run_id,
                actor=actor_of(who.name),
                reason=body.reason,
                now=service.clock(),
            )
        )
        return run_json(run)

    return v1
