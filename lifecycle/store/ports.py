"""What the engine and the services need from storage, as Protocols.

``lifecycle.store.sql.SqlStore`` satisfies every one of them (on SQLite and PostgreSQL); the
composition root (``lifecycle.service``) builds it and hands each part the port it uses. Every
method is blocking: async callers go through a worker thread. Every value in or out is a domain
value (``lifecycle.domain``); no row crosses this boundary.

The signatures here stand again in ``store/sql`` on purpose: a Protocol states them for the
callers, the implementation defines them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from lifecycle.domain import (
    ApiToken,
    Checkpoint,
    ConsoleSession,
    InboxEntry,
    InboxEvent,
    Intake,
    IntakeDecision,
    Lease,
    Link,
    NewRun,
    RosterCounts,
    RosterEntry,
    Run,
    RunDetail,
    RunStatus,
    Step,
    Worker,
)

#: Given the seq the store assigns, the record: (record id, canonical bytes, leaf hash).
RecordBuilder = Callable[[int], tuple[str, bytes, bytes]]


@dataclass(frozen=True, slots=True)
class StepProgress:
    """A step's new state, written under the lease the run was claimed with."""

    lease: Lease
    step: Step


@dataclass(frozen=True, slots=True)
class LinkProgress:
    """A worker's account found or created during a run (written under the run's lease)."""

    lease: Lease
    link: Link


Progress = StepProgress | LinkProgress


@dataclass(frozen=True, slots=True)
class Finish:
    """A run's end: its status, and how to build its evidence record once its seq is known."""

    lease: Lease
    worker_id: str
    status: RunStatus
    finished_at: datetime
    time_to_revoke_ms: int | None
    build: RecordBuilder
    worker_status: str | None = None
    """The roster status the run leaves the worker in (a termination: ``terminated``)."""
    progress: Sequence[Progress] = ()
    """Steps and links of the run not written yet: written first, in the same transaction."""


@dataclass(frozen=True, slots=True)
class Suppression:
    """Runs a restore makes moot, settled in the transaction that lets the restore run: the
    live runs of ``source`` whose event id starts with ``prefix`` (the re-verifications of the
    termination it reverses) are cancelled, and ``placeholders`` (those not created yet) are
    stored cancelled, so that the scheduler never creates them."""

    source: str
    prefix: str
    placeholders: tuple[NewRun, ...]
    by: str
    reason: str


@dataclass(frozen=True, slots=True)
class Deferral:
    """A run put back to wait for its next attempt: status stays ``running``, lease released."""

    lease: Lease
    not_before: datetime
    sla_alerted_at: datetime | None = None


class RunQueue(Protocol):
    """Claiming and executing runs, fenced: every write names the lease it was claimed with."""

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
        """Take up to ``limit`` due runs nobody holds a live lease on (and, with ``reclaim_own``,
        the runs ``owner`` itself still holds: a restarted replica with the same instance id).
        One worker's runs are claimed in order. Each claim raises the run's lease epoch."""
        ...

    def renew_leases(self, leases: Sequence[Lease], until: datetime) -> list[str]:
        """Extend live leases; returns the run ids whose lease another replica has taken."""
        ...

    def next_due(self, now: datetime) -> datetime | None:
        """When the earliest run waiting for a future time becomes due."""
        ...

    def load_runs(self, run_ids: Sequence[str]) -> list[RunDetail]:
        """Runs with steps, workers and links, in one transaction; unknown ids left out."""
        ...

    def save_progress(self, items: Sequence[Progress]) -> set[str]:
        """Persist steps and links in one transaction; returns the run ids whose items were
        refused because their lease is no longer the run's (nothing of those is written)."""
        ...

    def finish_runs(self, items: Sequence[Finish], now: datetime) -> dict[str, int]:
        """Write each run's remaining progress (``Finish.progress``), append its evidence
        record and end the run, in one transaction for the batch; returns run id -> evidence
        seq. Runs whose lease was taken over are left out (nothing of theirs is written)."""
        ...

    def defer_run(self, item: Deferral) -> bool:
        """Release the run to wait for its next attempt; False when the lease was lost."""
        ...


