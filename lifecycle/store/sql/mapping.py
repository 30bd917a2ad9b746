"""Rows to domain values and back: the only place that knows both.

Each function copies one type's fields into the other, so the same field names stand in many of
them, on purpose: a row and its value differ in a few fields each (plan JSON, lease columns,
step errors, result JSON), and a generic copy would hide exactly those differences.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from lifecycle.domain import (
    ApiToken,
    Checkpoint,
    Decision,
    InboxEvent,
    Lease,
    Link,
    NewRun,
    NewStep,
    Plan,
    PlanCodec,
    Run,
    RunStatus,
    Step,
    StepError,
    StepResult,
    StepStatus,
    Worker,
)
from lifecycle.store.sql.tables import (
    ApiTokenRow,
    CheckpointRow,
    InboxRow,
    LinkRow,
    RunRow,
    StepRow,
    WorkerRow,
)

#: The columns of a step that change while it runs.
STEP_PROGRESS = (
    "status",
    "attempts",
    "account_id",
    "account_login",
    "started_at",
    "finished_at",
    "error",
    "error_class",
    "error_code",
    "result_json",
    "readback_json",
    "next_attempt_at",
    "first_failed_at",
)
ERROR_TEXT_CAP = 2000
"""Operators' error text is kept short: a vendor can answer with a whole page."""


# Domain values and rows share their field names where they mirror each other one to one.


def worker(row: WorkerRow) -> Worker:
    return Worker(**row.model_dump())


def worker_row(value: Worker) -> WorkerRow:
    return WorkerRow(**asdict(value))


def link(row: LinkRow) -> Link:
    return Link(row.worker_id, row.connector, row.account_id, row.login, row.linked_at)


def link_row(value: Link) -> LinkRow:
    return LinkRow(
        worker_id=value.worker_id,
        connector=value.system,
        account_id=value.account_id,
        login=value.login,
        linked_at=value.linked_at,
    )


def link_values(value: Link) -> dict[str, Any]:
    """``link_row`` as the column values of a Core statement (no ORM object)."""
    return {
        "worker_id": value.worker_id,
        "connector": value.system,
        "account_id": value.account_id,
        "login": value.login,
        "linked_at": value.linked_at,
    }


def run(row: RunRow, plans: PlanCodec, *, plan: Plan | None = None) -> Run:
    """``plan``: the run's plan when the caller already holds it (saves parsing it again)."""
    lease = Lease(row.id, row.lease_owner, row.lease_epoch) if row.lease_owner is not None else None
    return Run(
        id=row.id,
        kind=row.kind,
        worker_id=row.worker_id,
        status=RunStatus(row.status),
        plan=plan if plan is not None else plans.loads(row.plan_json or "{}"),
        actor=row.actor,
        received_at=row.received_at,
        not_before=row.not_before,
        reason=row.reason,
        source=row.source,
        source_event_id=row.source_event_id,
        payload_sha256=row.payload_sha256,
        effective_at=row.effective_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        time_to_revoke_ms=row.time_to_revoke_ms,
        evidence_seq=row.evidence_seq,
        lease=lease,
        sla_alerted_at=row.sla_alerted_at,
        approved=_decision(row, "approved"),
        rejected=_decision(row, "rejected"),
        cancelled=Decision(row.cancelled_by, row.cancelled_at, row.cancel_reason)
        if row.cancelled_by is not None and row.cancelled_at is not None
        else None,
        retry_of=row.retry_of,
        retried_as=row.retried_as,
    )


def _decision(row: RunRow, decision: str) -> Decision | None:
    if row.decision != decision or row.decided_by is None or row.decided_at is None:
        return None
    return Decision(row.decided_by, row.decided_at, row.decision_reason)


def new_run_row(run_id: str, value: NewRun, plans: PlanCodec, now: Any) -> RunRow:
    return RunRow(**new_run_values(run_id, value, plans, now))


def new_run_values(run_id: str, value: NewRun, plans: PlanCodec, now: Any) -> dict[str, Any]:
    """``new_run_row`` as the column values of a Core INSERT (no ORM object: every HR event
    creates a run, and building the SQLModel object cost more than inserting it). Columns
    left out take their defaults (NULL, or the status and lease epoch of a new run)."""
    plan = value.plan
    playbook = plan.playbook
    row: dict[str, Any] = {
        "id": run_id,
        "kind": value.kind,
        "worker_id": value.worker_id,
        "status": RunStatus.PENDING,
        "reason": value.reason,
        "actor": value.actor,
        "source": value.source,
        "source_event_id": value.source_event_id,
        "payload_sha256": value.payload_sha256,
        "received_at": now,
        "effective_at": value.effective_at,
        "not_before": max(value.effective_at, now) if value.effective_at else now,
        "playbook_name": playbook.name if playbook else None,
        "playbook_sha256": playbook.sha256 if playbook else None,
        "plan_json": plans.dumps(plan),
        "retry_of": value.retry_of,
    }
    if value.awaiting_approval:
        row["status"] = RunStatus.AWAITING_APPROVAL
    if value.approved is not None:
        row["decision"], row["decided_by"] = "approved", value.approved.by
        row["decided_at"], row["decision_reason"] = value.approved.at, value.approved.reason
    if value.lease_owner is not None:
        # Created already claimed: the creator executes it now; after a crash the lease
        # lapses and any replica's executor resumes it.
        row["status"], row["started_at"] = RunStatus.RUNNING, now
        row["lease_owner"], row["lease_expires_at"] = value.lease_owner, value.lease_until
        row["lease_epoch"] = 1
    return row


