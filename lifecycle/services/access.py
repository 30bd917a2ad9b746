"""Reversible access, the admin's use cases: suspend a worker during an incident, restore a
suspended or wrongly terminated worker (with a second admin's approval), decide approvals,
cancel a run that has not started, retry an incomplete or failed run.

Blocking functions of an ``AccessContext`` (call them in a worker thread); the API routers, the
CLI (through the API) and the console call these, never the store directly. Every decision is
kept on the run (who, when, why); what changes accounts is a run the engine executes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from lifecycle.domain import (
    AccountRef,
    NewRun,
    RestorePlan,
    ReverifyPlan,
    Run,
    RunDetail,
    RunKind,
    RunStatus,
    StepAction,
    StepStatus,
    SuspendPlan,
    VersionRef,
    Worker,
    WorkerStatus,
    plan_digest,
)
from lifecycle.engine.kinds import Kinds
from lifecycle.exceptions import ForbiddenError, NotFoundError, StateConflictError
from lifecycle.services.playbooks import PlaybookLibrary
from lifecycle.services.sweeps import SOURCE as SCHEDULER
from lifecycle.services.sweeps import reverify_key, reverify_prefix
from lifecycle.store.ports import Store, Suppression

ADMIN = "admin"
#: Runs whose accounts a restore can give back, and the roster status each leaves.
REVERSIBLE: dict[str, str] = {
    RunKind.OFFBOARD: WorkerStatus.TERMINATED,
    RunKind.SUSPEND: WorkerStatus.SUSPENDED,
}
#: A reversed run must have finished: verified, or incomplete (what it did is recorded).
REVERSIBLE_STATUS = (RunStatus.VERIFIED, RunStatus.INCOMPLETE)
OPEN = (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL)


@dataclass(frozen=True)
class AccessContext:
    """What the use cases need, injected (the composition root builds it)."""

    store: Store
    kinds: Kinds
    playbooks: PlaybookLibrary
    systems: tuple[str, ...]
    """Every configured connector."""
    restore_requires_approval: bool = True
    reverify_after_minutes: tuple[int, ...] = (5, 1440)


def actor_of(name: str) -> str:
    """How a run names the admin who asked for it."""
    return f"{ADMIN}:{name}"


def _worker(ctx: AccessContext, worker_id: str) -> Worker:
    worker = ctx.store.get_worker(worker_id)
    if worker is None:
        raise NotFoundError(f"worker {worker_id!r} is not in the workforce roster")
    return worker


def _admin_run(
    ctx: AccessContext, plan: SuspendPlan | RestorePlan, worker_id: str, *, reason: str, actor: str
) -> NewRun:
    key = str(uuid.uuid4())
    return ctx.kinds.new_run(
        plan,
        worker_id=worker_id,
        actor=actor,
        source=ADMIN,
        source_event_id=key,
        payload_sha256=plan_digest(ADMIN, key, plan),
        reason=reason,
    )


def _open_runs(ctx: AccessContext, worker_id: str, kind: str) -> list[Run]:
    runs = ctx.store.list_runs(worker_id=worker_id, kind=kind, limit=20)
    return [r for r in runs if r.status in OPEN]


# ---------------------------------------------------------------------- suspend


def start_suspend(
    ctx: AccessContext, worker_id: str, *, reason: str, actor: str, now: datetime
) -> Run:
    """Disable every account of the worker and revoke their sessions at once, keeping their
    access, until a restore (or a termination). Raises NotFoundError for a worker the roster
    does not know, StateConflictError for one terminated, suspended or being suspended."""
    worker = _worker(ctx, worker_id)
    if worker.status == WorkerStatus.TERMINATED:
        raise StateConflictError(
            f"worker {worker_id} is terminated: their accounts are already disabled"
        )
    if worker.status == WorkerStatus.SUSPENDED:
        raise StateConflictError(
            f"worker {worker_id} is already suspended (restore them with lifecycle restore)"
        )
    if open_runs := _open_runs(ctx, worker_id, RunKind.SUSPEND):
        raise StateConflictError(
            f"worker {worker_id} is already being suspended by run {open_runs[0].id}"
        )
    plan = SuspendPlan(targets=ctx.systems)
    return ctx.store.create_run(_admin_run(ctx, plan, worker_id, reason=reason, actor=actor), now)


# ---------------------------------------------------------------------- restore


def reversible_run(ctx: AccessContext, worker: Worker) -> RunDetail:
    """The run a restore of ``worker`` undoes: their latest finished suspension or termination
    (the one their roster status says). Raises StateConflictError when there is none."""
    wanted = next((k for k, status in REVERSIBLE.items() if status == worker.status), None)
    if wanted is None:
        raise StateConflictError(
            f"worker {worker.worker_id} is {worker.status}: only a suspended or terminated "
            "worker can be restored"
        )
    for run in ctx.store.list_runs(worker_id=worker.worker_id, kind=wanted, limit=50):
        if run.status in REVERSIBLE_STATUS:
            return ctx.store.load_run(run.id)
    raise StateConflictError(
        f"worker {worker.worker_id} is {worker.status} but has no finished {wanted} run to reverse"
    )


def restore_plan(ctx: AccessContext, worker: Worker, reversed_run: RunDetail) -> RestorePlan:
    """Enable the accounts the reversed run found and put back exactly what it removed;
    ``grants`` are what the worker's current playbook grants (for the findings)."""
    accounts: dict[str, AccountRef] = {}
    snapshot: dict[str, tuple[str, ...]] = {}
    for step in reversed_run.steps:
        if step.account_id and step.status is not StepStatus.NO_ACCOUNT:
            accounts.setdefault(
                step.system, AccountRef(account_id=step.account_id, login=step.account_login)
            )
        if step.action == StepAction.REMOVE_ACCESS and step.result and step.result.removed:
            snapshot[step.system] = tuple(step.result.removed)
    name = ctx.store.current_playbook(worker.worker_id)
    book = ctx.playbooks.playbooks.get(name or "") or ctx.playbooks.for_job_code(worker.job_code)
    grants = (
        {s: tuple(sorted(book.entitlements(s))) for s in book.playbook.systems} if book else None
    )
    return RestorePlan(
        reverses=reversed_run.run.id,
        reverses_kind=reversed_run.run.kind,
        reverses_seq=reversed_run.run.evidence_seq,
        targets=accounts,
        snapshot=snapshot,
        grants=grants,
        current=VersionRef(name=book.name, sha256=book.sha256) if book else None,
    )


