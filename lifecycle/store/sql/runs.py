"""Runs: creating, claiming (fenced leases), progress, ends, and the queries about them.

PostgreSQL: claims use ``SELECT ... FOR UPDATE SKIP LOCKED`` so replicas never wait on or
double-claim a row, and progress writes lock the runs they fence on. SQLite: every transaction
holds the database write lock (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, insert, or_, tuple_, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from lifecycle.domain import Lease, NewRun, Run, RunDetail, RunKind, RunStatus, Worker
from lifecycle.exceptions import NotFoundError, StateConflictError, UnknownWorkerError
from lifecycle.store.ports import (
    Deferral,
    Finish,
    Progress,
    RecordBuilder,
    StepProgress,
    Suppression,
)
from lifecycle.store.sql import mapping
from lifecycle.store.sql.database import Database
from lifecycle.store.sql.prepared import Prepared
from lifecycle.store.sql.roster import WORKERS
from lifecycle.store.sql.tables import EvidenceRow, LinkRow, RunRow, StepRow, WorkerRow

RUNS = RunRow.__table__  # type: ignore[attr-defined]
STEPS = StepRow.__table__  # type: ignore[attr-defined]
#: A step's progress by primary key: ``mapping.step_progress`` gives the values (``b_id`` the key).
STEP_UPDATE = (
    update(STEPS)
    .where(STEPS.c.id == bindparam("b_id"))
    .values({c: bindparam(c) for c in mapping.STEP_PROGRESS})
)
LINKS = LinkRow.__table__  # type: ignore[attr-defined]
EVIDENCE = EvidenceRow.__table__  # type: ignore[attr-defined]
EVIDENCE_INSERT = insert(EVIDENCE).values({c.name: bindparam(c.name) for c in EVIDENCE.columns})
#: A run's end by primary key (``_end`` gives the values); its lease is released.
RUN_END = (
    update(RUNS)
    .where(RUNS.c.id == bindparam("b_id"))
    .values(
        status=bindparam("status"),
        finished_at=bindparam("finished_at"),
        time_to_revoke_ms=bindparam("time_to_revoke_ms"),
        evidence_seq=bindparam("evidence_seq"),
        lease_owner=None,
        lease_expires_at=None,
    )
)
#: The steps of the runs ``run_ids``, as ``mapping.step`` reads them.
LOAD_STEPS = (
    sa_select(*(STEPS.c[name] for name in mapping.STEP_COLUMNS))
    .where(STEPS.c.run_id.in_(bindparam("run_ids", expanding=True)))
    .order_by(STEPS.c.connector, STEPS.c.position)
)
#: The evidence seq of those runs ``run_ids`` that have a record already.
RECORDED = sa_select(EVIDENCE.c.run_id, EVIDENCE.c.seq).where(
    EVIDENCE.c.run_id.in_(bindparam("run_ids", expanding=True))
)
LAST_SEQ = sa_select(func.max(EVIDENCE.c.seq))
#: The current lease of the runs ``run_ids`` (``_fenced``).
FENCE = (
    sa_select(RUNS.c.id, RUNS.c.lease_owner, RUNS.c.lease_epoch)
    .where(RUNS.c.id.in_(bindparam("run_ids", expanding=True)))
    .order_by(RUNS.c.id)
)
FENCE_FOR_UPDATE = FENCE.with_for_update()
#: The worker's roster status a finished run sets (e.g. ``terminated``).
WORKER_STATUS = (
    update(WORKERS)
    .where(WORKERS.c.worker_id == bindparam("b_worker_id"))
    .values(status=bindparam("status"), updated_at=bindparam("updated_at"))
)
#: Advisory lock key that serialises evidence appends across replicas ("LCEV").
EVIDENCE_LOCK_KEY = 0x4C434556
LIVE = (RunStatus.PENDING, RunStatus.RUNNING)
RETRYABLE = (RunStatus.INCOMPLETE, RunStatus.FAILED)
#: The playbook of a worker's latest joiner/mover run that has not failed (Core: it is asked
#: on every HR event).
PLAYBOOK_OF = (
    sa_select(RUNS.c.playbook_name)
    .where(
        RUNS.c.worker_id == bindparam("worker_id"),
        RUNS.c.kind.in_([RunKind.ONBOARD, RunKind.TRANSFER]),
        RUNS.c.status.in_(
            [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.VERIFIED, RunStatus.INCOMPLETE]
        ),
    )
    .order_by(RUNS.c.received_at.desc())
    .limit(1)
)


def new_id() -> str:
    return str(uuid.uuid4())


class RunQueries(Database):
    def prepared(self, statement: Any) -> Prepared:
        """``statement`` compiled once for this database (``prepared.Prepared``)."""
        cache: dict[int, tuple[Any, Prepared]] = self.__dict__.setdefault("_prepared", {})
        found = cache.get(id(statement))
        if found is None or found[0] is not statement:
            found = (statement, Prepared(statement, self.engine.dialect))
            cache[id(statement)] = found
        return found[1]

    # ------------------------------------------------------------------ creating

    def create_run(
        self,
        run: NewRun,
        now: datetime,
        *,
        require_worker: bool = False,
        suppress: Suppression | None = None,
    ) -> Run:
        try:
            with self.session() as s:
                if require_worker and s.get(WorkerRow, run.worker_id) is None:
                    raise UnknownWorkerError(
                        f"worker {run.worker_id!r} is not in the workforce roster"
                    )
                row = self.insert_run(s, run, now)
                if suppress is not None:
                    self._suppress(s, suppress, now)
                return mapping.run(row, self.plans, plan=run.plan)
        except IntegrityError:
            # Asked before (unique on source + source event id): the first run is the answer.
            with self.session() as s:
                existing = s.exec(
                    select(RunRow).where(
                        RunRow.source == run.source,
                        RunRow.source_event_id == run.source_event_id,
                    )
                ).first()
                if existing is None:
                    raise
                return mapping.run(existing, self.plans)

    def create_runs(self, runs: Sequence[NewRun], now: datetime) -> list[Run]:
        """``create_run`` for many runs in one transaction (a sweep's batch): runs asked for
        before (same source and source event id) are returned as they are, the others
        stored. Falls back to one transaction per run if another replica races it."""
        keys = [(r.source, r.source_event_id) for r in runs]
        try:
            with self.session() as s:
                existing = {
                    (row.source, row.source_event_id): mapping.run(row, self.plans)
                    for row in s.exec(
                        select(RunRow).where(
                            tuple_(col(RunRow.source), col(RunRow.source_event_id)).in_(keys)
                        )
                    ).all()
                }
                out: list[Run] = []
                for run, key in zip(runs, keys, strict=True):
                    found = existing.get(key)
                    if found is None:
                        found = mapping.run(self.insert_run(s, run, now), self.plans, plan=run.plan)
                        existing[key] = found
                    out.append(found)
                return out
        except IntegrityError:
            return [self.create_run(run, now) for run in runs]

    def insert_run(self, s: Session, run: NewRun, now: datetime) -> RunRow:
        # Core INSERTs (the run, then its steps as one executemany): the ORM's unit of work
        # cost more CPU than the rest of an HR intake. The row returned is not in the session.
        row = mapping.new_run_row(new_id(), run, self.plans, now)
        s.execute(insert(RUNS), [row.model_dump()])
        if run.steps:
            s.execute(insert(STEPS), [mapping.new_step_values(row.id, step) for step in run.steps])
        return row

    # ------------------------------------------------------------------ by hand

    def _locked_run(self, s: Session, run_id: str) -> RunRow:
        query = select(RunRow).where(RunRow.id == run_id)
        if self.is_postgres:
            query = query.with_for_update()
        row = s.exec(query).first()
        if row is None:
            raise NotFoundError(f"no run {run_id}")
        return row

    def decide_run(
        self,
        run_id: str,
        *,
        approve: bool,
        by: str,
        reason: str | None,
        now: datetime,
        suppress: Suppression | None = None,
    ) -> Run:
        with self.session() as s:
            row = self._locked_run(s, run_id)
            if row.status != RunStatus.AWAITING_APPROVAL:
                raise StateConflictError(
                    f"run {run_id} is {row.status}, not awaiting approval: nothing to decide"
                )
            row.decision = "approved" if approve else "rejected"
            row.decided_by, row.decided_at, row.decision_reason = by, now, reason
            if approve:
                row.status, row.not_before = RunStatus.PENDING, now
                if suppress is not None:
                    self._suppress(s, suppress, now)
            else:
                row.status, row.finished_at = RunStatus.CANCELLED, now
            s.add(row)
            s.flush()
            return mapping.run(row, self.plans)

    def cancel_run(self, run_id: str, *, by: str, reason: str, now: datetime) -> Run:
        with self.session() as s:
            row = self._locked_run(s, run_id)
            waiting = row.status == RunStatus.AWAITING_APPROVAL or (
                row.status == RunStatus.PENDING and row.lease_owner is None
            )
            if not waiting:
                raise StateConflictError(
                    f"run {run_id} is {row.status}: only a run that has not started (pending "
                    "or awaiting approval) can be cancelled"
                )
            row.status, row.finished_at = RunStatus.CANCELLED, now
            row.cancelled_by, row.cancelled_at, row.cancel_reason = by, now, reason
            s.add(row)
            s.flush()
            return mapping.run(row, self.plans)

    def create_retry(self, run_id: str, retry: NewRun, now: datetime) -> Run:
        with self.session() as s:
            row = self._locked_run(s, run_id)
            if row.retried_as is not None:
                raise StateConflictError(
                    f"run {run_id} was already retried as run {row.retried_as}"
                )
            if row.status not in RETRYABLE:
                raise StateConflictError(
                    f"run {run_id} is {row.status}: only an incomplete or failed run can be retried"
                )
            new = self.insert_run(s, retry, now)
            row.retried_as = new.id
            s.add(row)
            s.flush()
            return mapping.run(new, self.plans, plan=retry.plan)

    def _suppress(self, s: Session, suppress: Suppression, now: datetime) -> None:
        """Cancel the live runs ``suppress`` names; store its placeholders cancelled. A
        cancelled run that a replica is executing loses its lease (the epoch moves on), so
        that replica's next write is refused and it stops."""
        s.execute(
            update(RunRow)
            .where(
                col(RunRow.source) == suppress.source,
                col(RunRow.source_event_id).startswith(suppress.prefix, autoescape=True),
                col(RunRow.status).in_(LIVE),
            )
            .values(
                status=RunStatus.CANCELLED,
                finished_at=now,
                cancelled_by=suppress.by,
                cancelled_at=now,
                cancel_reason=suppress.reason,
                lease_owner=None,
                lease_expires_at=None,
                lease_epoch=col(RunRow.lease_epoch) + 1,
            )
        )
        taken = set(
            s.exec(
                select(RunRow.source_event_id).where(
                    col(RunRow.source) == suppress.source,
                    col(RunRow.source_event_id).startswith(suppress.prefix, autoescape=True),
                )
            ).all()
        )
        for placeholder in suppress.placeholders:
            if placeholder.source_event_id in taken:
                continue
            row = mapping.new_run_row(new_id(), placeholder, self.plans, now)
            row.status, row.finished_at = RunStatus.CANCELLED, now
            row.cancelled_by, row.cancelled_at, row.cancel_reason = (
                suppress.by,
                now,
                suppress.reason,
            )
            s.add(row)

    # ------------------------------------------------------------------ claiming

    def claim_runs(
        self,
        owner: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        *,
        exclude: Sequence[str] = (),
        reclaim_own: bool = False,
    ) -> list[Lease]:
        with self.session() as s:
            earlier = aliased(RunRow)
            free = or_(col(RunRow.lease_expires_at).is_(None), col(RunRow.lease_expires_at) < now)
            if reclaim_own:
                free = or_(free, col(RunRow.lease_owner) == owner)
            query = select(RunRow.id).where(
                col(RunRow.status).in_(LIVE),
                col(RunRow.not_before) <= now,
                free,
                # One worker's runs execute in order: a hire retrying after a termination must
                # not re-grant access while (or after) the termination runs.
                ~exists().where(
                    col(earlier.worker_id) == col(RunRow.worker_id),
                    col(earlier.received_at) < col(RunRow.received_at),
                    or_(
                        and_(
                            col(earlier.status) == RunStatus.PENDING,
                            col(earlier.not_before) <= now,
                        ),
                        col(earlier.status) == RunStatus.RUNNING,
                    ),
                ),
            )
            if exclude:
                query = query.where(col(RunRow.id).not_in(list(exclude)))
            query = query.order_by(col(RunRow.not_before)).limit(limit)
            if self.is_postgres:
                query = query.with_for_update(skip_locked=True)
            ids = list(s.exec(query).all())
            if not ids:
                return []
            claimed = s.execute(
                update(RunRow)
                .where(col(RunRow.id).in_(ids))
                .values(
                    lease_owner=owner,
                    lease_expires_at=now + lease,
                    lease_epoch=col(RunRow.lease_epoch) + 1,
                    status=RunStatus.RUNNING,
                    started_at=func.coalesce(RunRow.started_at, now),
                )
                .returning(col(RunRow.id), col(RunRow.lease_epoch))
            ).all()
            epochs = {run_id: epoch for run_id, epoch in claimed}
            return [Lease(run_id, owner, epochs[run_id]) for run_id in ids]

    def renew_leases(self, leases: Sequence[Lease], until: datetime) -> list[str]:
        if not leases:
            return []
        owners = {lease.owner for lease in leases}
        with self.session() as s:
            renewed = set(
                s.execute(
                    update(RunRow)
                    .where(
                        col(RunRow.lease_owner).in_(owners),
                        tuple_(col(RunRow.id), col(RunRow.lease_epoch)).in_(
                            [(lease.run_id, lease.epoch) for lease in leases]
                        ),
                    )
                    .values(lease_expires_at=until)
                    .returning(col(RunRow.id))
                )
                .scalars()
                .all()
            )
        return [lease.run_id for lease in leases if lease.run_id not in renewed]

    def next_due(self, now: datetime) -> datetime | None:
        with self.session() as s:
            return s.exec(
                select(func.min(RunRow.not_before)).where(
                    col(RunRow.status).in_(LIVE),
                    col(RunRow.lease_owner).is_(None),
                    col(RunRow.not_before) > now,
                )
            ).one()

    def _fenced(self, s: Session, leases: dict[str, Lease]) -> set[str]:
        """The run ids (of ``leases``) whose lease is no longer the one given: refused."""
        # PostgreSQL: FOR UPDATE, so that no claim slips in before this commits. Core, and
        # built once: this runs in every progress write.
        query = FENCE_FOR_UPDATE if self.is_postgres else FENCE
        rows = s.connection().execute(query, {"run_ids": list(leases)}).all()
        current = {run_id: (owner, epoch) for run_id, owner, epoch in rows}
        return {
            run_id
            for run_id, lease in leases.items()
            if current.get(run_id) != (lease.owner, lease.epoch)
        }

    # ------------------------------------------------------------------ executing

    def load_run(self, run_id: str) -> RunDetail:
        details = self.load_runs([run_id])
        if not details:
            raise NotFoundError(f"no run {run_id}")
        return details[0]

    def load_runs(self, run_ids: Sequence[str]) -> list[RunDetail]:
        ids = list(run_ids)
        # Core selects: a claimed batch is loaded on every claim. Core rows carry the tables'
        # column names as attributes, which is all ``mapping`` reads.
        with self.session() as s:
            conn = s.connection()
            runs = conn.execute(sa_select(RUNS).where(RUNS.c.id.in_(ids))).all()
            workers = {r.worker_id for r in runs}
            steps: dict[str, list[Any]] = {r.id: [] for r in runs}
            for step in conn.execute(LOAD_STEPS, {"run_ids": ids}).all():
                steps[step[1]].append(step)  # mapping.STEP_COLUMNS: the run id is second
            rows = {
                w.worker_id: Worker(**w._mapping)
                for w in conn.execute(
                    sa_select(WORKERS).where(WORKERS.c.worker_id.in_(workers))
                ).all()
            }
            links: dict[str, dict[str, Any]] = {w: {} for w in workers}
            for link in conn.execute(sa_select(LINKS).where(LINKS.c.worker_id.in_(workers))).all():
                links[link.worker_id][link.connector] = link
        by_id: dict[str, Any] = {r.id: r for r in runs}  # Core rows, read like RunRow
        details = []
        for run_id in ids:
            row = by_id.get(run_id)
            if row is None:
                continue
            details.append(
                RunDetail(
                    mapping.run(row, self.plans),
                    tuple(mapping.step(step) for step in steps[run_id]),
                    rows.get(row.worker_id),
                    {name: mapping.link(link) for name, link in links[row.worker_id].items()},
                )
            )
        return details

    def save_progress(self, items: Sequence[Progress]) -> set[str]:
        leases = {item.lease.run_id: item.lease for item in items}
        rows = self._progress_rows(items)  # built before the transaction: it holds the lock
        with self.session() as s:
            refused = self._fenced(s, leases)
            self._write_progress(s.connection(), rows, refused)
        return refused

    @staticmethod
    def _progress_rows(
        items: Iterable[Progress],
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
        """(run id, values) of the steps (the last submitted state of each wins) and links."""
        latest: dict[int, tuple[str, dict[str, Any]]] = {}
        links: list[tuple[str, dict[str, Any]]] = []
        for item in items:
            run_id = item.lease.run_id
            if isinstance(item, StepProgress):
                latest[item.step.id] = (run_id, mapping.step_progress(item.step))
            else:
                links.append((run_id, mapping.link_values(item.link)))
        return list(latest.values()), links

    def _write_progress(
        self,
        conn: Connection,
        rows: tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]],
        refused: Collection[str],
    ) -> None:
        steps, links = rows
        # By primary key in one executemany (no read before write), parameters converted once
        # per value (``Prepared``), not through SQLAlchemy's per-row machinery.
        self.prepared(STEP_UPDATE).executemany(
            conn, [values for run_id, values in steps if run_id not in refused]
        )
        # One INSERT ... ON CONFLICT for all links (Session.merge read each first).
        self.prepared(self.upsert(LINKS, ("worker_id", "connector"))).executemany(
            conn, [values for run_id, values in links if run_id not in refused]
        )

    def finish_runs(self, items: Sequence[Finish], now: datetime) -> dict[str, int]:
        leases = {item.lease.run_id: item.lease for item in items}
        progress = self._progress_rows(p for item in items for p in item.progress)
        with self.session() as s:
            self.lock_evidence(s)
            refused = self._fenced(s, leases)
            self._write_progress(s.connection(), progress, refused)
            accepted = [item for item in items if item.lease.run_id not in refused]
            ids = [item.lease.run_id for item in accepted]
            conn = s.connection()
            known: dict[str, int] = {
                run_id: seq for run_id, seq in conn.execute(RECORDED, {"run_ids": ids}).all()
            }
            last = conn.execute(LAST_SEQ).scalar()
            next_seq = 0 if last is None else last + 1
            seqs: dict[str, int] = {}
            records: list[dict[str, Any]] = []
            for item in accepted:
                run_id = item.lease.run_id
                seq = known.get(run_id)
                if seq is None:
                    seq, next_seq = next_seq, next_seq + 1
                    known[run_id] = seq
                    records.append(self.record_values(seq, run_id, item.worker_id, item.build, now))
                seqs[run_id] = seq
            # Prepared executemany statements, in seq order (the ORM read each run and worker
            # before writing it).
            self.prepared(EVIDENCE_INSERT).executemany(conn, records)
            self.prepared(RUN_END).executemany(
                conn, [self._end(item, seqs[item.lease.run_id]) for item in accepted]
            )
            workers = [
                {
                    "b_worker_id": item.worker_id,
                    "status": item.worker_status,
                    "updated_at": item.finished_at,
                }
                for item in accepted
                if item.worker_status is not None
            ]
            self.prepared(WORKER_STATUS).executemany(conn, workers)
        return seqs

    @staticmethod
    def _end(item: Finish, seq: int) -> dict[str, Any]:
        """The values of ``RUN_END`` for the run of ``item``."""
        return {
            "b_id": item.lease.run_id,
            "status": item.status,
            "finished_at": item.finished_at,
            "time_to_revoke_ms": item.time_to_revoke_ms,
            "evidence_seq": seq,
        }

    def defer_run(self, item: Deferral) -> bool:
        lease = item.lease
        values: dict[str, object] = {
            "not_before": item.not_before,
            "lease_owner": None,
            "lease_expires_at": None,
        }
        if item.sla_alerted_at is not None:
            values["sla_alerted_at"] = item.sla_alerted_at
        with self.session() as s:
            done = s.execute(
                update(RunRow)
                .where(
                    col(RunRow.id) == lease.run_id,
                    col(RunRow.lease_owner) == lease.owner,
                    col(RunRow.lease_epoch) == lease.epoch,
                )
                .values(**values)
                .returning(col(RunRow.id))
            ).all()
        return bool(done)

    # ------------------------------------------------------------------ queries

    def list_runs(
        self,
        *,
        status: str | None = None,
        worker_id: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Run]:
        with self.session() as s:
            query = select(RunRow)
            if status:
                query = query.where(RunRow.status == status)
            if worker_id:
                query = query.where(RunRow.worker_id == worker_id)
            if kind:
                query = query.where(RunRow.kind == kind)
            query = query.order_by(col(RunRow.received_at).desc()).offset(offset).limit(limit)
            rows = list(s.exec(query).all())
        return [mapping.run(row, self.plans) for row in rows]

    def run_counts(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.exec(select(RunRow.status, func.count()).group_by(RunRow.status)).all()
            return {status: count for status, count in rows}

    @staticmethod
    def playbook_of(s: Session, worker_id: str) -> str | None:
        return s.execute(PLAYBOOK_OF, {"worker_id": worker_id}).scalar()

    def current_playbook(self, worker_id: str) -> str | None:
        with self.session() as s:
            return self.playbook_of(s, worker_id)

    def finished_runs(self, kind: str, since: datetime, until: datetime) -> list[Run]:
        with self.session() as s:
            rows = list(
                s.exec(
                    select(RunRow).where(
                        RunRow.kind == kind,
                        col(RunRow.status).in_([RunStatus.VERIFIED, RunStatus.INCOMPLETE]),
                        col(RunRow.finished_at) >= since,
                        col(RunRow.finished_at) < until,
                    )
                ).all()
            )
        return [mapping.run(row, self.plans) for row in rows]

    def source_event_ids(self, source: str, prefix: str) -> set[str]:
        with self.session() as s:
            return {
                e
                for e in s.exec(
                    select(RunRow.source_event_id).where(
                        RunRow.source == source, col(RunRow.source_event_id).startswith(prefix)
                    )
                ).all()
                if e is not None
            }

    # ------------------------------------------------------------------ evidence (shared)

    def lock_evidence(self, s: Session) -> None:
        """Appends serialise on an advisory lock (PostgreSQL) or the write lock (SQLite)."""
        if self.is_postgres:
            s.exec(select(func.pg_advisory_xact_lock(EVIDENCE_LOCK_KEY))).one()

    @staticmethod
    def record_values(
        seq: int, run_id: str, worker_id: str, build: RecordBuilder, now: datetime
    ) -> dict[str, Any]:
        """``record_row`` as the column values of ``EVIDENCE_INSERT`` (no ORM object)."""
        record_id, body, leaf = build(seq)
        return {
            "seq": seq,
            "record_id": record_id,
            "run_id": run_id,
            "worker_id": worker_id,
            "created_at": now,
            "leaf_hash": leaf,
            "body": body,
        }

    @staticmethod
    def record_row(
        seq: int, run_id: str, worker_id: str, build: RecordBuilder, now: datetime
    ) -> EvidenceRow:
        record_id, body, leaf = build(seq)
        return EvidenceRow(
            seq=seq,
            record_id=record_id,
            run_id=run_id,
            worker_id=worker_id,
            created_at=now,
            leaf_hash=leaf,
            body=body,
        )
