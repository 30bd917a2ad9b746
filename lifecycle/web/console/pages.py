"""The console's routes: server-rendered pages and the fragments the live parts poll.

Every page reads through the same service functions and store ports as the API; every
state-changing form is a POST carrying the session's CSRF token, and the server checks the role
again (a button an auditor never sees is refused all the same).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import UploadFile

from lifecycle.domain import RestorePlan, Run, RunDetail, Worker, iso_z
from lifecycle.evidence.verify import verify_bundle
from lifecycle.exceptions import EvidenceError, NotFoundError, UnknownWorkerError
from lifecycle.services.access import (
    actor_of,
    approve,
    cancel_run,
    existing_termination,
    list_approvals,
    reject,
    request_restore,
    restore_plan,
    retry_run,
    reversible_run,
    start_suspend,
)
from lifecycle.services.offboard import plan_offboard, start_offboard
from lifecycle.services.policy import check, expectations
from lifecycle.services.tokens import list_tokens, revoke_token, token_json
from lifecycle.services.workers import WorkerView, list_workers, worker_view
from lifecycle.web.console.chart import revoke_chart
from lifecycle.web.console.sessions import CSRF_FIELD, ConsoleUser, Refused, Sessions
from lifecycle.web.console.views import (
    ATTENTION,
    DASH,
    FINISHED_RUN,
    IN_FLIGHT,
    duration_ms,
    human_ms,
    revoke_times,
    status_label,
    timeline,
)
from lifecycle.web.routers.evidence import bundle_response

if TYPE_CHECKING:
    from lifecycle.service import Service

HERE = Path(__file__).resolve().parent
SECTION = {
    "overview.html": "overview",
    "workers.html": "workers",
    "worker.html": "workers",
    "confirm.html": "workers",
    "confirm_restore.html": "workers",
    "approvals.html": "approvals",
    "tokens.html": "tokens",
    "runs.html": "runs",
    "run.html": "runs",
    "hr.html": "hr",
    "policy.html": "policy",
    "evidence.html": "evidence",
    "verify.html": "evidence",
}
"""Which navigation entry a page belongs to (``aria-current``)."""
CHART_DAYS = 30
MAX_CHART_RUNS = 5000
MAX_UPLOAD_BYTES = 256 << 20
MAX_WORKERS = 200
"""Workers listed on one search page (narrow the search for more)."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(value: datetime | None) -> str:
    """A timestamp for people: UTC, to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else DASH


def templates() -> Jinja2Templates:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        status_label=status_label,
        human_ms=human_ms,
        when=when,
        iso_z=iso_z,
        duration_ms=duration_ms,
        csrf_field=CSRF_FIELD,
    )
    return Jinja2Templates(env=env)


def day_start(value: str | None) -> datetime | None:
    """An ``<input type=date>`` value as the start of that day in UTC."""
    if not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
    except ValueError as exc:
        raise Refused(f"{value!r} is not a date (YYYY-MM-DD)", 422) from exc


def router(service: Service, sessions: Sessions) -> APIRouter:
    pages = APIRouter(include_in_schema=False)
    tpl = templates()

    def render(
        request: Request,
        name: str,
        user: ConsoleUser | None,
        status_code: int = 200,
        **context: Any,
    ) -> Response:
        return tpl.TemplateResponse(
            request,
            name,
            {"user": user, "section": SECTION.get(name, ""), **context},
            status_code=status_code,
            headers=SECURITY_HEADERS,
        )

    async def form(request: Request, user: ConsoleUser) -> dict[str, str]:
        data = await request.form()
        sessions.check_csrf(user, _text(data.get(CSRF_FIELD)))
        return {k: v for k, v in data.items() if isinstance(v, str)}

    async def blocking(fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)

    # ------------------------------------------------------------------ sign-in

    @pages.get("/")
    async def home() -> RedirectResponse:
        return RedirectResponse("/console/overview", status_code=303)

    @pages.get("/sign-in")
    async def sign_in_page(request: Request) -> Response:
        csrf = sessions.pre_session_token(request)
        response = render(request, "sign_in.html", None, csrf=csrf)
        sessions.set_pre_session(request, response, csrf)
        return response

    @pages.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        data = await request.form()
        sessions.check_pre_session(request, _text(data.get(CSRF_FIELD)))
        token = _text(data.get("token")) or ""
        response = RedirectResponse("/console/overview", status_code=303)
        principal = await sessions.sign_in(request, response, token) if token else None
        if principal is None:
            return render(
                request,
                "sign_in.html",
                None,
                status_code=401,
                csrf=_text(data.get(CSRF_FIELD)) or "",
                error="That token is unknown, revoked or expired.",
            )
        return response

    @pages.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        user = await sessions.user(request)
        await form(request, user)
        response = RedirectResponse("/console/sign-in", status_code=303)
        await sessions.sign_out(user, response)
        return response

    # ------------------------------------------------------------------ overview

    async def overview_live(user: ConsoleUser) -> dict[str, Any]:
        in_flight = []
        for status in IN_FLIGHT:
            in_flight += await blocking(
                lambda s=status: service.store.list_runs(status=s, limit=50)
            )
        attention = []
        for status in ATTENTION:
            attention += await blocking(
                lambda s=status: service.store.list_runs(status=s, limit=20)
            )
        attention.sort(key=lambda r: r.received_at, reverse=True)
        unmapped = (
            await blocking(lambda: service.store.list_inbox(outcome="unmapped", limit=20))
            if user.is_admin
            else []
        )
        return {"in_flight": in_flight, "attention": attention, "unmapped": unmapped}

    @pages.get("/overview")
    async def overview(request: Request) -> Response:
        user = await sessions.user(request)
        now = service.clock()
        since = now - timedelta(days=CHART_DAYS)
        finished = await blocking(service.store.finished_runs, "offboard", since, now)
        finished = sorted(finished, key=lambda r: r.received_at)[-MAX_CHART_RUNS:]
        details: list[RunDetail] = await blocking(service.store.load_runs, [r.id for r in finished])
        sla = service.settings.service.termination_sla_seconds
        times = revoke_times(details, sla, service.connector_names)
        first_day = since.date() + timedelta(days=1)
        charts = [(t, revoke_chart(t, first_day, CHART_DAYS)) for t in times]
        return render(
            request,
            "overview.html",
            user,
            charts=charts,
            sla_seconds=sla,
            days=CHART_DAYS,
            **await overview_live(user),
        )

    @pages.get("/overview/live")
    async def overview_fragment(request: Request) -> Response:
        user = await sessions.user(request)
        return render(request, "_overview_live.html", user, **await overview_live(user))

    # ------------------------------------------------------------------ workers

    @pages.get("/workers")
    async def workers(request: Request, q: str = "") -> Response:
        user = await sessions.user(request)
        query = q.strip()[:100]
        found = await blocking(
            lambda: list_workers(service.store, q=query or None, limit=MAX_WORKERS + 1)
        )
        return render(
            request,
            "workers.html",
            user,
            q=query,
            workers=found[:MAX_WORKERS],
            more=len(found) > MAX_WORKERS,
        )

    async def worker_or_404(worker_id: str) -> Worker:
        worker: Worker | None = await blocking(service.store.get_worker, worker_id)
        if worker is None:
            raise NotFoundError(f"worker {worker_id!r} is not in the workforce roster")
        return worker

    @pages.get("/workers/{worker_id}")
    async def worker_page(request: Request, worker_id: str) -> Response:
        user = await sessions.user(request)
        view: WorkerView = await blocking(
            worker_view, service.store, worker_id, service.connector_names
        )
        live = await plan_offboard(service.connectors, service.kinds, view.worker.identity())
        return render(
            request,
            "worker.html",
            user,
            worker=view.worker,
            accounts=live,
            links={a.system: a.link for a in view.accounts},
            history=view.runs,
        )

    def reason_of(data: dict[str, str], *, required: bool = True) -> str | None:
        reason = (data.get("reason") or "").strip()[:200]
        if required and not reason:
            raise Refused("a reason is required", 422)
        return reason or None

    def to_run(run_id: str) -> RedirectResponse:
        return RedirectResponse(f"/console/runs/{run_id}", status_code=303)

    @pages.get("/workers/{worker_id}/offboard")
    async def confirm_offboard(request: Request, worker_id: str) -> Response:
        user = await sessions.user(request)
        sessions.require_admin(user)
        worker = await worker_or_404(worker_id)
        accounts = await plan_offboard(service.connectors, service.kinds, worker.identity())
        existing = await blocking(existing_termination, service.access, worker, service.clock())
        return render(
            request,
            "confirm.html",
            user,
            worker=worker,
            accounts=accounts,
            existing=existing,
            action="offboard",
            title="Offboard",
            explain=(
                "Disables every account of this worker in every connected system at once, "
                "ends their sessions, removes their access (a snapshot is kept for a restore) "
                "and reads each system back."
            ),
        )

    @pages.post("/workers/{worker_id}/offboard")
    async def offboard(request: Request, worker_id: str) -> Response:
        user = await sessions.user(request)
        sessions.require_admin(user)
        data = await form(request, user)
        reason = reason_of(data)
        worker = await worker_or_404(worker_id)
        if data.get("force") != "yes":
            # As POST /v1/offboard: a worker already terminated (or being) keeps that run.
            existing = await blocking(existing_termination, service.access, worker, service.clock())
            if existing is not None:
                return to_run(existing.id)
        try:
            run = await blocking(
                lambda: start_offboard(
                    service.store,
                    service.kinds,
                    worker_id,
                    reason=reason or "",
                    actor=actor_of(user.principal.name),
                    systems=service.connector_names,
                    now=service.clock(),
                )
            )
        except UnknownWorkerError as exc:
            raise NotFoundError(exc.message) from exc
        service.executor.wake()
        return to_run(run.id)

    @pages.get("/workers/{worker_id}/suspend")
    async def confirm_suspend(request: Request, worker_id: str) -> Response:
        user = await sessions.user(request)
        sessions.require_admin(user)
        worker = await worker_or_404(worker_id)
        accounts = await plan_offboard(service.connectors, service.kinds, worker.identity())
        return render(
            request,
            "confirm.html",
            user,
            worker=worker,
            accounts=accounts,
            action="suspend",
            title="Suspend",
            explain=(
                "For an incident: disables every account of this worker in every connected "
                "system at once and ends their sessions, keeping their access, until a restore "
                "(approved by a second admin) or a termination."
            ),
        )

    async def act(
        request: Request, subject: str, use_case: Callable[..., Run], *, required: bool = True
    ) -> Response:
        """An admin's action on a worker (suspend, restore) or a run (approve, reject, retry,
        cancel): role and CSRF token checked, the use case run off the event loop, then the
        page of the run it started or decided."""
        user = await sessions.user(request)
        sessions.require_admin(user)
        reason = reason_of(await form(request, user), required=required)
        run: Run = await blocking(
            lambda: use_case(
                service.access,
                subject,
                actor=actor_of(user.principal.name),
                reason=reason,
                now=service.clock(),
            )
        )
        service.executor.wake()
        return to_run(run.id)

    @pages.post("/workers/{worker_id}/suspend")
    async def suspend(request: Request, worker_id: str) -> Response:
        return await act(request, worker_id, start_suspend)

    @pages.get("/workers/{worker_id}/restore")
    async def confirm_restore(request: Request, worker_id: str) -> Response:
        user = await sessions.user(request)
        sessions.require_admin(user)
        worker = await worker_or_404(worker_id)

        def planned() -> tuple[RunDetail, RestorePlan]:
            reversed_run = reversible_run(service.access, worker)
            return reversed_run, restore_plan(service.access, worker, reversed_run)

        reversed_run, plan = await blocking(planned)
        return render(
            request,
            "confirm_restore.html",
            user,
            worker=worker,
            reversed_run=reversed_run.run,
            plan=plan,
            needs_approval=service.settings.service.restore_requires_approval,
        )

    @pages.post("/workers/{worker_id}/restore")
    async def restore(request: Request, worker_id: str) -> Response:
        return await act(request, worker_id, request_restore)

    # ------------------------------------------------------------------ approvals

    @pages.get("/approvals")
    async def approvals(request: Request) -> Response:
        user = await sessions.user(request)
        sessions.require_admin(user)  # as GET /v1/approvals
        waiting = await blocking(list_approvals, service.access)
        return render(
            request, "approvals.html", user, runs=waiting, me=actor_of(user.principal.name)
        )

    @pages.post("/approvals/{run_id}/approve")
    async def approve_run(request: Request, run_id: str) -> Response:
        return await act(request, run_id, approve, required=False)

    @pages.post("/approvals/{run_id}/reject")
    async def reject_run(request: Request, run_id: str) -> Response:
        return await act(request, run_id, reject)

    # ------------------------------------------------------------------ runs

    @pages.get("/runs")
    async def runs(request: Request, status: str = "") -> Response:
        user = await sessions.user(request)
        chosen = status if status in status_filters() else ""
        found = await blocking(lambda: service.store.list_runs(status=chosen or None, limit=100))
        return render(
            request, "runs.html", user, runs=found, status=chosen, statuses=status_filters()
        )

    async def run_context(run_id: str) -> dict[str, Any]:
        detail: RunDetail = await blocking(service.store.load_run, run_id)
        return {
            "run": detail.run,
            "detail": detail,
            "systems": timeline(detail),
            "final": detail.run.status.value in FINISHED_RUN,
        }

    @pages.get("/runs/{run_id}")
    async def run_page(request: Request, run_id: str) -> Response:
        user = await sessions.user(request)
        return render(request, "run.html", user, **await run_context(run_id))

    @pages.get("/runs/{run_id}/live")
    async def run_fragment(request: Request, run_id: str) -> Response:
        user = await sessions.user(request)
        return render(request, "_run_live.html", user, **await run_context(run_id))

    @pages.post("/runs/{run_id}/retry")
    async def retry(request: Request, run_id: str) -> Response:
        return await act(request, run_id, retry_run)

    @pages.post("/runs/{run_id}/cancel")
    async def cancel(request: Request, run_id: str) -> Response:
        return await act(request, run_id, cancel_run)

    # ------------------------------------------------------------------ tokens

    @pages.get("/tokens")
    async def tokens(request: Request) -> Response:
        user = await sessions.user(request)
        sessions.require_admin(user)  # as GET /v1/tokens
        found = await blocking(list_tokens, service.store)
        now = service.clock()
        return render(
            request, "tokens.html", user, tokens=[token_json(t, now) for t in reversed(found)]
        )

    @pages.post("/tokens/{token_id}/revoke")
    async def revoke(request: Request, token_id: int) -> Response:
        user = await sessions.user(request)
        sessions.require_admin(user)
        await form(request, user)
        await blocking(revoke_token, service.store, token_id, service.clock())
        # Revoking one's own token ends one's own session: the next page asks to sign in.
        return RedirectResponse("/console/tokens", status_code=303)

    # ------------------------------------------------------------------ HR inbox, policy

    @pages.get("/hr")
    async def hr_inbox(request: Request, outcome: str = "") -> Response:
        user = await sessions.user(request)
        sessions.require_admin(user)  # as GET /v1/hr/events
        outcomes = ("run", "ignored", "unmapped", "pending", "conflict")
        chosen = outcome if outcome in outcomes else ""
        rows = await blocking(lambda: service.store.list_inbox(outcome=chosen or None, limit=200))
        return render(request, "hr.html", user, events=rows, outcome=chosen, outcomes=outcomes)

    @pages.get("/policy")
    async def policy(request: Request) -> Response:
        user = await sessions.user(request)
        expected = expectations(service.settings.policy, service.playbooks, service.connector_names)
        report = await check(service.connectors, expected, service.clock())
        return render(request, "policy.html", user, report=report)

    # ------------------------------------------------------------------ evidence

    async def evidence_context() -> dict[str, Any]:
        latest = await service.evidence.sign()
        today = service.clock().date()
        return {
            "checkpoint": latest,
            "verifier_key": service.key.verifier.text() if service.key else None,
            "default_since": (today - timedelta(days=30)).isoformat(),
            "default_until": today.isoformat(),
        }

    @pages.get("/evidence")
    async def evidence(request: Request) -> Response:
        user = await sessions.user(request)
        return render(request, "evidence.html", user, **await evidence_context())

    @pages.get("/evidence/bundle")
    async def evidence_bundle(
        request: Request, since: str = "", until: str = "", worker: str = ""
    ) -> Response:
        user = await sessions.user(request)
        if not user.is_auditor:  # as GET /v1/evidence/bundle
            raise Refused(f"role {user.principal.role.value!r} may not do this; needs auditor")
        end = day_start(until)
        return await bundle_response(
            service,
            since=day_start(since),
            until=end + timedelta(days=1) if end else None,
            worker=worker.strip()[:64] or None,
        )

    @pages.post("/evidence/verify")
    async def evidence_verify(request: Request) -> Response:
        user = await sessions.user(request)
        async with request.form() as data:
            sessions.check_csrf(user, _text(data.get(CSRF_FIELD)))
            upload = data.get("bundle")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise Refused("choose a bundle (.zip) to verify", 422)
            key_text = (_text(data.get("verifier_key")) or "").strip()
            if not key_text and service.key is not None:
                key_text = service.key.verifier.text()
            with tempfile.TemporaryFile() as copy:
                while chunk := await upload.read(1 << 20):
                    copy.write(chunk)
                copy.seek(0)
                report = error = None
                try:
                    report = await blocking(verify_bundle, copy, key_text)
                except EvidenceError as exc:
                    error = exc.message
        return render(
            request,
            "verify.html",
            user,
            status_code=200 if error is None else 422,
            report=report,
            error=error,
            filename=upload.filename,
            **await evidence_context(),
        )

    return pages


def status_filters() -> tuple[str, ...]:
    return ("running", "pending", *ATTENTION, "verified", "no_accounts", "cancelled")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