def _suppression(
    ctx: AccessContext, plan: RestorePlan, worker_id: str, by: str
) -> Suppression | None:
    """The re-verifications of the reversed termination, which would disable the restored
    accounts again: cancelled, and those not yet created stored cancelled."""
    if plan.reverses_kind != RunKind.OFFBOARD:
        return None
    of = plan.reverses
    placeholders = []
    for minutes in ctx.reverify_after_minutes:
        key = reverify_key(of, minutes)
        reverify = ReverifyPlan(targets=ctx.systems, of_run=of, after_minutes=minutes)
        placeholders.append(
            ctx.kinds.new_run(
                reverify,
                worker_id=worker_id,
                actor=f"{SCHEDULER}:reverify",
                source=SCHEDULER,
                source_event_id=key,
                payload_sha256=plan_digest(SCHEDULER, key, reverify),
                reason=f"re-verification +{minutes} min of termination run {of}",
            )
        )
    return Suppression(
        SCHEDULER,
        reverify_prefix(of),
        tuple(placeholders),
        by,
        f"suppressed: termination run {of} is being restored",
    )


def request_restore(
    ctx: AccessContext, worker_id: str, *, reason: str, actor: str, now: datetime
) -> Run:
    """A restore of a suspended or terminated worker: ``awaiting_approval`` until another
    admin approves it (``[service] restore_requires_approval``), else ``pending`` at once.
    Raises NotFoundError, or StateConflictError (nothing to restore, or a restore is open)."""
    worker = _worker(ctx, worker_id)
    if open_runs := _open_runs(ctx, worker_id, RunKind.RESTORE):
        raise StateConflictError(
            f"worker {worker_id} already has restore run {open_runs[0].id} ({open_runs[0].status})"
        )
    plan = restore_plan(ctx, worker, reversible_run(ctx, worker))
    new = _admin_run(ctx, plan, worker_id, reason=reason, actor=actor)
    if ctx.restore_requires_approval:
        new = replace(new, awaiting_approval=True)
        return ctx.store.create_run(new, now)
    return ctx.store.create_run(new, now, suppress=_suppression(ctx, plan, worker_id, actor))


