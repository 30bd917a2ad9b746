"""The workforce roster and account links, API tokens, and the scheduler's job times."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, replace
from datetime import datetime

from sqlalchemy import bindparam, func, insert, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from lifecycle.domain import ApiToken, Link, RosterCounts, RosterEntry, Worker, WorkerStatus
from lifecycle.exceptions import ConflictError, NotFoundError
from lifecycle.store.sql import mapping
from lifecycle.store.sql.database import Database
from lifecycle.store.sql.tables import ApiTokenRow, LinkRow, SchedulerJobRow, WorkerRow

WORKERS = WorkerRow.__table__  # type: ignore[attr-defined]
WORKER_BY_ID = sa_select(*WORKERS.columns).where(WORKERS.c.worker_id == bindparam("worker_id"))
WORKERS_BY_IDS = sa_select(*WORKERS.columns).where(
    WORKERS.c.worker_id.in_(bindparam("ids", expanding=True))
)
WORKER_UPDATE = (
    update(WORKERS)
    .where(WORKERS.c.worker_id == bindparam("b_worker_id"))
    .values({c.name: bindparam(c.name) for c in WORKERS.columns})
)
IN_CHUNK = 500
"""Ids per ``IN (...)`` list (SQLite allows a few thousand bound values per statement)."""
ROSTER_FIELDS = ("name", "email", "job_code", "engagement", "vendor", "status")


def workers_in(conn: Connection, worker_ids: Collection[str]) -> dict[str, Worker]:
    """The roster workers among ``worker_ids``, read on ``conn`` (500 ids per statement)."""
    ids = list(dict.fromkeys(worker_ids))
    found: dict[str, Worker] = {}
    for i in range(0, len(ids), IN_CHUNK):
        rows = conn.execute(WORKERS_BY_IDS, {"ids": ids[i : i + IN_CHUNK]}).mappings()
        found.update((row["worker_id"], Worker(**row)) for row in rows)
    return found


class RosterQueries(Database):
    def get_worker(self, worker_id: str) -> Worker | None:
        with self.reading() as s:
            # Core, not the ORM: every HR event maps its person through this.
            row = s.execute(WORKER_BY_ID, {"worker_id": worker_id}).mappings().first()
            return Worker(**row) if row is not None else None

    def workers_by_id(self, worker_ids: Collection[str]) -> dict[str, Worker]:
        with self.reading() as s:
            return workers_in(s.connection(), worker_ids)

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
        # Core rows, mapped as they stream in: with ORM objects a roster of 100,000 workers
        # took a few hundred MB at its peak.
        with self.reading() as s:
            result = s.connection().execute(
                sa_select(WORKERS).order_by(WORKERS.c.worker_id).execution_options(yield_per=2000)
            )
            return [Worker(**row) for row in result.mappings()]

    def import_workers(
        self, entries: Sequence[RosterEntry], *, complete: bool, now: datetime
    ) -> RosterCounts:
        # Only the rows named are read (an import streams its file in batches), and written
        # with Core executemany statements.
        listed = [e.worker_id for e in entries]
        with self.session() as s:
            conn = s.connection()
            known: dict[str, Worker] = {}
            for start in range(0, len(listed), IN_CHUNK):
                for row in conn.execute(
                    sa_select(WORKERS).where(
                        WORKERS.c.worker_id.in_(listed[start : start + IN_CHUNK])
                    )
                ).mappings():
                    known[row["worker_id"]] = Worker(**row)
            added: list[dict[str, object]] = []
            updated: list[dict[str, object]] = []
            for entry in entries:
                current = known.get(entry.worker_id)
                given = {f: getattr(entry, f) for f in ROSTER_FIELDS}
                values = {f: v for f, v in given.items() if v is not None}
                if current is None:
                    worker = Worker(worker_id=entry.worker_id, updated_at=now, **values)
                    added.append(asdict(worker))
                else:
                    # A blank cell does not erase what we know.
                    worker = replace(current, updated_at=now, **values)
                    updated.append(asdict(worker) | {"b_worker_id": worker.worker_id})
                known[entry.worker_id] = worker
            if added:
                conn.execute(insert(WORKERS), added)
            if updated:
                conn.execute(WORKER_UPDATE, updated)
        absent = self.mark_absent(set(listed), now) if complete else 0
        return RosterCounts(len(added), len(updated), absent)

    def mark_absent(self, listed: Collection[str], now: datetime) -> int:
        """Active workers not in ``listed`` become ``absent``; returns how many. Reads only
        worker ids, and writes in one transaction."""
        with self.session() as s:
            conn = s.connection()
            active = conn.execute(
                sa_select(WORKERS.c.worker_id).where(WORKERS.c.status == WorkerStatus.ACTIVE)
            ).scalars()
            gone = [{"b_worker_id": w} for w in active if w not in listed]
            if gone:
                conn.execute(
                    update(WORKERS)
                    .where(WORKERS.c.worker_id == bindparam("b_worker_id"))
                    .values(status=WorkerStatus.ABSENT, updated_at=now),
                    gone,
                )
            return len(gone)

    def find_workers(
        self, *, q: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[Worker]:
        with self.session() as s:
            query = select(WorkerRow)
            if status is not None:
                query = query.where(WorkerRow.status == status)
            if q:
                like = (
                    "%"
                    + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                    + "%"
                )
                query = query.where(
                    or_(
                        func.lower(WorkerRow.worker_id).like(like, escape="\\"),
                        func.lower(func.coalesce(WorkerRow.name, "")).like(like, escape="\\"),
                        func.lower(func.coalesce(WorkerRow.email, "")).like(like, escape="\\"),
                    )
                )
            rows = s.exec(
                query.order_by(col(WorkerRow.worker_id)).offset(offset).limit(limit)
            ).all()
            return [mapping.worker(row) for row in rows]

    def links_of(self, worker_id: str) -> list[Link]:
        with self.session() as s:
            rows = s.exec(
                select(LinkRow)
                .where(LinkRow.worker_id == worker_id)
                .order_by(col(LinkRow.connector))
            ).all()
            return [mapping.link(row) for row in rows]

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

    def add_token(
        self,
        name: str,
        role: str,
        token_sha256: str,
        now: datetime,
        *,
        expires_at: datetime | None = None,
        replace: bool = False,
    ) -> tuple[ApiToken, ApiToken | None]:
        try:
            with self.session() as s:
                live = s.exec(
                    select(ApiTokenRow).where(
                        ApiTokenRow.name == name, col(ApiTokenRow.revoked_at).is_(None)
                    )
                ).first()
                replaced = None
                if live is not None:
                    if not replace:
                        raise ConflictError(f"a token named {name!r} already exists")
                    live.revoked_at = now
                    s.add(live)
                    s.flush()  # the name is free before the new row claims it
                    replaced = mapping.token(live)
                row = ApiTokenRow(
                    name=name,
                    role=role,
                    token_sha256=token_sha256,
                    created_at=now,
                    expires_at=expires_at,
                )
                s.add(row)
                s.flush()
                return mapping.token(row), replaced
        except IntegrityError as exc:
            # Another process took the name between the check and the insert.
            raise ConflictError(f"a token named {name!r} already exists") from exc

    def token_by_hash(self, token_sha256: str) -> ApiToken | None:
        with self.session() as s:
            row = s.exec(
                select(ApiTokenRow).where(
                    ApiTokenRow.token_sha256 == token_sha256,
                    col(ApiTokenRow.revoked_at).is_(None),
                )
            ).first()
            return mapping.token(row) if row is not None else None

    def list_tokens(self, *, include_revoked: bool = True) -> list[ApiToken]:
        with self.session() as s:
            query = select(ApiTokenRow).order_by(col(ApiTokenRow.id))
            if not include_revoked:
                query = query.where(col(ApiTokenRow.revoked_at).is_(None))
            return [mapping.token(row) for row in s.exec(query).all()]

    def revoke_token(self, token_id: int, now: datetime) -> ApiToken:
        with self.session() as s:
            row = s.get(ApiTokenRow, token_id)
            if row is None:
                raise NotFoundError(f"no token with id {token_id}")
            if row.revoked_at is None:
                row.revoked_at = now
                s.add(row)
            return mapping.token(row)

    def touch_token(self, token_id: int, now: datetime) -> None:
        with self.session() as s:
            s.exec(
                update(ApiTokenRow).where(col(ApiTokenRow.id) == token_id).values(last_used_at=now)
            )

    # ------------------------------------------------------------------ scheduler job times

    def job_last_run(self, name: str) -> datetime | None:
        with self.session() as s:
            row = s.get(SchedulerJobRow, name)
            return row.last_run_at if row else None

    def mark_job_run(self, name: str, at: datetime) -> None:
        with self.session() as s:
            s.merge(SchedulerJobRow(name=name, last_run_at=at))
