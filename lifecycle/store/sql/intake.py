"""The HR inbox: an accepted event, its roster change and its run, in one transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from lifecycle.domain import InboxEntry, Intake, IntakeDecision, Worker
from lifecycle.store.sql import mapping
from lifecycle.store.sql.runs import RunQueries, new_id
from lifecycle.store.sql.tables import InboxRow, WorkerRow

Decide = Callable[[Worker | None, str | None], IntakeDecision]


class IntakeQueries(RunQueries):
    def accept_hr_event(self, event: InboxEntry, now: datetime, decide: Decide) -> Intake:
        try:
            return self._accept(event, now, decide)
        except IntegrityError:
            # A concurrent delivery of the same event won the race; answer with its run.
            return self._accept(event, now, decide)

    def _accept(self, event: InboxEntry, now: datetime, decide: Decide) -> Intake:
        with self.session() as s:
            existing = s.exec(
                select(InboxRow).where(
                    InboxRow.source == event.source,
                    InboxRow.source_event_id == event.source_event_id,
                )
            ).first()
            if existing is not None:
                return Intake(existing.id, existing.run_id, duplicate=True)
            row = s.get(WorkerRow, event.worker_id)
            known = mapping.worker(row) if row is not None else None
            decision = decide(known, self.playbook_of(s, event.worker_id))
            s.merge(mapping.worker_row(decision.worker))
            inbox = InboxRow(
                id=new_id(),
                source=event.source,
                source_event_id=event.source_event_id,
                type=event.type,
                worker_id=event.worker_id,
                received_at=now,
                effective_at=event.effective_at,
                reason=event.reason,
                payload_sha256=event.payload_sha256,
            )
            if decision.run is not None:
                inbox.run_id = self.insert_run(s, decision.run, now).id
            s.add(inbox)
            s.flush()
            return Intake(inbox.id, inbox.run_id, duplicate=False)