# ---------------------------------------------------------------------- approvals


def list_approvals(ctx: AccessContext, limit: int = 100) -> list[Run]:
    """Runs awaiting a second admin's approval, newest first."""
    return ctx.store.list_runs(status=RunStatus.AWAITING_APPROVAL, limit=limit)


def approve(
    ctx: AccessContext, run_id: str, *, actor: str, reason: str | None, now: datetime
) -> Run:
    """A second admin approves the run: it becomes ``pending`` and executes now; the pending
    re-verifications of a termination it reverses are suppressed in the same transaction.
    Raises NotFoundError; ForbiddenError when ``actor`` requested it (two-person rule);
    StateConflictError when it is not awaiting approval."""
    run = ctx.store.load_run(run_id).run
    if isinstance(run.plan, RestorePlan) and run.status is RunStatus.AWAITING_APPROVAL:
        worker = _worker(ctx, run.worker_id)
        if worker.status != REVERSIBLE.get(run.plan.reverses_kind):
            raise StateConflictError(
                f"worker {run.worker_id} is {worker.status} now, no longer as run "
                f"{run.plan.reverses} left them: reject this restore and request a new one"
            )
    if run.actor == actor:
        raise ForbiddenError(
            f"{actor} requested run {run_id} and cannot approve it: another admin must "
            "(two-person rule)"
        )
    suppress = (
        _suppression(ctx, run.plan, run.worker_id, actor)
        if isinstance(run.plan, RestorePlan)
        else None
    )
    return ctx.store.decide_run(
        run_id, approve=True, by=actor, reason=reason, now=now, suppress=suppress
    )


def reject(ctx: AccessContext, run_id: str, *, actor: str, reason: str, now: datetime) -> Run:
    """Reject the run (the requester may withdraw their own): it ends ``cancelled`` with the
    decision kept. Raises NotFoundError, StateConflictError."""
    return ctx.store.decide_run(run_id, approve=False, by=actor, reason=reason, now=now)


# ---------------------------------------------------------------------- cancel, retry


def cancel_run(ctx: AccessContext, run_id: str, *, actor: str, reason: str, now: datetime) -> Run:
    """Cancel a run that has not started (a future-dated termination, a restore awaiting
    approval). Raises NotFoundError, StateConflictError."""
    return ctx.store.cancel_run(run_id, by=actor, reason=reason, now=now)


def retry_run(ctx: AccessContext, run_id: str, *, actor: str, reason: str, now: datetime) -> Run:
    """Run an incomplete or failed run again, as a new run of the same kind and plan (every
    action is idempotent: what was done is found done). A retried restore keeps the approval
    it had. Raises NotFoundError, StateConflictError."""
    original = ctx.store.load_run(run_id).run
    key = f"retry:{original.id}"
    retry = ctx.kinds.new_run(
        original.plan,
        worker_id=original.worker_id,
        actor=actor,
        source=ADMIN,
        source_event_id=key,
        payload_sha256=plan_digest(ADMIN, key, original.plan),
        reason=reason,
    )
    retry = replace(retry, retry_of=original.id, approved=original.approved)
    return ctx.store.create_retry(run_id, retry, now)


def existing_termination(ctx: AccessContext, worker: Worker, now: datetime) -> Run | None:
    """The termination that already covers ``worker``: their latest offboard run that is
    under way (a future-dated one is not), or finished if they are terminated; None when a
    new one is needed."""
    runs: Sequence[Run] = ctx.store.list_runs(
        worker_id=worker.worker_id, kind=RunKind.OFFBOARD, limit=20
    )
    for run in runs:
        if run.status is RunStatus.RUNNING or (
            run.status is RunStatus.PENDING and run.not_before <= now
        ):
            return run
        if worker.status == WorkerStatus.TERMINATED and run.status in REVERSIBLE_STATUS:
            return run
    return None