class Runs(Protocol):
    """Creating and reading runs."""

    def create_run(
        self,
        run: NewRun,
        now: datetime,
        *,
        require_worker: bool = False,
        suppress: Suppression | None = None,
    ) -> Run:
        """Store the run and its steps; idempotent on (source, source event id): a second
        request returns the first run. With ``require_worker``, raises UnknownWorkerError (and
        stores nothing) for a worker the roster does not know. ``suppress``: settled in the
        same transaction."""
        ...

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
        """A second admin's answer to a run ``awaiting_approval``: approved, it becomes
        ``pending`` (due now; ``suppress`` is settled in the same transaction); rejected,
        ``cancelled``. Raises NotFoundError, or StateConflictError when it is not awaiting."""
        ...

    def cancel_run(self, run_id: str, *, by: str, reason: str, now: datetime) -> Run:
        """Cancel a run that has not started (``pending`` and unclaimed, or awaiting
        approval). Raises NotFoundError, or StateConflictError for any other status."""
        ...

    def create_retry(self, run_id: str, retry: NewRun, now: datetime) -> Run:
        """Store ``retry`` as the retry of run ``run_id`` (``incomplete`` or ``failed``, not
        retried before) and link the two, in one transaction. Raises NotFoundError, or
        StateConflictError."""
        ...

    def create_runs(self, runs: Sequence[NewRun], now: datetime) -> list[Run]:
        """``create_run`` for many runs at once (one transaction), in the order given; a run
        asked for before is returned as it is."""
        ...

    def load_run(self, run_id: str) -> RunDetail:
        """Raises NotFoundError."""
        ...

    def list_runs(
        self,
        *,
        status: str | None = None,
        worker_id: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Run]:
        """Runs, newest first, filtered by whatever is given."""
        ...

    def run_counts(self) -> dict[str, int]: ...

    def current_playbook(self, worker_id: str) -> str | None:
        """The playbook of the worker's last joiner/mover run that did not fail outright."""
        ...

    def finished_runs(self, kind: str, since: datetime, until: datetime) -> list[Run]:
        """Runs of ``kind`` that finished verified or incomplete in [since, until)."""
        ...

    def source_event_ids(self, source: str, prefix: str) -> set[str]: ...


@dataclass(frozen=True, slots=True)
class Acceptance:
    """One HR event for ``Intakes.accept_hr_events``: what ``accept_hr_event`` takes."""

    entry: InboxEntry
    now: datetime
    decide: Callable[[Worker | None, str | None], IntakeDecision]
    needs_playbook: bool = True
    """False: ``decide`` ignores the current playbook (a termination), so it is not read."""


