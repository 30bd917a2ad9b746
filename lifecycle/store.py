"""The database: engine factory, schema, and every query the service makes.

Synchronous SQLAlchemy (SQLModel) with short transactions; async callers go through
``anyio.to_thread``. Works on SQLite (the embedded default; every transaction takes the write lock
with ``BEGIN IMMEDIATE``) and on PostgreSQL (several replicas; runs are claimed with
``SELECT ... FOR UPDATE SKIP LOCKED`` and evidence appends serialise on an advisory lock).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, exists, func, inspect, or_, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import aliased
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, col, create_engine, select

from lifecycle.exceptions import NotFoundError, StoreError, UnknownWorkerError
from lifecycle.hr.event import HrEvent, HrEventType
from lifecycle.models import (
    AccountLink,
    ApiToken,
    CheckpointRow,
    EvidenceRow,
    InboxEvent,
    InboxOutcome,
    Run,
    RunKind,
    RunStatus,
    SchedulerJob,
    Step,
    StepStatus,
    WorkerRow,
)

#: Advisory lock key that serialises evidence appends across replicas ("LCEV").
EVIDENCE_LOCK_KEY = 0x4C434556
EVIDENCE_RETENTION_YEARS = 6
#: The columns of a step that change while it runs.
STEP_PROGRESS = (
    "status",
    "attempts",
    "account_id",
    "account_login",
    "started_at",
    "finished_at",
    "error",
    "result_json",
    "readback_json",
)
TERMINATION_ACTIONS = ("disable", "revoke_sessions", "remove_access", "verify")


@dataclass(frozen=True, slots=True)
class Intake:
    """What an accepted HR event became."""

    event_id: str
    run_id: str | None
    duplicate: bool
    outcome: InboxOutcome = InboxOutcome.RUN
    detail: str | None = None
    first_event_id: str | None = None
    """For a conflict: the inbox row of the first delivery of this event id."""


@dataclass(frozen=True, slots=True)
class RunDetail:
    run: Run
    steps: list[Step]
    worker: WorkerRow | None
    links: dict[str, AccountLink] = field(default_factory=dict)
    """The worker's known accounts, by connector name."""


@dataclass(frozen=True, slots=True)
class RunPlan:
    """A run other than a plain termination: its kind, steps and what it is to achieve."""

    kind: RunKind
    steps: list[tuple[str, str, int]]
    plan_json: str
    playbook_name: str | None = None
    playbook_sha256: str | None = None
    accounts: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)
    """Connector -> (account id, login) when the run targets known accounts (sweeps)."""


#: Given a hire or transfer (the event, the updated roster row, the worker's job code before the
#: event and the playbook they were last provisioned with), the joiner/mover run to create.
ProvisionPlanner = Callable[[HrEvent, WorkerRow, str | None, str | None], RunPlan | None]


@dataclass(frozen=True, slots=True)
class Finish:
    """A run's end: its final status and how to build its evidence record at a given seq."""

    run_id: str
    worker_id: str
    status: RunStatus
    finished_at: datetime
    time_to_revoke_ms: int | None
    build: Callable[[int], tuple[str, bytes, bytes]]


def termination_plan(connectors: Sequence[str]) -> list[tuple[str, str, int]]:
    """One step per (connector, action), in the order the chain runs them."""
    return [(c, a, i) for c in connectors for i, a in enumerate(TERMINATION_ACTIONS)]


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


def inbox_row(event: HrEvent, now: datetime, **fields: Any) -> InboxEvent:
    """The inbox row of ``event`` received ``now``; ``fields`` set the rest (outcome, ...)."""
    return InboxEvent(
        **{"id": new_id()}
        | {
            "source": event.source,
            "source_event_id": event.event_id,
            "type": event.type,
            "worker_id": event.worker_id,
            "received_at": now,
            "effective_at": event.effective_at,
            "reason": event.reason,
            "payload_sha256": event.payload_sha256,
        }
        | fields
    )


