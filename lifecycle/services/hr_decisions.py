"""What an HR event about a roster worker changes in the roster and which run it starts.

Decided here, persisted by the store in one transaction with the inbox row (nothing is
acknowledged before it is durable): a termination starts an ``offboard`` run of every
configured system; a hire or transfer whose job code maps to a playbook starts an ``onboard``
or ``transfer`` run; anything else is stored ``ignored``, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from lifecycle.domain import (
    InboxEntry,
    Intake,
    IntakeDecision,
    NewRun,
    OffboardPlan,
    Plan,
    Worker,
    WorkerStatus,
)
from lifecycle.engine.kinds import Kinds
from lifecycle.exceptions import ConfigError, UnknownWorkerError
from lifecycle.hr.event import HrEvent, HrEventType
from lifecycle.services.playbooks import PlaybookLibrary
from lifecycle.services.provisioning import hr_plan
from lifecycle.store.ports import Acceptance, Intakes

log = logging.getLogger("lifecycle.intake")
ROSTER_ATTRIBUTES = ("name", "email", "job_code", "engagement", "vendor")
DISABLED = (WorkerStatus.TERMINATED, WorkerStatus.SUSPENDED)
"""Roster statuses whose accounts are off: no playbook is applied to them."""


def updated_worker(known: Worker | None, event: HrEvent, now: datetime) -> Worker:
    """The roster row after the event: what the event says overrides what was known.

    Raises UnknownWorkerError for anything but a hire about a worker the roster does not know.
    """
    if known is None and event.type is not HrEventType.HIRE:
        raise UnknownWorkerError(f"worker {event.worker_id!r} is not in the workforce roster")
    worker = known or Worker(worker_id=event.worker_id, updated_at=now)
    changes: dict[str, str] = {
        attr: value for attr in ROSTER_ATTRIBUTES if (value := getattr(event, attr)) is not None
    }
    if event.type is HrEventType.HIRE:
        changes["status"] = WorkerStatus.ACTIVE
    return replace(worker, updated_at=now, **changes)


def ignored_reason(event: HrEvent, job_code: str | None, provisioning: bool = True) -> str:
    """Why an accepted HR event started no run (recorded on its inbox row)."""
    if event.type in (HrEventType.HIRE, HrEventType.TRANSFER) and not provisioning:
        return (
            f"{event.type} recorded in the roster; no joiner/mover run: provisioning from HR "
            "events is not enabled"
        )
    if event.type in (HrEventType.HIRE, HrEventType.TRANSFER):
        return (
            f"{event.type} recorded in the roster; no joiner/mover run: job code "
            f"{job_code!r} maps to no playbook, or the worker's playbook does not change"
        )
    return f"{event.type} recorded in the roster; it starts no run"


def refused_reason(event: HrEvent, known: Worker | None) -> str | None:
    """Why a hire or transfer must not provision this worker now (None: it may). A transfer
    never enables accounts, so a terminated or suspended worker is not moved; a hire of a
    suspended worker (an open incident) waits for the restore. A hire of a terminated worker
    is a rehire: it proceeds (its joiner run re-enables the accounts)."""
    if known is None:
        return None
    if event.type is HrEventType.TRANSFER and known.status in DISABLED:
        return (
            f"transfer recorded in the roster; no mover run: the worker is {known.status} and "
            "their accounts are disabled (a transfer never enables accounts: restore or rehire "
            "them first)"
        )
    if event.type is HrEventType.HIRE and known.status == WorkerStatus.SUSPENDED:
        return (
            "hire recorded in the roster; no joiner run: the worker is suspended (an open "
            "incident): restore them first"
        )
    return None


def accept(
    store: Intakes,
    kinds: Kinds,
    playbooks: PlaybookLibrary | None,
    systems: Sequence[str],
    event: HrEvent,
    now: datetime,
    *,
    replace_pending: str | None = None,
) -> Intake:
    """Store the event with its roster change and its run (blocking; call in a thread).

    ``playbooks`` None: hires and transfers only update the roster (no joiner/mover runs)."""
    item = acceptance(kinds, playbooks, systems, event, now)
    return store.accept_hr_event(item.entry, now, item.decide, replace_pending=replace_pending)


def acceptance(
    kinds: Kinds,
    playbooks: PlaybookLibrary | None,
    systems: Sequence[str],
    event: HrEvent,
    now: datetime,
) -> Acceptance:
    """The event's inbox row and the decision of what it changes, for the store to apply
    (``accept`` one at a time, ``Intakes.accept_hr_events`` many)."""
    configured = list(systems)

    def decide(known: Worker | None, current_playbook: str | None) -> IntakeDecision:
        worker = updated_worker(known, event, now)
        if (refused := refused_reason(event, known)) is not None:
            status = known.status if known is not None else WorkerStatus.ACTIVE
            return IntakeDecision(replace(worker, status=status), None, refused)
        plan: Plan | None = None
        reason = event.reason
        if event.type is HrEventType.TERMINATION:
            plan = OffboardPlan(targets=tuple(configured))
        elif playbooks is not None and event.type in (HrEventType.HIRE, HrEventType.TRANSFER):
            reason = event.reason or str(event.type)
            previous_job_code = known.job_code if known else None
            try:
                plan = hr_plan(
                    playbooks,
                    worker,
                    previous_job_code,
                    current_playbook,
                    event.type is HrEventType.TRANSFER,
                    configured,
                )
            except ConfigError as exc:
                # The HR event must still be stored: log, and let the operator fix the playbook.
                log.error("no joiner/mover run for %s: %s", worker.worker_id, exc.message)
        if plan is None:
            return IntakeDecision(
                worker, None, ignored_reason(event, worker.job_code, playbooks is not None)
            )
        return IntakeDecision(worker, _run(kinds, plan, event, reason))

    return Acceptance(
        inbox_entry(event),
        now,
        decide,
        needs_playbook=event.type in (HrEventType.HIRE, HrEventType.TRANSFER),
    )


def inbox_entry(event: HrEvent, **fields: Any) -> InboxEntry:
    """The inbox row of ``event``; ``fields`` set its outcome for rows that start no run."""
    return InboxEntry(
        source=event.source,
        source_event_id=event.event_id,
        type=str(event.type),
        worker_id=event.worker_id,
        payload_sha256=event.payload_sha256,
        effective_at=event.effective_at,
        reason=event.reason,
        **fields,
    )


def _run(kinds: Kinds, plan: Plan, event: HrEvent, reason: str | None) -> NewRun:
    return kinds.new_run(
        plan,
        worker_id=event.worker_id,
        actor=f"hr:{event.source}",
        source=event.source,
        source_event_id=event.event_id,
        payload_sha256=event.payload_sha256,
        reason=reason,
        effective_at=event.effective_at,
    )
