"""Operators: liveness, readiness and Prometheus metrics (no token: probes and scrapers)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from lifecycle.exceptions import LifecycleError

if TYPE_CHECKING:
    from lifecycle.service import Service


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, str]
    """``database`` and ``evidence_key``: ``ok``, or what is wrong."""


def router(service: Service) -> APIRouter:
    ops = APIRouter(tags=["ops"])

    @ops.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @ops.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "Not ready: the checks say why"}},
    )
    async def readyz() -> JSONResponse:
        """Ready: the database answers and the evidence key is loaded (else 503, same body)."""
        checks: dict[str, str] = {}
        try:
            await anyio.to_thread.run_sync(service.store.ping)
            checks["database"] = "ok"
        except LifecycleError as exc:
            checks["database"] = exc.message
        checks["evidence_key"] = "ok" if service.key is not None else "not loaded"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @ops.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        data = await anyio.to_thread.run_sync(generate_latest, service.metrics.registry)
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    return ops
