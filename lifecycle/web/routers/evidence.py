"""Evidence: the latest signed checkpoint (anyone), the auditor's bundle (auditors)."""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import anyio.to_thread
from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import AwareDatetime
from starlette.background import BackgroundTask

from lifecycle.auth import Principal
from lifecycle.evidence.export import export_bundle
from lifecycle.exceptions import EvidenceError, NotFoundError
from lifecycle.web.deps import MAX_INDEX, Auth
from lifecycle.web.openapi import errors

if TYPE_CHECKING:
    from lifecycle.service import Service


async def bundle_response(
    service: Service,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    worker: str | None = None,
    previous_size: int | None = None,
) -> FileResponse:
    """The bundle of records appended in [since, until) as a zip download (the API and the
    console both answer with this)."""
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


def router(service: Service, auth: Auth) -> APIRouter:
    v1 = APIRouter(prefix="/v1")

    @v1.get(
        "/evidence/checkpoint",
        tags=["evidence"],
        response_class=PlainTextResponse,
        responses=errors(404),
    )
    async def checkpoint() -> PlainTextResponse:
        """The latest signed checkpoint (C2SP signed note); public by design."""
        latest = await service.evidence.sign()
        if latest is None:
            raise NotFoundError("no checkpoint has been signed yet (is the evidence key loaded?)")
        return PlainTextResponse(latest.note, media_type="text/plain; charset=utf-8")

    @v1.get(
        "/evidence/bundle",
        tags=["evidence"],
        response_class=FileResponse,
        responses={
            200: {
                "description": "The bundle (docs/evidence-bundle.md)",
                "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def bundle(
        _: Principal = auth.auditor,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
        worker: Annotated[str | None, Query(max_length=64)] = None,
        previous_size: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
    ) -> FileResponse:
        """The evidence bundle of records appended in [since, until), streamed as a zip."""
        return await bundle_response(
            service, since=since, until=until, worker=worker, previous_size=previous_size
        )

    return v1
