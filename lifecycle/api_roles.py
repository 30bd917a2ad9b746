"""HTTP routes for role playbooks (joiner/mover), policy conformance and reconciliation.

Kept apart from ``api.py`` so the termination API stays small; ``create_app`` mounts them on its
``/v1`` router with its own role checks.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from lifecycle.auth import Principal
from lifecycle.engine import worker_of
from lifecycle.exceptions import ConfigError, NotFoundError
from lifecycle.models import Run, WorkerRow
from lifecycle.playbooks import LoadedPlaybook
from lifecycle.policy import check, enforce, expectations
from lifecycle.provisioning import plan_diff
from lifecycle.store import RunPlan
from lifecycle.sweeps import reconcile

if TYPE_CHECKING:
    from lifecycle.app import Service


class PlaybookRequest(BaseModel):
    worker_id: str = Field(min_length=1, max_length=64)
    reason: str = Field(default="playbook applied by an admin", min_length=1, max_length=200)


class EnforceRequest(BaseModel):
    dry_run: bool = False


class ReconcileRequest(BaseModel):
    disable: bool | None = None
    """Disable orphans now (default: ``[scheduler] disable_orphans``)."""


@dataclass(frozen=True, slots=True)
class PlaybookPlan:
    worker: WorkerRow
    target: LoadedPlaybook
    previous: LoadedPlaybook | None
    plan: RunPlan


def plan_playbook(service: Service, name: str, worker_id: str) -> PlaybookPlan:
    """Blocking (reads the roster): the run that applying playbook ``name`` would create.

    The worker moves from the playbook they were last provisioned with, else from the one their
    HR job code maps to; re-applying the same playbook converges the worker onto it.
    """
    if name not in service.playbooks.playbooks:
        raise NotFoundError(
            f"no playbook named {name!r} "
            f"(known: {', '.join(sorted(service.playbooks.playbooks)) or 'none'})"
        )
    worker = service.store.get_worker(worker_id)
    if worker is None:
        raise NotFoundError(f"worker {worker_id!r} is not in the workforce roster")
    target = service.playbooks.get(name)
    current = service.store.current_playbook(worker_id)
    previous = service.playbooks.playbooks.get(current or "") or service.playbooks.for_job_code(
        worker.job_code
    )
    if previous is not None and previous.name == target.name:
        previous = None
    plan = service.playbooks.plan(target, previous, service.connector_names)
    return PlaybookPlan(worker, target, previous, plan)


def _run_brief(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "kind": run.kind,
        "worker_id": run.worker_id,
        "status": run.status,
        "actor": run.actor,
        "playbook": run.playbook_name,
        "playbook_sha256": run.playbook_sha256,
        "received_at": run.received_at.isoformat().replace("+00:00", "Z"),
    }


def add_lifecycle_routes(v1: APIRouter, service: Service, *, admin: Any, reader: Any) -> None:
    async def planned(name: str, worker_id: str) -> PlaybookPlan:
        try:
            return await anyio.to_thread.run_sync(plan_playbook, service, name, worker_id)
        except ConfigError as exc:
            raise NotFoundError(exc.message) from exc

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
        diffs = await plan_diff(service.connectors, worker_of(p.worker, p.worker.worker_id), p.plan)
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
        run = await anyio.to_thread.run_sync(
            lambda: service.store.create_run(
                body.worker_id,
                p.plan,
                reason=body.reason,
                actor=f"admin:{who.name}",
                now=service.clock(),
                source="admin",
                source_event_id=str(uuid.uuid4()),
            )
        )
        service.engine.wake()
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
            service.engine, expected(), actor=f"admin:{who.name}", dry_run=body.dry_run
        )
        return {**report.as_json(), "dry_run": body.dry_run}

    @v1.post("/reconcile", tags=["reconcile"])
    async def reconcile_now(body: ReconcileRequest, _: Principal = admin) -> dict[str, Any]:
        """Compare every system's enabled accounts with the roster; report (and disable) orphans."""
        report = await reconcile(service.jobs, service.clock(), disable=body.disable)
        return {
            "checked_at": report.checked_at.isoformat().replace("+00:00", "Z"),
            "disabled": report.disabled,
            "orphans": [asdict(o) for o in report.orphans],
            "errors": report.errors,
        }
