"""The HR inbox beyond ``Store.accept_hr_event``: rows that start nothing (ignored, unmapped),
deliveries awaiting a vendor look-up (pending), the vendor-id links of people, and the queries
behind ``GET /v1/hr/events`` and ``/metrics``.

Narrow functions over a ``Store``'s sessions, so they move with the store wherever it goes.
Every write is one short transaction; a row is never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from lifecycle.hr.event import HrEvent, HrEventType
from lifecycle.models import HrPersonLink, InboxEvent, InboxOutcome, WorkerRow
from lifecycle.store import Intake, Store, new_id


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """A row to record that is not the start of a run."""

    source: str
    source_event_id: str
    type: str
    worker_id: str
    payload_sha256: str
    outcome: InboxOutcome
    detail: str
    effective_at: datetime | None = None
    reason: str | None = None
    pending_json: str | None = None
    next_attempt_at: datetime | None = None


def record(
    store: Store, entry: InboxEntry, now: datetime, *, replace_pending: str | None = None
) -> Intake:
    """Store ``entry`` unless its (source, event id) is already in the inbox: the same payload
    returns that row's outcome as a duplicate, another payload is stored as a ``conflict``
    (as ``Store.accept_hr_event`` does). With ``replace_pending``, that pending row becomes
    ``entry`` in place (its id and receipt time are kept)."""
    try:
        return _record(store, entry, now, replace_pending)
    except IntegrityError:
        return _record(store, entry, now, replace_pending)  # a concurrent twin won


def _record(store: Store, entry: InboxEntry, now: datetime, replace_pending: str | None) -> Intake:
    with store.session() as s:
        if replace_pending is not None:
            row = s.get(InboxEvent, replace_pending)
            if row is not None and row.outcome == InboxOutcome.PENDING:
                row.type, row.worker_id = entry.type, entry.worker_id
                row.outcome, row.detail = entry.outcome, entry.detail
                row.effective_at, row.reason = entry.effective_at, entry.reason
                row.pending_json = entry.pending_json
                row.next_attempt_at = entry.next_attempt_at
                s.add(row)
                return Intake(
                    row.id, None, duplicate=False, outcome=entry.outcome, detail=row.detail
                )
        earlier = Store.earlier_delivery(s, _as_event(entry), now)
        if earlier is not None:  # a re-delivery, or the same id with another payload
            return earlier
        row = InboxEvent(
            id=new_id(),
            source=entry.source,
            source_event_id=entry.source_event_id,
            type=entry.type,
            worker_id=entry.worker_id,
            received_at=now,
            effective_at=entry.effective_at,
            reason=entry.reason,
            payload_sha256=entry.payload_sha256,
            outcome=entry.outcome,
            detail=entry.detail,
            pending_json=entry.pending_json,
            attempts=1 if entry.outcome is InboxOutcome.PENDING else None,
            next_attempt_at=entry.next_attempt_at,
        )
        s.add(row)
        s.flush()
        return Intake(row.id, None, duplicate=False, outcome=entry.outcome, detail=row.detail)


def _as_event(entry: InboxEntry) -> HrEvent:
    return HrEvent(
        source=entry.source,
        event_id=entry.source_event_id,
        type=HrEventType(entry.type),
        worker_id=entry.worker_id,
        payload_sha256=entry.payload_sha256,
        effective_at=entry.effective_at,
        reason=entry.reason,
    )


def claim_pending(
    store: Store, now: datetime, hold_until: datetime, limit: int
) -> list[InboxEvent]:
    """Pending rows due for a retry; their next attempt moves to ``hold_until`` so another
    replica (or the next poll) leaves them alone while this one works on them."""
    with store.session() as s:
        query = (
            select(InboxEvent)
            .where(
                InboxEvent.outcome == InboxOutcome.PENDING,
                col(InboxEvent.next_attempt_at) <= now,
            )
            .order_by(col(InboxEvent.next_attempt_at))
            .limit(limit)
        )
        if store.is_postgres:
            query = query.with_for_update(skip_locked=True)
        rows = list(s.exec(query).all())
        for row in rows:
            row.next_attempt_at = hold_until
            s.add(row)
        return rows


def reschedule(
    store: Store,
    inbox_id: str,
    *,
    attempts: int,
    next_attempt_at: datetime,
    detail: str,
    escalated_at: datetime | None = None,
) -> None:
    """A pending row's look-up failed again: when to try next, and why it is waiting."""
    values: dict[str, object] = {
        "attempts": attempts,
        "next_attempt_at": next_attempt_at,
        "detail": detail,
    }
    if escalated_at is not None:
        values["escalated_at"] = escalated_at
    with store.session() as s:
        s.exec(
            update(InboxEvent)
            .where(col(InboxEvent.id) == inbox_id, col(InboxEvent.outcome) == InboxOutcome.PENDING)
            .values(**values)
        )


def worker_by_email(store: Store, email: str) -> WorkerRow | None:
    """The roster worker with this work email (case-insensitive), if exactly one has it."""
    with store.session() as s:
        rows = s.exec(
            select(WorkerRow).where(func.lower(WorkerRow.email) == email.strip().lower()).limit(2)
        ).all()
        return rows[0] if len(rows) == 1 else None


def linked_worker(store: Store, source: str, person_id: str) -> str | None:
    with store.session() as s:
        link = s.get(HrPersonLink, (source, person_id))
        return link.worker_id if link else None


def link_person(store: Store, source: str, person_id: str, worker_id: str, now: datetime) -> None:
    """Remember that ``source`` knows ``worker_id`` as ``person_id`` (latest wins)."""
    with store.session() as s:
        s.merge(
            HrPersonLink(source=source, person_id=person_id, worker_id=worker_id, linked_at=now)
        )


def get(store: Store, inbox_id: str) -> InboxEvent | None:
    with store.session() as s:
        return s.get(InboxEvent, inbox_id)


def list_events(
    store: Store,
    *,
    source: str | None = None,
    outcome: str | None = None,
    worker_id: str | None = None,
    type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[InboxEvent]:
    """Inbox rows, newest first, filtered by whatever is given."""
    with store.session() as s:
        query = select(InboxEvent)
        if source:
            query = query.where(InboxEvent.source == source)
        if outcome:
            query = query.where(InboxEvent.outcome == outcome)
        if worker_id:
            query = query.where(InboxEvent.worker_id == worker_id)
        if type:
            query = query.where(InboxEvent.type == type)
        if since is not None:
            query = query.where(col(InboxEvent.received_at) >= since)
        if until is not None:
            query = query.where(col(InboxEvent.received_at) < until)
        query = (
            query.order_by(col(InboxEvent.received_at).desc(), col(InboxEvent.id))
            .offset(offset)
            .limit(limit)
        )
        return list(s.exec(query).all())


def counts(store: Store) -> dict[tuple[str, str], int]:
    """Inbox rows by (source, outcome), for ``/metrics``."""
    with store.session() as s:
        rows = s.exec(
            select(InboxEvent.source, InboxEvent.outcome, func.count()).group_by(
                col(InboxEvent.source), col(InboxEvent.outcome)
            )
        ).all()
        return {(source, outcome or "unknown"): n for source, outcome, n in rows}