def new_id() -> str:
    return str(uuid.uuid4())


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        self.engine = self._make_engine(url)
        # One writer at a time inside this process: SQLite would otherwise spin on busy locks.
        self._sqlite_lock = threading.Lock() if self.is_sqlite else None

    def _make_engine(self, url: str) -> Engine:
        if not self.is_sqlite:
            return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        memory = url in ("sqlite://", "sqlite:///:memory:")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if memory else None,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" below issue BEGIN
            cursor = dbapi_conn.cursor()
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error."""
        lock = self._sqlite_lock
        if lock is not None:
            lock.acquire()
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                try:
                    yield session
                    session.commit()
                except OperationalError as exc:
                    session.rollback()
                    raise StoreError(f"database error: {exc.orig}") from exc
                except BaseException:
                    session.rollback()
                    raise
        finally:
            if lock is not None:
                lock.release()

    # ------------------------------------------------------------------ schema & health

    def create_schema(self) -> None:
        SQLModel.metadata.create_all(self.engine)
        self._add_missing_columns()
        self._migrate_inbox_key()
        self._protect_evidence()

    def _migrate_inbox_key(self) -> None:
        """Databases from before conflict detection keyed the inbox on (source, event id) alone,
        which leaves no room to store a conflicting delivery: re-key it on (source, event id,
        payload hash) and give old rows their outcome. Rows are copied as they are."""
        inspector = inspect(self.engine)  # read before the transaction: it takes the lock
        names = {c["name"] for c in inspector.get_unique_constraints("inbox")}
        rekey = "uq_inbox_source_event" in names or (
            self.is_sqlite and "uq_inbox_delivery" not in names
        )
        columns = ", ".join(c["name"] for c in inspector.get_columns("inbox"))
        indexes = [i["name"] for i in inspector.get_indexes("inbox")]
        with self.engine.begin() as conn:
            if rekey and self.is_postgres:
                conn.exec_driver_sql(
                    "ALTER TABLE inbox DROP CONSTRAINT IF EXISTS uq_inbox_source_event"
                )
                conn.exec_driver_sql(
                    "ALTER TABLE inbox ADD CONSTRAINT uq_inbox_delivery "
                    "UNIQUE (source, source_event_id, payload_sha256)"
                )
            elif rekey:  # SQLite cannot alter a constraint: rebuild the table
                conn.exec_driver_sql("ALTER TABLE inbox RENAME TO inbox_before_conflicts")
                for index in indexes:
                    conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{index}"')
                InboxEvent.__table__.create(conn)  # type: ignore[attr-defined]
                conn.exec_driver_sql(  # column names come from the schema itself
                    f"INSERT INTO inbox ({columns}) "  # noqa: S608
                    f"SELECT {columns} FROM inbox_before_conflicts"
                )
                conn.exec_driver_sql("DROP TABLE inbox_before_conflicts")
            conn.exec_driver_sql(
                "UPDATE inbox SET outcome = CASE WHEN run_id IS NULL THEN 'ignored' ELSE 'run' END "
                "WHERE outcome IS NULL"
            )

    def _protect_evidence(self) -> None:
        """Evidence is append-only, enforced by the database itself: records and checkpoints are
        never updated, and never deleted before the retention period (HIPAA 164.316(b)(2): six
        years) has passed, whatever code or operator asks."""
        years = EVIDENCE_RETENTION_YEARS
        with self.engine.begin() as conn:
            if self.is_sqlite:
                for table, column in (("evidence", "created_at"), ("checkpoints", "signed_at")):
                    conn.exec_driver_sql(
                        f"CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} "
                        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                    )
                    conn.exec_driver_sql(
                        f"CREATE TRIGGER IF NOT EXISTS {table}_retention BEFORE DELETE ON {table} "
                        f"WHEN OLD.{column} > datetime('now', '-{years} years') BEGIN "
                        f"SELECT RAISE(ABORT, '{table} is kept {years} years'); END"
                    )
            elif self.is_postgres:
                conn.exec_driver_sql(
                    "CREATE OR REPLACE FUNCTION lifecycle_protect_evidence() RETURNS trigger "
                    "LANGUAGE plpgsql AS $$ BEGIN "
                    "IF TG_OP = 'UPDATE' THEN "
                    "RAISE EXCEPTION '%% is append-only', TG_TABLE_NAME; END IF; "
                    # TG_ARGV[0] names the row's timestamp column (the tables differ).
                    "IF (to_jsonb(OLD) ->> TG_ARGV[0])::timestamptz "
                    f"> now() - interval '{years} years' "
                    f"THEN RAISE EXCEPTION '%% is kept {years} years', TG_TABLE_NAME; END IF; "
                    "RETURN OLD; END $$"
                )
                for table, column in (("evidence", "created_at"), ("checkpoints", "signed_at")):
                    conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_protect ON {table}")
                    conn.exec_driver_sql(
                        f"CREATE TRIGGER {table}_protect BEFORE UPDATE OR DELETE ON {table} "
                        f"FOR EACH ROW EXECUTE FUNCTION lifecycle_protect_evidence('{column}')"
                    )

    #: Nullable columns added after the first release: (table, column); the SQL type is the
    #: model's, compiled for this database.
    ADDED_COLUMNS = (
        ("runs", "plan_json"),
        ("inbox", "outcome"),
        ("inbox", "detail"),
        ("inbox", "pending_json"),
        ("inbox", "attempts"),
        ("inbox", "next_attempt_at"),
        ("inbox", "escalated_at"),
    )

    def _add_missing_columns(self) -> None:
        """``create_all`` makes missing tables but never alters existing ones; a database
        created by an earlier version gets the nullable columns (and their indexes) added
        since."""
        inspector = inspect(self.engine)
        altered: set[str] = set()
        for table, column in self.ADDED_COLUMNS:
            present = {c["name"] for c in inspector.get_columns(table)}
            if column not in present:
                sql_type = (
                    SQLModel.metadata.tables[table]
                    .c[column]
                    .type.compile(dialect=self.engine.dialect)
                )
                with self.engine.begin() as conn:
                    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")
                altered.add(table)
        for table in altered:
            for index in SQLModel.metadata.tables[table].indexes:
                index.create(self.engine, checkfirst=True)

    def ping(self) -> None:
        with self.session() as s:
            s.exec(select(1)).one()

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ roster

    def upsert_worker(self, worker: WorkerRow) -> None:
        with self.session() as s:
            s.merge(worker)

    def seed_workers(self, workers: Sequence[WorkerRow]) -> int:
        """Insert workers not yet in the roster; returns how many were added."""
        with self.session() as s:
            known = set(s.exec(select(WorkerRow.worker_id)).all())
            fresh = [w for w in workers if w.worker_id not in known]
            s.add_all(fresh)
            return len(fresh)

    def get_worker(self, worker_id: str) -> WorkerRow | None:
        with self.session() as s:
            return s.get(WorkerRow, worker_id)

    # ------------------------------------------------------------------ intake

    def accept_hr_event(
        self,
        event: HrEvent,
        connectors: Sequence[str],
        now: datetime,
        *,
        provision: ProvisionPlanner | None = None,
        replace_pending: str | None = None,
    ) -> Intake:
        """Store the inbox row (and, for a termination, its run and steps) in one transaction.

        With ``provision``, a hire or transfer gets its joiner/mover run in the same transaction.
        A second delivery of the same source event id with the same payload returns the first
        one's run; with another payload it is stored as a ``conflict`` (and starts nothing).
        With ``replace_pending``, the pending inbox row of that id (a delivery that awaited a
        vendor look-up) becomes this outcome, keeping its id and receipt time; if another
        replica settled it first, that outcome is returned.
        Raises UnknownWorkerError, and stores nothing, for a non-hire about an unknown worker.
        """
        try:
            return self._accept(event, connectors, now, provision, replace_pending)
        except IntegrityError:
            # A concurrent delivery of the same event won the race; answer with its run.
            return self._accept(event, connectors, now, provision, replace_pending)

    def _accept(
        self,
        event: HrEvent,
        connectors: Sequence[str],
        now: datetime,
        provision: ProvisionPlanner | None = None,
        replace_pending: str | None = None,
    ) -> Intake:
        with self.session() as s:
            inbox_id = new_id()
            pending = s.get(InboxEvent, replace_pending) if replace_pending else None
            if pending is not None and pending.outcome == InboxOutcome.PENDING:
                inbox_id, now = pending.id, pending.received_at
                s.delete(pending)
                s.flush()
            earlier = self._earlier_delivery(s, event, now)
            if earlier is not None:
                return earlier
            worker = s.get(WorkerRow, event.worker_id)
            if worker is None and event.type is not HrEventType.HIRE:
                raise UnknownWorkerError(
                    f"worker {event.worker_id!r} is not in the workforce roster"
                )
            worker = worker or WorkerRow(worker_id=event.worker_id, updated_at=now)
            previous_job_code = worker.job_code
            for attr in ("name", "email", "job_code", "engagement", "vendor"):
                value = getattr(event, attr)
                if value is not None:
                    setattr(worker, attr, value)
            worker.updated_at = now
            if event.type is HrEventType.HIRE:
                worker.status = "active"
            s.add(worker)
            inbox = inbox_row(event, now, id=inbox_id)
            if event.type is HrEventType.TERMINATION:
                run = self._new_run(
                    s,
                    kind=RunKind.OFFBOARD,
                    worker_id=event.worker_id,
                    reason=event.reason,
                    actor=f"hr:{event.source}",
                    connectors=connectors,
                    now=now,
                    effective_at=event.effective_at,
                    source=event.source,
                    source_event_id=event.event_id,
                    payload_sha256=event.payload_sha256,
                )
                inbox.run_id = run.id
            elif provision is not None and event.type in (HrEventType.HIRE, HrEventType.TRANSFER):
                plan = provision(
                    event, worker, previous_job_code, self._current_playbook(s, event.worker_id)
                )
                if plan is not None:
                    run = self._new_run(
                        s,
                        kind=plan.kind,
                        worker_id=event.worker_id,
                        reason=event.reason or str(event.type),
                        actor=f"hr:{event.source}",
                        connectors=(),
                        now=now,
                        effective_at=event.effective_at,
                        source=event.source,
                        source_event_id=event.event_id,
                        payload_sha256=event.payload_sha256,
                        plan=plan,
                    )
                    inbox.run_id = run.id
            if inbox.run_id is not None:
                inbox.outcome = InboxOutcome.RUN
            else:
                inbox.outcome = InboxOutcome.IGNORED
                inbox.detail = ignored_reason(event, worker.job_code, provision is not None)
            s.add(inbox)
            s.flush()
            return Intake(
                inbox.id, inbox.run_id, duplicate=False, outcome=inbox.outcome, detail=inbox.detail
            )

    @staticmethod
    def _earlier_delivery(s: Session, event: HrEvent, now: datetime) -> Intake | None:
        """What an earlier delivery of this (source, event id) became, if there was one.

        Idempotency means the same event: only the same payload is a re-delivery. Another
        payload under a known id is never taken for a duplicate (it could be another worker's
        termination); it is stored as a conflict, once per distinct payload."""
        if s.get_bind().dialect.name == "postgresql":
            # Two different payloads under one new id, at once, must not both become "first".
            digest = hashlib.sha256(f"{event.source}\n{event.event_id}".encode()).digest()
            key = int.from_bytes(digest[:8], "big", signed=True)
            s.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=key))  # type: ignore[call-overload]
        rows = s.exec(
            select(InboxEvent)
            .where(
                InboxEvent.source == event.source,
                InboxEvent.source_event_id == event.event_id,
            )
            .order_by(col(InboxEvent.received_at))
        ).all()
        if not rows:
            return None
        first = next((r for r in rows if r.outcome != InboxOutcome.CONFLICT), rows[0])
        same = next((r for r in rows if r.payload_sha256 == event.payload_sha256), None)
        if same is not None:
            return Intake(
                same.id,
                same.run_id,
                duplicate=True,
                outcome=InboxOutcome(same.outcome or InboxOutcome.RUN),
                detail=same.detail,
                first_event_id=first.id if same is not first else None,
            )
        detail = (
            f"event id {event.event_id!r} was first delivered at "
            f"{first.received_at.isoformat()} with payload sha256 {first.payload_sha256}; "
            f"this delivery's payload differs (sha256 {event.payload_sha256})"
        )
        conflict = inbox_row(event, now, outcome=InboxOutcome.CONFLICT, detail=detail)
        s.add(conflict)
        return Intake(
            conflict.id,
            None,
            duplicate=False,
            outcome=InboxOutcome.CONFLICT,
            detail=detail,
            first_event_id=first.id,
        )

    #: The same check for inbox rows stored outside ``accept_hr_event`` (``lifecycle.inbox``).
    earlier_delivery = _earlier_delivery

    def create_offboard(
        self,
        worker_id: str,
        *,
        reason: str,
        actor: str,
        connectors: Sequence[str],
        now: datetime,
    ) -> Run:
        """An immediate termination requested by an admin (API or CLI)."""
        with self.session() as s:
            if s.get(WorkerRow, worker_id) is None:
                raise UnknownWorkerError(f"worker {worker_id!r} is not in the workforce roster")
            payload = f"offboard:{worker_id}:{reason}:{actor}:{now.isoformat()}".encode()
            return self._new_run(
                s,
                kind=RunKind.OFFBOARD,
                worker_id=worker_id,
                reason=reason,
                actor=actor,
                connectors=connectors,
                now=now,
                source="admin",
                source_event_id=new_id(),
                payload_sha256=hashlib.sha256(payload).hexdigest(),
            )

    def _new_run(
        self,
        s: Session,
        *,
        kind: RunKind,
        worker_id: str,
        reason: str | None,
        actor: str,
        connectors: Sequence[str],
        now: datetime,
        effective_at: datetime | None = None,
        source: str | None = None,
        source_event_id: str | None = None,
        payload_sha256: str | None = None,
        plan: RunPlan | None = None,
        lease_owner: str | None = None,
        lease_until: datetime | None = None,
    ) -> Run:
        run = Run(
            id=new_id(),
            kind=kind,
            worker_id=worker_id,
            status=RunStatus.PENDING,
            reason=reason,
            actor=actor,
            source=source,
            source_event_id=source_event_id,
            payload_sha256=payload_sha256,
            received_at=now,
            effective_at=effective_at,
            not_before=max(effective_at, now) if effective_at else now,
        )
        if plan is not None:
            run.playbook_name, run.playbook_sha256 = plan.playbook_name, plan.playbook_sha256
            run.plan_json = plan.plan_json
        if lease_owner is not None:
            # Created already claimed: the creator executes it now; after a crash the lease
            # lapses and any replica's executor resumes it.
            run.status, run.started_at = RunStatus.RUNNING, now
            run.lease_owner, run.lease_expires_at = lease_owner, lease_until
        s.add(run)
        s.flush()
        known = plan.accounts if plan else {}
        for connector, action, position in plan.steps if plan else termination_plan(connectors):
            account_id, login = known.get(connector, (None, None))
            s.add(
                Step(
                    run_id=run.id,
                    connector=connector,
                    action=action,
                    position=position,
                    account_id=account_id,
                    account_login=login,
                )
            )
        return run

    def create_run(
        self,
        worker_id: str,
        plan: RunPlan,
        *,
        reason: str,
        actor: str,
        now: datetime,
        source: str,
        source_event_id: str,
        lease_owner: str | None = None,
        lease_until: datetime | None = None,
        require_worker: bool = True,
    ) -> Run:
        """A joiner/mover, policy, reconciliation or re-verification run with its own steps.

        Idempotent on (source, source_event_id): asking twice returns the first run.
        """
        with self.session() as s:
            existing = s.exec(
                select(Run).where(Run.source == source, Run.source_event_id == source_event_id)
            ).first()
            if existing is not None:
                return existing
            if require_worker and s.get(WorkerRow, worker_id) is None:
                raise UnknownWorkerError(f"worker {worker_id!r} is not in the workforce roster")
            digest = hashlib.sha256(f"{source}:{source_event_id}:{plan.plan_json}".encode())
            return self._new_run(
                s,
                kind=plan.kind,
                worker_id=worker_id,
                reason=reason,
                actor=actor,
                connectors=(),
                now=now,
                source=source,
                source_event_id=source_event_id,
                payload_sha256=digest.hexdigest(),
                plan=plan,
                lease_owner=lease_owner,
                lease_until=lease_until,
            )

    @staticmethod
    def _current_playbook(s: Session, worker_id: str) -> str | None:
        """The playbook of the worker's last joiner/mover run that did not fail outright."""
        return s.exec(
            select(Run.playbook_name)
            .where(
                Run.worker_id == worker_id,
                col(Run.kind).in_([RunKind.ONBOARD, RunKind.TRANSFER]),
                col(Run.status).in_(
                    [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.VERIFIED, RunStatus.INCOMPLETE]
                ),
            )
            .order_by(col(Run.received_at).desc())
            .limit(1)
        ).first()

    def current_playbook(self, worker_id: str) -> str | None:
        with self.session() as s:
            return self._current_playbook(s, worker_id)

    def finished_offboards(self, since: datetime, until: datetime) -> list[Run]:
        """Terminations (not re-verifications) that finished in [since, until)."""
        with self.session() as s:
            return list(
                s.exec(
                    select(Run).where(
                        Run.kind == RunKind.OFFBOARD,
                        col(Run.status).in_([RunStatus.VERIFIED, RunStatus.INCOMPLETE]),
                        col(Run.finished_at) >= since,
                        col(Run.finished_at) < until,
                        col(Run.actor).not_like("scheduler:%"),
                    )
                ).all()
            )

    def source_event_ids(self, source: str, prefix: str) -> set[str]:
        with self.session() as s:
            return {
                e
                for e in s.exec(
                    select(Run.source_event_id).where(
                        Run.source == source, col(Run.source_event_id).startswith(prefix)
                    )
                ).all()
                if e is not None
            }

    def workers(self) -> list[WorkerRow]:
        with self.session() as s:
            return list(s.exec(select(WorkerRow).order_by(col(WorkerRow.worker_id))).all())

    def links_by_account(self) -> dict[tuple[str, str], str]:
        """(connector, account id) -> worker id, for every account lifecycle has linked."""
        with self.session() as s:
            return {
                (link.connector, link.account_id): link.worker_id
                for link in s.exec(select(AccountLink)).all()
            }

    def import_workers(
        self, workers: Sequence[WorkerRow], *, complete: bool, now: datetime
    ) -> tuple[int, int, int]:
        """Insert or refresh roster rows; with ``complete`` the file is the whole workforce and
        active workers missing from it become ``absent``. Returns (added, updated, absent)."""
        with self.session() as s:
            known = {w.worker_id: w for w in s.exec(select(WorkerRow)).all()}
            added = updated = absent = 0
            for row in workers:
                current = known.get(row.worker_id)
                if current is None:
                    s.add(row)
                    added += 1
                    continue
                given = row.model_dump(exclude_unset=True)
                for attr in ("name", "email", "job_code", "engagement", "vendor", "status"):
                    if given.get(attr) is not None:  # a blank cell does not erase what we know
                        setattr(current, attr, given[attr])
                current.updated_at = now
                s.add(current)
                updated += 1
            if complete:
                listed = {w.worker_id for w in workers}
                for worker_id, current in known.items():
                    if worker_id not in listed and current.status == "active":
                        current.status, current.updated_at = "absent", now
                        s.add(current)
                        absent += 1
            return added, updated, absent

    def job_last_run(self, name: str) -> datetime | None:
        with self.session() as s:
            row = s.get(SchedulerJob, name)
            return row.last_run_at if row else None

    def mark_job_run(self, name: str, at: datetime) -> None:
        with self.session() as s:
            s.merge(SchedulerJob(name=name, last_run_at=at))

    # ------------------------------------------------------------------ executor

    def claim_runs(self, owner: str, now: datetime, lease: timedelta, limit: int) -> list[str]:
        """Take up to ``limit`` due runs that nobody holds a live lease on.

        PostgreSQL: ``FOR UPDATE SKIP LOCKED`` so replicas never wait on or double-claim a row.
        SQLite: the whole transaction holds the database write lock (``BEGIN IMMEDIATE``).
        """
        with self.session() as s:
            earlier = aliased(Run)
            query = (
                select(Run.id)
                .where(
                    col(Run.status).in_([RunStatus.PENDING, RunStatus.RUNNING]),
                    col(Run.not_before) <= now,
                    or_(col(Run.lease_expires_at).is_(None), col(Run.lease_expires_at) < now),
                    # One worker's runs execute in order: a hire retrying after a termination
                    # must not re-grant access while (or after) the termination runs.
                    ~exists().where(
                        col(earlier.worker_id) == col(Run.worker_id),
                        col(earlier.status).in_([RunStatus.PENDING, RunStatus.RUNNING]),
                        col(earlier.not_before) <= now,
                        col(earlier.received_at) < col(Run.received_at),
                    ),
                )
                .order_by(col(Run.not_before))
                .limit(limit)
            )
            if self.is_postgres:
                query = query.with_for_update(skip_locked=True)
            ids = list(s.exec(query).all())
            if not ids:
                return []
            s.exec(
                update(Run)
                .where(col(Run.id).in_(ids))
                .values(
                    lease_owner=owner,
                    lease_expires_at=now + lease,
                    status=RunStatus.RUNNING,
                    started_at=func.coalesce(Run.started_at, now),
                )
            )
            return ids

    def renew_leases(self, owner: str, run_ids: Sequence[str], until: datetime) -> None:
        if not run_ids:
            return
        with self.session() as s:
            s.exec(
                update(Run)
                .where(col(Run.id).in_(list(run_ids)), col(Run.lease_owner) == owner)
                .values(lease_expires_at=until)
            )

    def next_due(self, now: datetime) -> datetime | None:
        """When the earliest future-dated pending run becomes due."""
        with self.session() as s:
            return s.exec(
                select(func.min(Run.not_before)).where(
                    Run.status == RunStatus.PENDING, col(Run.not_before) > now
                )
            ).one()

    def load_run(self, run_id: str) -> RunDetail:
        details = self.load_runs([run_id])
        if not details:
            raise NotFoundError(f"no run {run_id}")
        return details[0]

    def load_runs(self, run_ids: Sequence[str]) -> list[RunDetail]:
        """Runs with their steps, workers and the workers' account links, in one transaction
        (a claimed batch is loaded at once). Unknown ids are left out."""
        ids = list(run_ids)
        with self.session() as s:
            runs = s.exec(select(Run).where(col(Run.id).in_(ids))).all()
            workers = {r.worker_id for r in runs}
            steps: dict[str, list[Step]] = {r.id: [] for r in runs}
            for step in s.exec(
                select(Step)
                .where(col(Step.run_id).in_(ids))
                .order_by(col(Step.connector), col(Step.position))
            ).all():
                steps[step.run_id].append(step)
            rows = {
                w.worker_id: w
                for w in s.exec(
                    select(WorkerRow).where(col(WorkerRow.worker_id).in_(workers))
                ).all()
            }
            links: dict[str, dict[str, AccountLink]] = {w: {} for w in workers}
            for link in s.exec(
                select(AccountLink).where(col(AccountLink.worker_id).in_(workers))
            ).all():
                links[link.worker_id][link.connector] = link
            by_id = {r.id: r for r in runs}
            return [
                RunDetail(
                    by_id[i], steps[i], rows.get(by_id[i].worker_id), links[by_id[i].worker_id]
                )
                for i in ids
                if i in by_id
            ]

    def save_step(self, step: Step) -> None:
        """Persist one step's progress (attempts, outcome, read-back) as soon as it is known."""
        with self.session() as s:
            s.merge(step)

    def save_progress(self, rows: Sequence[Step | AccountLink]) -> None:
        """Persist several steps' progress and account links in one transaction (group commit).

        Steps are updated by primary key in one executemany (no read before write); links are
        upserted."""
        latest: dict[int, Step] = {}
        links: list[AccountLink] = []
        for row in rows:
            if isinstance(row, Step) and row.id is not None:
                latest[row.id] = row  # the last submitted state of a step wins
            elif isinstance(row, AccountLink):
                links.append(row)
        with self.session() as s:
            if latest:
                s.execute(
                    update(Step),
                    [
                        {c: getattr(step, c) for c in STEP_PROGRESS} | {"id": step.id}
                        for step in latest.values()
                    ],
                )
            for link in links:
                s.merge(link)

    def finish_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        finished_at: datetime,
        time_to_revoke_ms: int | None,
    ) -> None:
        with self.session() as s:
            self._finish_in(s, run_id, status, finished_at, time_to_revoke_ms)

    def _finish_in(
        self,
        s: Session,
        run_id: str,
        status: RunStatus,
        finished_at: datetime,
        time_to_revoke_ms: int | None,
    ) -> None:
        run = s.get(Run, run_id)
        if run is None:
            raise NotFoundError(f"no run {run_id}")
        run.status = status
        run.finished_at = finished_at
        run.time_to_revoke_ms = time_to_revoke_ms
        run.lease_owner = None
        run.lease_expires_at = None
        if status is not RunStatus.NO_ACCOUNTS and run.kind == RunKind.OFFBOARD:
            worker = s.get(WorkerRow, run.worker_id)
            if worker is not None:
                worker.status = "terminated"
                worker.updated_at = finished_at
        s.add(run)

    def finish_runs(self, items: Sequence[Finish], now: datetime) -> list[int]:
        """Append each run's evidence record and mark the run finished, in one transaction for
        the whole batch: a run is never finished without its record, nor recorded twice."""
        with self.session() as s:
            self._lock_evidence(s)
            ids = [item.run_id for item in items]
            known = dict(
                s.exec(
                    select(EvidenceRow.run_id, EvidenceRow.seq).where(
                        col(EvidenceRow.run_id).in_(ids)
                    )
                ).all()
            )
            last = s.exec(select(func.max(EvidenceRow.seq))).one()
            next_seq = 0 if last is None else last + 1
            seqs = []
            for item in items:
                seq = known.get(item.run_id)
                if seq is None:
                    seq, next_seq = next_seq, next_seq + 1
                    known[item.run_id] = seq
                    self._add_record(s, seq, item.run_id, item.worker_id, item.build, now)
                seqs.append(seq)
                self._finish_in(
                    s, item.run_id, item.status, item.finished_at, item.time_to_revoke_ms
                )
                s.get_one(Run, item.run_id).evidence_seq = seq
            return seqs

    def get_link(self, worker_id: str, connector: str) -> AccountLink | None:
        with self.session() as s:
            return s.get(AccountLink, (worker_id, connector))

    def link_account(
        self, worker_id: str, connector: str, account_id: str, login: str | None, now: datetime
    ) -> None:
        with self.session() as s:
            s.merge(
                AccountLink(
                    worker_id=worker_id,
                    connector=connector,
                    account_id=account_id,
                    login=login,
                    linked_at=now,
                )
            )

    # ------------------------------------------------------------------ evidence

    def leaf_hashes(self, from_seq: int = 0) -> list[bytes]:
        with self.session() as s:
            rows = s.exec(
                select(EvidenceRow.seq, EvidenceRow.leaf_hash)
                .where(EvidenceRow.seq >= from_seq)
                .order_by(col(EvidenceRow.seq))
            ).all()
            for expected, (seq, _) in enumerate(rows, start=from_seq):
                if seq != expected:
                    raise StoreError(f"evidence log has a gap: expected seq {expected}, got {seq}")
            return [bytes(h) for _, h in rows]

    def append_evidence(
        self,
        run_id: str,
        worker_id: str,
        build: Callable[[int], tuple[str, bytes, bytes]],
        now: datetime,
    ) -> tuple[int, list[bytes]]:
        """Append the run's record at the next sequence number, exactly once per run.

        ``build(seq)`` returns (record_id, canonical record bytes, leaf hash). Returns the run's
        seq and, when this call appended it, its leaf hash.
        """
        with self.session() as s:
            self._lock_evidence(s)
            before = s.exec(select(EvidenceRow.seq).where(EvidenceRow.run_id == run_id)).first()
            seq = self._append_in(s, run_id, worker_id, build, now)
            if before is not None:
                return seq, []
            row = s.get(EvidenceRow, seq)
            return seq, [bytes(row.leaf_hash)] if row else []

    def _lock_evidence(self, s: Session) -> None:
        """Appends serialise on an advisory lock (PostgreSQL) or the write lock (SQLite)."""
        if self.is_postgres:
            s.exec(text("SELECT pg_advisory_xact_lock(:k)").bindparams(k=EVIDENCE_LOCK_KEY))  # type: ignore[call-overload]

    def _append_in(
        self,
        s: Session,
        run_id: str,
        worker_id: str,
        build: Callable[[int], tuple[str, bytes, bytes]],
        now: datetime,
    ) -> int:
        existing = s.exec(select(EvidenceRow.seq).where(EvidenceRow.run_id == run_id)).first()
        if existing is not None:
            return existing
        last = s.exec(select(func.max(EvidenceRow.seq))).one()
        seq = 0 if last is None else last + 1
        self._add_record(s, seq, run_id, worker_id, build, now)
        run = s.get(Run, run_id)
        if run is not None:
            run.evidence_seq = seq
            s.add(run)
        s.flush()
        return seq

    @staticmethod
    def _add_record(
        s: Session,
        seq: int,
        run_id: str,
        worker_id: str,
        build: Callable[[int], tuple[str, bytes, bytes]],
        now: datetime,
    ) -> None:
        record_id, body, leaf = build(seq)
        s.add(
            EvidenceRow(
                seq=seq,
                record_id=record_id,
                run_id=run_id,
                worker_id=worker_id,
                created_at=now,
                leaf_hash=leaf,
                body=body,
            )
        )

    def evidence_records(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        worker_id: str | None = None,
        batch: int = 1000,
    ) -> Iterator[tuple[int, bytes]]:
        """(seq, record bytes) in seq order, streamed in batches (memory stays flat)."""
        after = -1
        while True:
            with self.session() as s:
                query = select(EvidenceRow.seq, EvidenceRow.body).where(EvidenceRow.seq > after)
                if since is not None:
                    query = query.where(col(EvidenceRow.created_at) >= since)
                if until is not None:
                    query = query.where(col(EvidenceRow.created_at) < until)
                if worker_id is not None:
                    query = query.where(EvidenceRow.worker_id == worker_id)
                rows = s.exec(query.order_by(col(EvidenceRow.seq)).limit(batch)).all()
            if not rows:
                return
            for seq, body in rows:
                yield seq, bytes(body)
            after = rows[-1][0]

    def save_checkpoint(self, tree_size: int, root: bytes, note: str, now: datetime) -> None:
        """Keep a signed checkpoint; another replica saving the same tree size first is fine
        (Ed25519 signatures are deterministic: it saved the same note)."""
        try:
            with self.session() as s:
                if s.get(CheckpointRow, tree_size) is None:
                    s.add(
                        CheckpointRow(tree_size=tree_size, root_hash=root, note=note, signed_at=now)
                    )
        except IntegrityError:
            pass

    def latest_checkpoint(self) -> CheckpointRow | None:
        with self.session() as s:
            return s.exec(
                select(CheckpointRow).order_by(col(CheckpointRow.tree_size).desc()).limit(1)
            ).first()

    # ------------------------------------------------------------------ tokens

    def add_token(self, name: str, role: str, token_sha256: str, now: datetime) -> None:
        try:
            with self.session() as s:
                s.add(ApiToken(name=name, role=role, token_sha256=token_sha256, created_at=now))
        except IntegrityError as exc:
            raise StoreError(f"a token named {name!r} already exists") from exc

    def token_by_hash(self, token_sha256: str) -> ApiToken | None:
        with self.session() as s:
            return s.exec(
                select(ApiToken).where(
                    ApiToken.token_sha256 == token_sha256, col(ApiToken.revoked_at).is_(None)
                )
            ).first()

    # ------------------------------------------------------------------ queries

    def list_runs(
        self,
        *,
        status: str | None = None,
        worker_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Run]:
        with self.session() as s:
            query = select(Run)
            if status:
                query = query.where(Run.status == status)
            if worker_id:
                query = query.where(Run.worker_id == worker_id)
            query = query.order_by(col(Run.received_at).desc()).offset(offset).limit(limit)
            return list(s.exec(query).all())

    def run_counts(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.exec(select(Run.status, func.count()).group_by(Run.status)).all()
            return {status: count for status, count in rows}

    def step_failures(self, run_id: str) -> list[Step]:
        with self.session() as s:
            return list(
                s.exec(
                    select(Step).where(Step.run_id == run_id, Step.status == StepStatus.FAILED)
                ).all()
            )