def new_step_row(run_id: str, value: NewStep) -> StepRow:
    return StepRow(
        run_id=run_id,
        connector=value.system,
        action=value.action,
        position=value.position,
        account_id=value.account_id,
        account_login=value.account_login,
    )


def new_step_values(run_id: str, value: NewStep) -> dict[str, Any]:
    """``new_step_row`` as the column values of a Core INSERT (no ORM object per step: a run
    has a dozen steps, and building them was a large share of an intake's CPU)."""
    return {
        **STEP_DEFAULTS,
        "run_id": run_id,
        "connector": value.system,
        "action": value.action,
        "position": value.position,
        "account_id": value.account_id,
        "account_login": value.account_login,
    }


STEP_DEFAULTS: dict[str, Any] = {"status": "pending", "attempts": 0}
"""A new step's columns besides its identity: pending, no attempt yet; the progress columns
are left out (NULL: nothing recorded), which spares a dozen values per step to convert."""


#: The columns ``step`` reads, in the order it reads them (select them in this order).
STEP_COLUMNS = ("id", "run_id", "connector", "action", "position", *STEP_PROGRESS)


def step(row: Sequence[Any]) -> Step:
    """A step from a row of ``STEP_COLUMNS`` (by position: a claimed batch holds a dozen steps
    per run, and reading a Core row's columns by name cost several times as much)."""
    (
        id_,
        run_id,
        system,
        action,
        position,
        status,
        attempts,
        account_id,
        account_login,
        started_at,
        finished_at,
        error,
        error_class,
        error_code,
        result_json,
        readback_json,
        next_attempt_at,
        first_failed_at,
    ) = row
    if id_ is None:
        raise ValueError("a step row without an id")
    return Step(
        id=id_,
        run_id=run_id,
        system=system,
        action=action,
        position=position,
        status=StepStatus(status),
        attempts=attempts,
        account_id=account_id,
        account_login=account_login,
        started_at=started_at,
        finished_at=finished_at,
        error=StepError(error, error_class, error_code) if error is not None else None,
        result=StepResult.loads(result_json) if result_json else None,
        readback=json.loads(readback_json) if readback_json else None,
        next_attempt_at=next_attempt_at,
        first_failed_at=first_failed_at,
    )


def step_progress(value: Step) -> dict[str, Any]:
    """The changing columns of a step (``STEP_PROGRESS``) and its key (``b_id``), for the
    executemany UPDATE of ``runs.STEP_UPDATE``."""
    error = value.error
    return {
        "b_id": value.id,
        "status": value.status.value,
        "attempts": value.attempts,
        "account_id": value.account_id,
        "account_login": value.account_login,
        "started_at": value.started_at,
        "finished_at": value.finished_at,
        "error": error.message[:ERROR_TEXT_CAP] if error else None,
        "error_class": error.error_class if error else None,
        "error_code": error.code if error else None,
        "result_json": result_json(value.result) if value.result else None,
        "readback_json": json.dumps(value.readback, sort_keys=True) if value.readback else None,
        "next_attempt_at": value.next_attempt_at,
        "first_failed_at": value.first_failed_at,
    }


def result_json(value: StepResult) -> str:
    """``StepResult.dumps``, the same text, without ``dataclasses.asdict`` (a deep copy)."""
    return json.dumps(
        {
            "action": value.action,
            "account_id": value.account_id,
            "started_at": value.started_at,
            "finished_at": value.finished_at,
            "outcome": value.outcome,
            "vendor_request_id": value.vendor_request_id,
            "response_sha256": value.response_sha256,
            "removed": list(value.removed),
            "added": list(value.added),
            "skipped": list(value.skipped),
            "detail": dict(value.detail),
        },
        sort_keys=True,
    )


def token(row: ApiTokenRow) -> ApiToken:
    return ApiToken(
        row.name,
        row.role,
        row.token_sha256,
        row.created_at,
        row.revoked_at,
        id=row.id,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )


def checkpoint(row: CheckpointRow) -> Checkpoint:
    return Checkpoint(row.tree_size, bytes(row.root_hash), row.note, row.signed_at)


def inbox_event(row: InboxRow) -> InboxEvent:
    return InboxEvent(**row.model_dump())
