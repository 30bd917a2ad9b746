"""The web console at ``/console``: server-rendered pages for admins and auditors.

A sub-application of its own (mounted by ``lifecycle.web.app``), so its errors are HTML pages
rather than the API's problem+json; templates and static assets ship in this package, nothing
comes from a CDN. The console signs in with an API token (``sessions.py``) and reads through the
same services and store ports as the API (``pages.py``).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from connectors.base import ConnectorError
from lifecycle.exceptions import LifecycleError
from lifecycle.web.console.pages import MAX_UPLOAD_BYTES, SECURITY_HEADERS, router, templates
from lifecycle.web.console.sessions import Refused, Sessions, SignInRequired
from lifecycle.web.problems import kind_of

if TYPE_CHECKING:
    from lifecycle.service import Service

HERE = Path(__file__).resolve().parent
LARGE_BODIES = {"/console/evidence/verify": MAX_UPLOAD_BYTES}
"""Paths whose bodies may be larger than ``[service] max_body_bytes``: a bundle to verify."""
LIVE_HEADER = "x-console-live"
"""Sent by the console's script with its polls: an ended session answers 401, not a redirect."""


def console_app(service: Service) -> FastAPI:
    settings = service.settings.console
    sessions = Sessions(
        service.store,
        service.store,
        idle=timedelta(minutes=settings.session_idle_minutes),
        trust_forwarded_proto=settings.trust_forwarded_proto,
        clock=service.clock,
    )
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router(service, sessions))
    tpl = templates()

    def error_page(request: Request, status: int, message: str) -> Response:
        return tpl.TemplateResponse(
            request,
            "error.html",
            {"user": None, "status": status, "message": message},
            status_code=status,
            headers=SECURITY_HEADERS,
        )

    @app.exception_handler(SignInRequired)
    async def _sign_in(request: Request, _: SignInRequired) -> Response:
        if request.headers.get(LIVE_HEADER):
            return Response("sign in again", status_code=401, media_type="text/plain")
        return RedirectResponse("/console/sign-in", status_code=303)

    @app.exception_handler(Refused)
    async def _refused(request: Request, exc: Refused) -> Response:
        return error_page(request, exc.status, exc.message)

    @app.exception_handler(LifecycleError)
    async def _lifecycle_error(request: Request, exc: LifecycleError) -> Response:
        return error_page(request, kind_of(exc).status, exc.message)

    @app.exception_handler(ConnectorError)
    async def _connector_error(request: Request, exc: ConnectorError) -> Response:
        return error_page(request, 502, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, _: RequestValidationError) -> Response:
        return error_page(request, 422, "the request is invalid")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_page(request, exc.status_code, str(exc.detail))

    return app


def mount(app: FastAPI, service: Service) -> None:
    """Serve the console at ``/console`` of ``app``."""
    app.mount("/console", console_app(service))


__all__ = ["LARGE_BODIES", "mount"]
