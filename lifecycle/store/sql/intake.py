"""The HR inbox: an accepted event with its roster change and its run, in one transaction; rows
that start nothing (ignored, unmapped, pending, conflict); pending look-ups; the vendor-id
links of people; and the queries behind ``GET /v1/hr/events`` and ``/metrics``.

Every write is one short transaction; an inbox row is never deleted (a pending row is settled
in place, keeping its id and receipt time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, insert, text, update
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from lifecycle.domain import (
    InboxEntry,
    InboxEvent,
    InboxOutcome,
    Intake,
    IntakeDecision,
    RunKind,
    RunStatus,
    Worker,
)
from lifecycle.store.ports import Acceptance
from lifecycle.store.sql import mapping
from lifecycle.store.sql.roster import (
    IN_CHUNK,
    WORKER_BY_ID,
    WORKER_UPDATE,
    WORKERS,
    workers_in,
)
from lifecycle.store.sql.runs import RUNS, STEPS, RunQueries, new_id
from lifecycle.store.sql.tables import HrPersonLinkRow, InboxRow, WorkerRow

Decide = Callable[[Worker | None, str | None], IntakeDecision]
INBOX = InboxRow.__table__  # type: ignore[attr-defined]
PERSON_LINKS = HrPersonLinkRow.__table__  # type: ignore[attr-defined]
DELIVERY_COLUMNS = tuple(
    INBOX.c[name] for name in ("id", "run_id", "outcome", "detail", "payload_sha256", "received_at")
)
"""What ``earlier_intake`` compares of an earlier delivery (``Delivery``)."""
DELIVERIES = (
    sa_select(*DELIVERY_COLUMNS)
    .where(
        INBOX.c.source == bindparam("source"),
        INBOX.c.source_event_id == bindparam("source_event_id"),
    )
    .order_by(INBOX.c.received_at)
)
DELIVERIES_OF = (
    sa_select(INBOX.c.source, INBOX.c.source_event_id, *DELIVERY_COLUMNS)
    .where(INBOX.c.source_event_id.in_(bindparam("ids", expanding=True)))
    .order_by(INBOX.c.received_at)
)
"""The deliveries of many event ids at once (``accept_hr_events``; filtered by source after)."""
PROVISIONING = (RunKind.ONBOARD, RunKind.TRANSFER)
PLAYBOOKS_OF = (
    sa_select(RUNS.c.worker_id, RUNS.c.playbook_name)
    .where(
        RUNS.c.worker_id.in_(bindparam("ids", expanding=True)),
        RUNS.c.kind.in_(PROVISIONING),
        RUNS.c.status.in_(
            [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.VERIFIED, RunStatus.INCOMPLETE]
        ),
    )
    .order_by(RUNS.c.received_at)
)
"""``PLAYBOOK_OF`` of many workers: every such run, oldest first (the last one counts)."""
LOCKS = text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k")
"""PostgreSQL: the advisory locks of many (source, event id)s, taken in key order."""
LINKED = sa_select(PERSON_LINKS.c.worker_id).where(
    PERSON_LINKS.c.source == bindparam("source"),
    PERSON_LINKS.c.person_id == bindparam("person_id"),
)


def inbox_values(entry: InboxEntry, now: datetime, **fields: Any) -> dict[str, Any]:
    """The inbox row of ``entry`` received ``now`` as column values; ``fields`` set the rest
    (outcome, ...); columns left out are NULL."""
    return {
        "id": new_id(),
        "source": entry.source,
        "source_event_id": entry.source_event_id,
        "type": entry.type,
        "worker_id": entry.worker_id,
        "received_at": now,
        "effective_at": entry.effective_at,
        "reason": entry.reason,
        "payload_sha256": entry.payload_sha256,
        "run_id": None,
        "outcome": None,
        "detail": None,
    } | fields


def inbox_row(entry: InboxEntry, now: datetime, **fields: Any) -> InboxRow:
    """The inbox row of ``entry`` received ``now``; ``fields`` set the rest (outcome, ...)."""
    return InboxRow(**inbox_values(entry, now, **fields))


class Delivery(NamedTuple):
    """An inbox row of an earlier delivery, as ``earlier_intake`` compares it."""

    id: str
    run_id: str | None
    outcome: str | None
    detail: str | None
    payload_sha256: str
    received_at: datetime


def earlier_intake(
    rows: Sequence[Any], event: InboxEntry, now: datetime
) -> tuple[Intake | None, dict[str, Any] | None]:
    """What earlier deliveries ``rows`` (oldest first) of ``event``'s (source, event id) make
    of it: None if there are none; the first outcome again for the same payload (a
    re-delivery); for another payload a ``conflict``, with the inbox row to store for it.

    Idempotency means the same event: only the same payload is a re-delivery. Another
    payload under a known id is never taken for a duplicate (it could be another worker's
    termination); it is stored as a conflict, once per distinct payload."""
    if not rows:
        return None, None
    first = next((r for r in rows if r.outcome != InboxOutcome.CONFLICT), rows[0])
    same = next((r for r in rows if r.payload_sha256 == event.payload_sha256), None)
    if same is not None:
        intake = Intake(
            same.id,
            same.run_id,
            duplicate=True,
            outcome=InboxOutcome(same.outcome or InboxOutcome.RUN),
            detail=same.detail,
            first_event_id=first.id if same is not first else None,
        )
        return intake, None
    detail = (
        f"event id {event.source_event_id!r} was first delivered at "
        f"{first.received_at.isoformat()} with payload sha256 {first.payload_sha256}; "
        f"this delivery's payload differs (sha256 {event.payload_sha256})"
    )
    conflict = inbox_values(event, now, outcome=InboxOutcome.CONFLICT, detail=detail)
    intake = Intake(
        conflict["id"],
        None,
        duplicate=False,
        outcome=InboxOutcome.CONFLICT,
        detail=detail,
        first_event_id=first.id,
    )
    return intake, conflict


def _lock_key(event: InboxEntry) -> int:
    """The PostgreSQL advisory lock of ``event``'s (source, event id)."""
    digest = hashlib.sha256(f"{event.source}\n{event.source_event_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class _Writes:
    """The rows a batch of ``accept_hr_events`` writes, one executemany per table."""

    def __init__(self) -> None:
        self.new_workers: dict[str, dict[str, Any]] = {}
        self.changed_workers: dict[str, dict[str, Any]] = {}
        self.runs: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.inbox: list[dict[str, Any]] = []

    def worker(self, known: Worker | None, worker: Worker, *, created: bool) -> None:
        """The roster row after an item (``created``: not in the roster before the batch)."""
        wid = worker.worker_id
        if created or wid in self.new_workers:
            self.new_workers[wid] = asdict(worker)
        elif worker != known:
            self.changed_workers[wid] = asdict(worker) | {"b_worker_id": wid}

    def flush(self, conn: Any) -> None:
        # Parents first: runs and inbox rows refer to workers and runs. Workers in id order:
        # two replicas' batches that change the same workers lock them in the same order.
        for statement, rows in (
            (insert(WORKERS), [self.new_workers[w] for w in sorted(self.new_workers)]),
            (WORKER_UPDATE, [self.changed_workers[w] for w in sorted(self.changed_workers)]),
            (insert(RUNS), self.runs),
            (insert(STEPS), self.steps),
            (insert(INBOX), self.inbox),
        ):
            # One executemany per set of columns (rows leave out the columns they keep NULL
            # or at their default, and a run awaiting approval sets more than one that does not).
            shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
            for row in rows:
                shapes.setdefault(tuple(row), []).append(row)
            for same in shapes.values():
                conn.execute(statement, same)


def _delivery(row: Mapping[str, Any]) -> Delivery:
    return Delivery(
        row["id"],
        row["run_id"],
        row["outcome"],
        row["detail"],
        row["payload_sha256"],
        row["received_at"],
    )


class IntakeQueries(RunQueries):
    def accept_hr_event(
        self,
        event: InboxEntry,
        now: datetime,
        decide: Decide,
        *,
        replace_pending: str | None = None,
    ) -> Intake:
        try:
            return self._accept(event, now, decide, replace_pending)
        except IntegrityError:
            # A concurrent delivery of the same event won the race; answer with its run.
            return self._accept(event, now, decide, replace_pending)

    def _accept(
        self, event: InboxEntry, now: datetime, decide: Decide, replace_pending: str | None
    ) -> Intake:
        # Core statements throughout: this transaction runs for every HR event.
        with self.session() as s:
            inbox_id = new_id()
            pending = s.get(InboxRow, replace_pending) if replace_pending else None
            if pending is not None and pending.outcome == InboxOutcome.PENDING:
                inbox_id, now = pending.id, pending.received_at
                s.delete(pending)
                s.flush()
            earlier = self._earlier_delivery(s, event, now)
            if earlier is not None:
                return earlier
            found = s.execute(WORKER_BY_ID, {"worker_id": event.worker_id}).mappings().first()
            known = Worker(**found) if found is not None else None
            decision = decide(known, self.playbook_of(s, event.worker_id))
            values = asdict(decision.worker)
            if known is None:
                s.execute(insert(WORKERS), [values])
            elif decision.worker != known:
                s.execute(WORKER_UPDATE, values | {"b_worker_id": known.worker_id})
            inbox = inbox_values(event, now, id=inbox_id)
            if decision.run is not None:
                inbox["run_id"] = self.insert_run(s, decision.run, now).id
                inbox["outcome"] = InboxOutcome.RUN
            else:
                inbox["outcome"], inbox["detail"] = InboxOutcome.IGNORED, decision.ignored
            s.execute(insert(INBOX), [inbox])
            return Intake(
                inbox_id,
                inbox["run_id"],
                duplicate=False,
                outcome=InboxOutcome(inbox["outcome"]),
                detail=inbox["detail"],
            )

    def accept_hr_events(
        self, items: Sequence[Acceptance], prefetched: Mapping[str, Worker] | None = None
    ) -> list[Intake | Exception]:
        # The group commit's fast path: a batch of deliveries read with one statement per
        # table (earlier deliveries, workers, playbooks) and written with one executemany per
        # table (workers, runs, steps, inbox), with no savepoint per event. The rules are
        # ``_accept``'s, applied in order to an in-memory view that each item updates.
        with self.session() as s:
            conn = s.connection()
            if self.is_postgres and items:
                keys = sorted({_lock_key(item.entry) for item in items})
                conn.execute(LOCKS, {"keys": keys})
            earlier = self._deliveries(conn, [item.entry for item in items])
            ids = {item.entry.worker_id for item in items}
            if prefetched is not None and ids <= prefetched.keys():
                workers = {w: prefetched[w] for w in ids}  # a copy: the batch updates it
            else:
                workers = workers_in(conn, ids)
            playbooks = self._playbooks(
                conn, {item.entry.worker_id for item in items if item.needs_playbook}
            )
            writes = _Writes()
            results: list[Intake | Exception] = []
            for item in items:
                entry, now = item.entry, item.now
                key = (entry.source, entry.source_event_id)
                seen = earlier.setdefault(key, [])
                intake, conflict = earlier_intake(seen, entry, now)
                if conflict is not None:
                    writes.inbox.append(conflict)
                    seen.append(_delivery(conflict))
                if intake is not None:
                    results.append(intake)
                    continue
                wid = entry.worker_id
                known = workers.get(wid)
                try:
                    decision = item.decide(known, playbooks.get(wid))
                except Exception as exc:  # handed back to its caller
                    results.append(exc)
                    continue
                writes.worker(known, decision.worker, created=wid not in workers)
                workers[wid] = decision.worker
                inbox = inbox_values(entry, now)
                run = decision.run
                if run is not None:
                    inbox["run_id"] = run_id = new_id()
                    inbox["outcome"] = InboxOutcome.RUN
                    writes.runs.append(mapping.new_run_values(run_id, run, self.plans, now))
                    writes.steps.extend(mapping.new_step_values(run_id, st) for st in run.steps)
                    if run.kind in PROVISIONING and run.plan.playbook is not None:
                        playbooks[wid] = run.plan.playbook.name
                else:
                    inbox["outcome"], inbox["detail"] = InboxOutcome.IGNORED, decision.ignored
                writes.inbox.append(inbox)
                seen.append(_delivery(inbox))
                results.append(
                    Intake(
                        inbox["id"],
                        inbox["run_id"],
                        duplicate=False,
                        outcome=InboxOutcome(inbox["outcome"]),
                        detail=inbox["detail"],
                    )
                )
            writes.flush(conn)
            return results

    def _deliveries(
        self, conn: Any, entries: Sequence[InboxEntry]
    ) -> dict[tuple[str, str], list[Any]]:
        """The earlier deliveries of ``entries``' (source, event id)s, oldest first."""
        wanted = {(e.source, e.source_event_id) for e in entries}
        ids = sorted({event_id for _, event_id in wanted})
        found: dict[tuple[str, str], list[Any]] = {}
        for i in range(0, len(ids), IN_CHUNK):
            for row in conn.execute(DELIVERIES_OF, {"ids": ids[i : i + IN_CHUNK]}):
                key = (row.source, row.source_event_id)
                if key in wanted:
                    found.setdefault(key, []).append(_delivery(row._mapping))
        return found

    @staticmethod
    def _playbooks(conn: Any, worker_ids: set[str]) -> dict[str, str | None]:
        """``playbook_of`` for each of ``worker_ids``."""
        found: dict[str, str | None] = {}
        ids = sorted(worker_ids)
        for i in range(0, len(ids), IN_CHUNK):
            # Oldest first: the latest run's playbook is the one left in the dict.
            for row in conn.execute(PLAYBOOKS_OF, {"ids": ids[i : i + IN_CHUNK]}):
                found[row.worker_id] = row.playbook_name
        return found

    def record_inbox(
        self, entry: InboxEntry, now: datetime, *, replace_pending: str | None = None
    ) -> Intake:
        try:
            return self._record(entry, now, replace_pending)
        except IntegrityError:
            return self._record(entry, now, replace_pending)  # a concurrent twin won

    def _record(self, entry: InboxEntry, now: datetime, replace_pending: str | None) -> Intake:
        outcome = entry.outcome or InboxOutcome.IGNORED
        with self.session() as s:
            if replace_pending is not None:
                row = s.get(InboxRow, replace_pending)
                if row is not None and row.outcome == InboxOutcome.PENDING:
                    row.type, row.worker_id = entry.type, entry.worker_id
                    row.outcome, row.detail = outcome, entry.detail
                    row.effective_at, row.reason = entry.effective_at, entry.reason
                    row.pending_json = entry.pending_json
                    row.next_attempt_at = entry.next_attempt_at
                    s.add(row)
                    return Intake(row.id, None, duplicate=False, outcome=outcome, detail=row.detail)
            earlier = self._earlier_delivery(s, entry, now)
            if earlier is not None:  # a re-delivery, or the same id with another payload
                return earlier
            row = inbox_row(
                entry,
                now,
                outcome=outcome,
                detail=entry.detail,
                pending_json=entry.pending_json,
                attempts=1 if outcome is InboxOutcome.PENDING else None,
                next_attempt_at=entry.next_attempt_at,
            )
            s.add(row)
            s.flush()
            return Intake(row.id, None, duplicate=False, outcome=outcome, detail=row.detail)

    def _earlier_delivery(self, s: Session, event: InboxEntry, now: datetime) -> Intake | None:
        """What an earlier delivery of this (source, event id) became, if there was one
        (``earlier_intake``); a conflicting payload is stored as its ``conflict`` row."""
        if self.is_postgres:
            # Two different payloads under one new id, at once, must not both become "first".
            s.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=_lock_key(event)))  # type: ignore[call-overload]
        rows = s.execute(
            DELIVERIES, {"source": event.source, "source_event_id": event.source_event_id}
        ).all()
        intake, conflict = earlier_intake(rows, event, now)
        if conflict is not None:
            s.execute(insert(INBOX), [conflict])
        return intake

    # ------------------------------------------------------------------ pending look-ups

    def claim_pending(self, now: datetime, hold_until: datetime, limit: int) -> list[InboxEvent]:
        """Pending rows due for a retry; their next attempt moves to ``hold_until`` so another
        replica (or the next poll) leaves them alone while this one works on them."""
        with self.session() as s:
            query = (
                select(InboxRow)
                .where(
                    InboxRow.outcome == InboxOutcome.PENDING,
                    col(InboxRow.next_attempt_at) <= now,
                )
                .order_by(col(InboxRow.next_attempt_at))
                .limit(limit)
            )
            if self.is_postgres:
                query = query.with_for_update(skip_locked=True)
            rows = list(s.exec(query).all())
            claimed = [mapping.inbox_event(row) for row in rows]
            for row in rows:
                row.next_attempt_at = hold_until
                s.add(row)
            return claimed

    def reschedule_pending(
        self,
        inbox_id: str,
        *,
        attempts: int,
        next_attempt_at: datetime,
        detail: str,
        escalated_at: datetime | None = None,
    ) -> None:
        values: dict[str, object] = {
            "attempts": attempts,
            "next_attempt_at": next_attempt_at,
            "detail": detail,
        }
        if escalated_at is not None:
            values["escalated_at"] = escalated_at
        with self.session() as s:
            s.exec(
                update(InboxRow)
                .where(col(InboxRow.id) == inbox_id, col(InboxRow.outcome) == InboxOutcome.PENDING)
                .values(**values)
            )

    # ------------------------------------------------------------------ people

    def worker_by_email(self, email: str) -> Worker | None:
        with self.reading() as s:
            rows = s.exec(
                select(WorkerRow)
                .where(func.lower(WorkerRow.email) == email.strip().lower())
                .limit(2)
            ).all()
            return mapping.worker(rows[0]) if len(rows) == 1 else None

    def linked_worker(self, source: str, person_id: str) -> str | None:
        with self.reading() as s:
            found: str | None = s.execute(
                LINKED, {"source": source, "person_id": person_id}
            ).scalar()
            return found

    def link_person(self, source: str, person_id: str, worker_id: str, now: datetime) -> None:
        with self.session() as s:
            key = {"source": source, "person_id": person_id}
            if s.execute(LINKED, key).scalar() == worker_id:
                return  # already known: most events are about people seen before
            s.execute(
                self.upsert(PERSON_LINKS, ("source", "person_id")),
                [key | {"worker_id": worker_id, "linked_at": now}],
            )

    # ------------------------------------------------------------------ reading the inbox

    def inbox_event(self, inbox_id: str) -> InboxEvent | None:
        with self.session() as s:
            row = s.get(InboxRow, inbox_id)
            return mapping.inbox_event(row) if row is not None else None

    def list_inbox(
        self,
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
        with self.session() as s:
            query = select(InboxRow)
            if source:
                query = query.where(InboxRow.source == source)
            if outcome:
                query = query.where(InboxRow.outcome == outcome)
            if worker_id:
                query = query.where(InboxRow.worker_id == worker_id)
            if type:
                query = query.where(InboxRow.type == type)
            if since is not None:
                query = query.where(col(InboxRow.received_at) >= since)
            if until is not None:
                query = query.where(col(InboxRow.received_at) < until)
            query = (
                query.order_by(col(InboxRow.received_at).desc(), col(InboxRow.id))
                .offset(offset)
                .limit(limit)
            )
            return [mapping.inbox_event(row) for row in s.exec(query).all()]

    def inbox_counts(self) -> dict[tuple[str, str], int]:
        with self.session() as s:
            rows = s.exec(
                select(InboxRow.source, InboxRow.outcome, func.count()).group_by(
                    col(InboxRow.source), col(InboxRow.outcome)
                )
            ).all()
            return {(source, outcome or "unknown"): n for source, outcome, n in rows}
