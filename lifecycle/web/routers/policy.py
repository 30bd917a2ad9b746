"""Policy conformance and reconciliation: admins and auditors read findings; admins enforce
and reconcile."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from pydantic import BaseModel

from lifecycle.auth import Principal
from lifecycle.domain import iso_z
from lifecycle.services.policy import Expected, check, enforce, expectations
from lifecycle.services.sweeps import reconcile
from lifecycle.web.deps import Auth

if TYPE_CHECKING:
    from lifecycle.service import Service


class EnforceRequest(BaseModel):
    dry_run: bool = False


class ReconcileRequest(BaseModel):
    disable: bool | None = None
    """Disable orphans now (default: ``[scheduler] disable_orphans``)."""


def router(service: Service, auth: Auth) -> APIRouter:
    v1 = APIRouter(prefix="/v1")

    def expected() -> dict[str, dict[str, Expected]]:
        return expectations(service.settings.policy, service.playbooks, service.connector_names)

    @v1.get("/policy/findings", tags=["policy"])
    async def policy_findings(_: Principal = auth.reader) -> dict[str, Any]:
        """Per system and control: expected value and its source, actual value and its source."""
        report = await check(service.connectors, expected(), service.clock())
        return report.as_json()

    @v1.post("/policy/enforce", tags=["policy"])
    async def policy_enforce(body: EnforceRequest, who: Principal = auth.admin) -> dict[str, Any]:
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
    async def reconcile_now(body: ReconcileRequest, _: Principal = auth.admin) -> dict[str, Any]:
        """Compare every system's enabled accounts with the roster; report (and disable) orphans."""
        report = await reconcile(service.jobs, service.clock(), disable=body.disable)
        return {
            "checked_at": iso_z(report.checked_at),
            "disabled": report.disabled,
            "orphans": [asdict(o) for o in report.orphans],
            "errors": report.errors,
        }

    return v1
