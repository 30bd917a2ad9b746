"""HTTP routes for role playbooks (joiner/mover), policy conformance and reconciliation.

Kept apart from ``api.py`` so the termination API stays small; ``create_app`` mounts them on its
``/v1`` router with its own role checks.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from lifecycle.auth import Principal
from lifecycle.domain import Run, iso_z, plan_digest
from lifecycle.services.policy import check, enforce, expectations
from lifecycle.services.provisioning import PlaybookPlan, admin_plan, plan_diff
from lifecycle.services.sweeps import reconcile

if TYPE_CHECKING:
    from lifecycle.service import Service


class PlaybookRequest(BaseModel):
    worker_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(default="playbook applied by an admin", min_length=1, max_length=200)


class EnforceRequest(BaseModel):
    dry_run: bool = False


class ReconcileRequest(BaseModel):
    disable: bool | None = None
    """Disable orphans now (default: ``[scheduler] disable_orphans``)."""


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


def _run_brief(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "worker_id": run.worker_id,
        "status": run.status.value,
        "actor": run.actor,
        "playbook": run.playbook_name,
        "playbook_sha256": run.playbook_sha256,
        "received_at": iso_z(run.received_at),
    }


def add_lifecycle_routes(v1: APIRouter, service: Service, *, admin: Any, reader: Any) -> None:
    async def planned(name: str, worker_id: str) -> PlaybookPlan:
        return await anyio.to_thread.run_sync(plan_playbook, service, name, worker_id)

    @v1.get("/playbooks", tags=["playbooks"])
    async def list_playbooks(_: Principal = reader) -> dict[str, Any]:
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
        name: str, body: PlaybookRequest, _: Principal = admin
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

    @v1.post("/playbooks/{name}/apply", tags=["playbooks"], status_code=202)
    async def playbook_apply(
        name: str, body: PlaybookRequest, who: Principal = admin
    ) -> JSONResponse:
        """Apply the playbook to the worker as an onboard or transfer run (202 + run)."""
        p = await planned(name, body.worker_id)
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
        return JSONResponse(_run_brief(run), status_code=202)

    def expected() -> Any:
        return expectations(service.settings.policy, service.playbooks, service.connector_names)

    @v1.get("/policy/findings", tags=["policy"])
    async def policy_findings(_: Principal = reader) -> dict[str, Any]:
        """Per system and control: expected value and its source, actual value and its source."""
        report = await check(service.connectors, expected(), service.clock())
        return report.as_json()

    @v1.post("/policy/enforce", tags=["policy"])
    async def policy_enforce(body: EnforceRequest, who: Principal = admin) -> dict[str, Any]:
        """Remediate every out-of-policy system (a ``policy`` run with evidence)."""
        report = await enforce(
            service.executor,
            service.store,
            expected(),
            actor=f"admin:{who.name}",
            dry_run=body.dry_run,
        )
        return {**report.as_json(), "dry_run": body.dry_run}

    @v1.post("/reconcile", tags=["reconcile"])
    async def reconcile_now(body: ReconcileRequest, _: Principal = admin) -> dict[str, Any]:
        """Compare every system's enabled accounts with the roster; report (and disable) orphans."""
        report = await reconcile(service.jobs, service.clock(), disable=body.disable)
        return {
            "checked_at": iso_z(report.checked_at),
            "disabled": report.disabled,
            "orphans": [asdict(o) for o in report.orphans],
            "errors": report.errors,
        }
