"""Role playbooks (joiner/mover): admins and auditors list them; admins plan and apply them."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from lifecycle.auth import Principal
from lifecycle.domain import plan_digest
from lifecycle.exceptions import StateConflictError
from lifecycle.services.provisioning import (
    PlaybookPlan,
    admin_plan,
    disabled_accounts,
    plan_diff,
    refuse_disabled,
)
from lifecycle.web.deps import Auth
from lifecycle.web.openapi import errors
from lifecycle.web.render import run_json

if TYPE_CHECKING:
    from lifecycle.service import Service


class PlaybookRequest(BaseModel):
    worker_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(default="playbook applied by an admin", min_length=1, max_length=200)


def plan_playbook(service: Service, name: str, worker_id: str) -> PlaybookPlan:
    """Blocking (reads the roster): the run that applying playbook ``name`` would create."""
    return admin_plan(
        service.playbooks,
        name,
        service.store.get_worker(worker_id),
        worker_id,
        service.store.current_playbook(worker_id),
        service.connector_names,
    )


def router(service: Service, auth: Auth) -> APIRouter:
    v1 = APIRouter(prefix="/v1")

    async def planned(name: str, worker_id: str) -> PlaybookPlan:
        return await anyio.to_thread.run_sync(plan_playbook, service, name, worker_id)

    @v1.get("/playbooks", tags=["playbooks"])
    async def list_playbooks(_: Principal = auth.reader) -> dict[str, Any]:
        books = service.playbooks
        return {
            "playbooks": [
                {
                    "name": b.name,
                    "sha256": b.sha256,
                    "description": b.playbook.description,
                    "systems": {s: sorted(a.entitlements) for s, a in b.playbook.systems.items()},
                    "job_codes": sorted(c for c, n in books.job_codes.items() if n == b.name),
                }
                for b in sorted(books.playbooks.values(), key=lambda b: b.name)
            ]
        }

    @v1.post("/playbooks/{name}/plan", tags=["playbooks"])
    async def playbook_plan(
        name: str, body: PlaybookRequest, _: Principal = auth.admin
    ) -> dict[str, Any]:
        """What applying the playbook would create, add and remove in each system; read-only."""
        p = await planned(name, body.worker_id)
        diffs = await plan_diff(service.connectors, p.worker.identity(), p.plan)
        return {
            "worker_id": p.worker.worker_id,
            "playbook": p.target.name,
            "playbook_sha256": p.target.sha256,
            "from": p.previous.name if p.previous else None,
            "kind": str(p.plan.kind),
            "systems": [asdict(d) for d in diffs],
        }

    @v1.post("/playbooks/{name}/apply", tags=["playbooks"], status_code=202, responses=errors(409))
    async def playbook_apply(
        name: str, body: PlaybookRequest, who: Principal = auth.admin
    ) -> JSONResponse:
        """Apply the playbook to the worker as an onboard or transfer run (202 + run).
        Refused (409, nothing changed) for a terminated or suspended worker, or one whose
        accounts the role needs are disabled."""
        p = await planned(name, body.worker_id)
        refuse_disabled(p.worker)
        if off := await disabled_accounts(service.connectors, p.worker.identity(), p.plan):
            raise StateConflictError(
                f"worker {body.worker_id}'s account is disabled in {', '.join(off)}: a playbook "
                "does not enable accounts; restore or rehire them first. Nothing was changed."
            )
        key = str(uuid.uuid4())
        new = service.kinds.new_run(
            p.plan,
            worker_id=body.worker_id,
            actor=f"admin:{who.name}",
            source="admin",
            source_event_id=key,
            payload_sha256=plan_digest("admin", key, p.plan),
            reason=body.reason,
        )
        run = await anyio.to_thread.run_sync(service.store.create_run, new, service.clock())
        service.executor.wake()
        return JSONResponse(run_json(run), status_code=202)

    return v1
