"""Operators: liveness, readiness and Prometheus metrics (no token: probes and scrapers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lifecycle.exceptions import LifecycleError

if TYPE_CHECKING:
    from lifecycle.service import Service


def router(service: Service) -> APIRouter:
    ops = APIRouter(tags=["ops"])

    @ops.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @ops.get("/readyz")
    async def readyz() -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await anyio.to_thread.run_sync(service.store.ping)
            checks["database"] = "ok"
        except LifecycleError as exc:
            checks["database"] = exc.message
        checks["evidence_key"] = "ok" if service.key is not None else "not loaded"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @ops.get("/metrics")
    async def metrics() -> Response:
        data = await anyio.to_thread.run_sync(generate_latest, service.metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    return ops
