"""The workforce roster and account links, API tokens, and the scheduler's job times."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from lifecycle.domain import ApiToken, Link, RosterCounts, RosterEntry, Worker, WorkerStatus
from lifecycle.exceptions import StoreError
from lifecycle.store.sql import mapping
from lifecycle.store.sql.database import Database
from lifecycle.store.sql.tables import ApiTokenRow, LinkRow, SchedulerJobRow, WorkerRow

WORKERS = WorkerRow.__table__  # type: ignore[attr-defined]
WORKER_BY_ID = sa_select(*WORKERS.columns).where(WORKERS.c.worker_id == bindparam("worker_id"))
ROSTER_FIELDS = ("name", "email", "job_code", "engagement", "vendor", "status")


class RosterQueries(Database):
    def get_worker(self, worker_id: str) -> Worker | None:
        with self.reading() as s:
            # Core, not the ORM: every HR event maps its person through this.
            row = s.execute(WORKER_BY_ID, {"worker_id": worker_id}).mappings().first()
            return Worker(**row) if row is not None else None

    def upsert_worker(self, worker: Worker) -> None:
        with self.session() as s:
            s.merge(mapping.worker_row(worker))

    def seed_workers(self, workers: Sequence[Worker]) -> int:
        with self.session() as s:
            known = set(s.exec(select(WorkerRow.worker_id)).all())
            fresh = [w for w in workers if w.worker_id not in known]
            s.add_all(mapping.worker_row(w) for w in fresh)
            return len(fresh)

    def workers(self) -> list[Worker]:
        with self.session() as s:
            rows = s.exec(select(WorkerRow).order_by(col(WorkerRow.worker_id))).all()
            return [mapping.worker(row) for row in rows]

    def import_workers(
        self, entries: Sequence[RosterEntry], *, complete: bool, now: datetime
    ) -> RosterCounts:
        with self.session() as s:
            known = {w.worker_id: mapping.worker(w) for w in s.exec(select(WorkerRow)).all()}
            added = updated = absent = 0
            for entry in entries:
                current = known.get(entry.worker_id)
                given = {f: getattr(entry, f) for f in ROSTER_FIELDS}
                values = {f: v for f, v in given.items() if v is not None}
                if current is None:
                    worker = Worker(worker_id=entry.worker_id, updated_at=now, **values)
                    added += 1
                else:
                    # A blank cell does not erase what we know.
                    worker = replace(current, updated_at=now, **values)
                    updated += 1
                known[entry.worker_id] = worker
                s.merge(mapping.worker_row(worker))
            if complete:
                listed = {e.worker_id for e in entries}
                for worker_id, current in known.items():
                    if worker_id not in listed and current.status == WorkerStatus.ACTIVE:
                        s.merge(
                            mapping.worker_row(
                                replace(current, status=WorkerStatus.ABSENT, updated_at=now)
                            )
                        )
                        absent += 1
            return RosterCounts(added, updated, absent)

    def link_account(self, link: Link) -> None:
        with self.session() as s:
            s.merge(mapping.link_row(link))

    def links_by_account(self) -> dict[tuple[str, str], str]:
        with self.session() as s:
            return {
                (link.connector, link.account_id): link.worker_id
                for link in s.exec(select(LinkRow)).all()
            }

    # ------------------------------------------------------------------ tokens

    def add_token(self, name: str, role: str, token_sha256: str, now: datetime) -> None:
        try:
            with self.session() as s:
                s.add(ApiTokenRow(name=name, role=role, token_sha256=token_sha256, created_at=now))
        except IntegrityError as exc:
            raise StoreError(f"a token named {name!r} already exists") from exc

    def token_by_hash(self, token_sha256: str) -> ApiToken | None:
        with self.session() as s:
            row = s.exec(
                select(ApiTokenRow).where(
                    ApiTokenRow.token_sha256 == token_sha256,
                    col(ApiTokenRow.revoked_at).is_(None),
                )
            ).first()
            return mapping.token(row) if row is not None else None

    # ------------------------------------------------------------------ scheduler job times

    def job_last_run(self, name: str) -> datetime | None:
        with self.session() as s:
            row = s.get(SchedulerJobRow, name)
            return row.last_run_at if row else None

    def mark_job_run(self, name: str, at: datetime) -> None:
        with self.session() as s:
            s.merge(SchedulerJobRow(name=name, last_run_at=at))
