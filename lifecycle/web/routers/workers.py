"""Workers (admins and auditors): the roster, searched and paged, and one worker with their
account in each system and their runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Path, Query

from lifecycle.auth import Principal
from lifecycle.domain import Worker, iso_z
from lifecycle.services.workers import list_workers, worker_view
from lifecycle.web.deps import MAX_INDEX, Auth
from lifecycle.web.render import run_json

if TYPE_CHECKING:
    from lifecycle.service import Service

WorkerStatusParam = Literal["active", "suspended", "terminated", "leave", "absent"]


def worker_json(worker: Worker) -> dict[str, Any]:
    return {
        "worker_id": worker.worker_id,
        "name": worker.name,
        "email": worker.email,
        "upn": worker.upn,
        "job_code": worker.job_code,
        "engagement": worker.engagement,
        "vendor": worker.vendor,
        "status": str(worker.status),
        "updated_at": iso_z(worker.updated_at),
    }


def router(service: Service, auth: Auth) -> APIRouter:
    v1 = APIRouter(prefix="/v1", tags=["workers"])

    @v1.get("/workers")
    async def get_workers(
        _: Principal = auth.reader,
        q: Annotated[
            str | None, Query(max_length=64, description="Part of the id, name or email.")
        ] = None,
        status: WorkerStatusParam | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_INDEX)] = 0,
    ) -> dict[str, Any]:
        """The workforce roster by worker id, searched with ``q`` and filtered by status."""
        workers = await anyio.to_thread.run_sync(
            lambda: list_workers(service.store, q=q, status=status, limit=limit, offset=offset)
        )
        return {"workers": [worker_json(w) for w in workers], "limit": limit, "offset": offset}

    @v1.get("/workers/{worker_id}")
    async def get_worker(
        worker_id: Annotated[str, Path(max_length=64)],
        _: Principal = auth.reader,
        runs: Annotated[int, Query(ge=0, le=500, description="How many runs, newest first.")] = 50,
    ) -> dict[str, Any]:
        """One worker: the roster entry, the account lifecycle knows in each system, and the
        worker's runs, newest first."""
        view = await anyio.to_thread.run_sync(
            lambda: worker_view(service.store, worker_id, service.connector_names, runs_limit=runs)
        )
        return {
            **worker_json(view.worker),
            "accounts": [
                {
                    "system": a.system,
                    "account_id": a.link.account_id if a.link else None,
                    "login": a.link.login if a.link else None,
                    "linked_at": iso_z(a.link.linked_at) if a.link else None,
                    "configured": a.system in service.connectors,
                }
                for a in view.accounts
            ],
            "runs": [run_json(r) for r in view.runs],
        }

    return v1