class Intakes(Protocol):
    """The HR inbox: one row per (source, event id, payload), never deleted."""

    def batch(self, jobs: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run ``jobs`` (calls of this store) in ONE transaction, each in its own savepoint;
        a job that raises is rolled back alone and its exception takes its place in the
        result. Raises, storing nothing, if the transaction cannot be committed."""
        ...

    def together(self, work: Callable[[], Any]) -> Any:
        """``work()`` (calls of this store) in ONE transaction without savepoints: if
        anything raises, nothing is stored and the error propagates."""
        ...

    def workers_by_id(self, worker_ids: Collection[str]) -> dict[str, Worker]:
        """The roster workers among ``worker_ids``."""
        ...

    def accept_hr_events(
        self, items: Sequence[Acceptance], prefetched: Mapping[str, Worker] | None = None
    ) -> list[Intake | Exception]:
        """``accept_hr_event`` for each item, in order, as if one after the other in one
        transaction (a later item sees what an earlier one stored: a re-delivery, the roster
        change), but read with one statement per table and written with one per table. A
        ``decide`` that raises leaves no trace of its item and its exception takes the item's
        place. Raises if the rows cannot be written (then the caller stores nothing of the
        batch: call it inside ``together``). ``prefetched``: the items' workers as already read in
        this transaction (``workers_by_id``), so they are not read again."""
        ...

    def accept_hr_event(
        self,
        event: InboxEntry,
        now: datetime,
        decide: Callable[[Worker | None, str | None], IntakeDecision],
        *,
        replace_pending: str | None = None,
    ) -> Intake:
        """Store the inbox row, the roster change and the run ``decide`` asks for, in one
        transaction. ``decide(known worker, their current playbook)`` runs inside it and may
        raise (then nothing is stored). A re-delivery of the same payload returns the first
        one's outcome without calling ``decide``; another payload under a known event id is
        stored as a ``conflict``. With ``replace_pending`` that pending row becomes this
        outcome, keeping its id and receipt time."""
        ...

    def record_inbox(
        self, entry: InboxEntry, now: datetime, *, replace_pending: str | None = None
    ) -> Intake:
        """Store a row that starts no run (``entry.outcome``), with the same re-delivery and
        conflict rules as ``accept_hr_event``."""
        ...

    def claim_pending(self, now: datetime, hold_until: datetime, limit: int) -> list[InboxEvent]:
        """Pending rows due for a retry, held until ``hold_until`` for this replica."""
        ...

    def reschedule_pending(
        self,
        inbox_id: str,
        *,
        attempts: int,
        next_attempt_at: datetime,
        detail: str,
        escalated_at: datetime | None = None,
    ) -> None:
        """A pending row's look-up failed again: when to try next, and why it waits."""
        ...

    def worker_by_email(self, email: str) -> Worker | None:
        """The roster worker with this work email (case-insensitive), if exactly one has it."""
        ...

    def linked_worker(self, source: str, person_id: str) -> str | None: ...

    def link_person(self, source: str, person_id: str, worker_id: str, now: datetime) -> None:
        """Remember that ``source`` knows ``worker_id`` as ``person_id`` (latest wins)."""
        ...

    def inbox_event(self, inbox_id: str) -> InboxEvent | None: ...

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
        """Inbox rows, newest first, filtered by whatever is given."""
        ...

    def inbox_counts(self) -> dict[tuple[str, str], int]:
        """Inbox rows by (source, outcome), for ``/metrics``."""
        ...

    def get_worker(self, worker_id: str) -> Worker | None: ...


class Roster(Protocol):
    def get_worker(self, worker_id: str) -> Worker | None: ...

    def upsert_worker(self, worker: Worker) -> None: ...

    def seed_workers(self, workers: Sequence[Worker]) -> int:
        """Insert workers not yet in the roster; returns how many were added."""
        ...

    def import_workers(
        self, entries: Sequence[RosterEntry], *, complete: bool, now: datetime
    ) -> RosterCounts:
        """Insert or refresh roster rows (a value the file leaves blank never erases what is
        known); with ``complete`` active workers missing from the file become ``absent``."""
        ...

    def mark_absent(self, listed: Collection[str], now: datetime) -> int:
        """Active workers not in ``listed`` become ``absent`` (the end of a complete import
        that came in batches); returns how many."""
        ...

    def workers(self) -> list[Worker]: ...

    def link_account(self, link: Link) -> None: ...

    def find_workers(
        self, *, q: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[Worker]:
        """Workers by id; ``q`` matches a part of the id, name or email (any case)."""
        ...

    def links_of(self, worker_id: str) -> list[Link]:
        """The worker's known accounts, one per system."""
        ...

    def links_by_account(self) -> dict[tuple[str, str], str]:
        """(system, account id) -> worker id, for every account lifecycle has linked."""
        ...


class EvidenceStore(Protocol):
    def leaf_hashes(self, from_seq: int = 0) -> list[bytes]:
        """Raises StoreError if the log has a gap."""
        ...

    def append_evidence(
        self, run_id: str, worker_id: str, build: RecordBuilder, now: datetime
    ) -> tuple[int, list[bytes]]:
        """Append the run's record once; (seq, [its leaf hash] if this call appended it)."""
        ...

    def evidence_records(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        worker_id: str | None = None,
        batch: int = 1000,
    ) -> Iterator[tuple[int, bytes]]: ...

    def save_checkpoint(self, tree_size: int, root: bytes, note: str, now: datetime) -> None: ...

    def latest_checkpoint(self) -> Checkpoint | None: ...


class Tokens(Protocol):
    """API tokens: one row per token ever issued (revoked ones stay); hashes only."""

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
        """Store a token; returns (it, the token it replaced). A token not revoked already has
        the name: ConflictError, or with ``replace`` that one is revoked in the same
        transaction and returned."""
        ...

    def token_by_hash(self, token_sha256: str) -> ApiToken | None:
        """The token with this hash that is not revoked (an expired one too: the caller says
        why it refuses it)."""
        ...

    def list_tokens(self, *, include_revoked: bool = True) -> list[ApiToken]:
        """Every token, oldest first."""
        ...

    def revoke_token(self, token_id: int, now: datetime) -> ApiToken:
        """Revoke the token (a revoked one stays as it was); raises NotFoundError."""
        ...

    def touch_token(self, token_id: int, now: datetime) -> None:
        """Record that the token authenticated a request at ``now``."""
        ...


class ConsoleSessions(Protocol):
    """Signed-in console users, by the SHA-256 of their cookie's session id."""

    def add_console_session(self, session: ConsoleSession, idle: timedelta) -> None:
        """Store a new session (and clear sessions idle for longer than ``idle``)."""
        ...

    def touch_console_session(
        self, id_sha256: str, now: datetime, idle: timedelta
    ) -> ConsoleSession | None:
        """The session, its last-seen time set to ``now``; None (and the row gone) when it
        was idle for longer than ``idle``."""
        ...

    def end_console_session(self, id_sha256: str) -> None: ...


class JobTimes(Protocol):
    def job_last_run(self, name: str) -> datetime | None: ...

    def mark_job_run(self, name: str, at: datetime) -> None: ...


class LeaderLock(Protocol):
    """Who runs the scheduler among replicas; blocking, call in a worker thread."""

    @property
    def held(self) -> bool: ...

    def try_acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...


class Health(Protocol):
    def ping(self) -> None:
        """Raises StoreError when the database does not answer."""
        ...


class Store(
    RunQueue,
    Runs,
    Intakes,
    Roster,
    EvidenceStore,
    Tokens,
    JobTimes,
    Health,
    ConsoleSessions,
    Protocol,
):
    """Everything at once: what the composition root holds."""

    @property
    def is_sqlite(self) -> bool: ...

    def leader_lock(self) -> LeaderLock: ...

    def dispose(self) -> None: ...
