"""The store contract on both databases: intake atomicity and idempotence, claiming that is
correct with several replicas, fenced leases, gap-free evidence appends."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, func, select

from lifecycle.domain import InboxOutcome, Intake, Lease, Worker
from lifecycle.engine.kinds import default_kinds
from lifecycle.exceptions import ConflictError, UnknownWorkerError
from lifecycle.hr.event import HrEvent, HrEventType
from lifecycle.services import intake
from lifecycle.services.offboard import start_offboard
from lifecycle.services.playbooks import PlaybookLibrary
from lifecycle.store.ports import Deferral, Finish, StepProgress
from lifecycle.store.sql import SqlStore
from lifecycle.store.sql.tables import EvidenceRow, InboxRow, RunRow, StepRow
from tests.servers import drop_schema

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
SYSTEMS = ["ehr", "idp", "phone"]


KINDS = default_kinds()


@pytest.fixture
def store(new_store: SqlStore) -> SqlStore:
    new_store.seed_workers([Worker(worker_id=f"W{n:04d}", updated_at=NOW) for n in range(1, 41)])
    return new_store


def accept(store: SqlStore, event: HrEvent, now: datetime = NOW) -> Intake:
    return intake.accept(store, KINDS, PlaybookLibrary(), SYSTEMS, event, now)


def ids(leases: list[Lease]) -> list[str]:
    return [lease.run_id for lease in leases]


def finish(store: SqlStore, lease: Lease, at: datetime) -> None:
    """End a claimed run (verified) with a placeholder record."""

    def build(seq: int) -> tuple[str, bytes, bytes]:
        return f"rec-{lease.run_id}", f"record {seq}".encode(), seq.to_bytes(32, "big")

    store.finish_runs([Finish(lease, "W", "verified", at, 1, build)], at)  # type: ignore[arg-type]


def termination(
    worker: str, event_id: str, effective: datetime | None = None, payload: str = "0" * 64
) -> HrEvent:
    return HrEvent(
        source="hr",
        event_id=event_id,
        type=HrEventType.TERMINATION,
        worker_id=worker,
        payload_sha256=payload,
        effective_at=effective,
    )


def count(store: SqlStore, table: type[SQLModel]) -> int:
    with Session(store.engine) as s:
        return int(s.exec(select(func.count()).select_from(table)).one())


def test_termination_is_stored_with_its_run_and_steps_in_one_go(store: SqlStore) -> None:
    accepted = accept(store, termination("W0001", "evt-1"))
    assert accepted.run_id is not None
    assert not accepted.duplicate
    detail = store.load_run(accepted.run_id)
    assert detail.run.status == "pending"
    assert detail.run.received_at == NOW
    assert detail.run.received_at.tzinfo is not None
    assert {(s.system, s.action) for s in detail.steps} == {
        (c, a) for c in SYSTEMS for a in ("disable", "revoke_sessions", "remove_access", "verify")
    }


def test_redelivery_returns_the_same_run_and_stores_nothing_more(store: SqlStore) -> None:
    first = accept(store, termination("W0001", "evt-1"))
    again = accept(store, termination("W0001", "evt-1"))
    assert again.duplicate
    assert again.run_id == first.run_id
    assert count(store, RunRow) == 1
    assert count(store, InboxRow) == 1
    assert count(store, StepRow) == 12


def test_a_known_event_id_with_another_payload_is_stored_as_a_conflict(store: SqlStore) -> None:
    first = accept(store, termination("W0040", "dup1"))
    clash = accept(store, termination("W0041", "dup1", payload="1" * 64))
    assert clash.outcome == InboxOutcome.CONFLICT
    assert clash.run_id is None
    assert not clash.duplicate
    assert clash.first_event_id == first.event_id
    assert "payload differs" in (clash.detail or "")
    again = accept(store, termination("W0041", "dup1", payload="1" * 64))
    assert (again.outcome, again.duplicate, again.event_id) == (
        InboxOutcome.CONFLICT,
        True,
        clash.event_id,
    )
    # The first delivery's own re-delivery still answers with its run.
    redelivery = accept(store, termination("W0040", "dup1"))
    assert (redelivery.run_id, redelivery.duplicate) == (first.run_id, True)
    assert count(store, RunRow) == 1
    assert count(store, InboxRow) == 2


def test_different_payloads_racing_under_one_new_id_make_one_run(store: SqlStore) -> None:
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def deliver(n: int) -> None:
        barrier.wait()
        event = termination(f"W000{n + 1}", "race-1", payload=str(n) * 64)
        outcomes.append(accept(store, event).outcome)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "conflict", "conflict", "run"]
    assert count(store, RunRow) == 1


def test_an_inbox_keyed_by_event_id_alone_is_rekeyed_in_place(store: SqlStore) -> None:
    """A database from the release before conflict detection upgrades with its rows kept."""
    intake = accept(store, termination("W0001", "old-1"))
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE inbox SET outcome = NULL, detail = NULL")
        if store.is_postgres:
            conn.exec_driver_sql("ALTER TABLE inbox DROP CONSTRAINT uq_inbox_delivery")
            conn.exec_driver_sql(
                "ALTER TABLE inbox ADD CONSTRAINT uq_inbox_source_event "
                "UNIQUE (source, source_event_id)"
            )
        else:
            conn.exec_driver_sql("ALTER TABLE inbox RENAME TO inbox_new")
            conn.exec_driver_sql("DROP INDEX ix_inbox_worker_id")
            conn.exec_driver_sql(
                "CREATE TABLE inbox (id VARCHAR NOT NULL PRIMARY KEY, source VARCHAR NOT NULL, "
                "source_event_id VARCHAR NOT NULL, type VARCHAR NOT NULL, "
                "worker_id VARCHAR NOT NULL, received_at DATETIME NOT NULL, "
                "effective_at DATETIME, reason VARCHAR, payload_sha256 VARCHAR NOT NULL, "
                "run_id VARCHAR, CONSTRAINT uq_inbox_source_event UNIQUE "
                "(source, source_event_id))"
            )
            conn.exec_driver_sql("CREATE INDEX ix_inbox_worker_id ON inbox (worker_id)")
            conn.exec_driver_sql(
                "INSERT INTO inbox SELECT id, source, source_event_id, type, worker_id, "
                "received_at, effective_at, reason, payload_sha256, run_id FROM inbox_new"
            )
            conn.exec_driver_sql("DROP TABLE inbox_new")
        # The inbox is back as release 0.1.0 made it: so is the recorded schema revision.
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    store.create_schema()
    store.create_schema()  # twice: the upgrade is idempotent
    with Session(store.engine) as s:
        row = s.exec(select(InboxRow)).one()
    assert (row.id, row.run_id, row.outcome) == (intake.event_id, intake.run_id, "run")
    clash = accept(store, termination("W0002", "old-1", payload="1" * 64))
    assert clash.outcome == InboxOutcome.CONFLICT


def test_unknown_worker_is_refused_and_nothing_is_stored(store: SqlStore) -> None:
    with pytest.raises(UnknownWorkerError):
        accept(store, termination("W9999", "evt-x"))
    assert count(store, RunRow) == 0
    assert count(store, InboxRow) == 0


def test_hire_of_a_new_worker_adds_them_to_the_roster(store: SqlStore) -> None:
    hire = HrEvent(
        source="hr",
        event_id="evt-h",
        type=HrEventType.HIRE,
        worker_id="W0500",
        payload_sha256="1" * 64,
        email="new@example.org",
        job_code="VA-SCHED",
    )
    accepted = accept(store, hire)
    assert accepted.run_id is None
    worker = store.get_worker("W0500")
    assert worker is not None
    assert worker.job_code == "VA-SCHED"


def test_concurrent_replicas_never_claim_the_same_run(store: SqlStore) -> None:
    for n in range(1, 41):
        accept(store, termination(f"W{n:04d}", f"evt-{n}"))
    claimed: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def replica(owner: str) -> None:
        barrier.wait()
        mine: list[str] = []
        while batch := store.claim_runs(owner, NOW, timedelta(seconds=30), 3):
            mine += ids(batch)
        claimed[owner] = mine

    threads = [threading.Thread(target=replica, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [run_id for ids in claimed.values() for run_id in ids]
    assert len(all_ids) == 40
    assert len(set(all_ids)) == 40


def test_future_dated_run_is_not_claimed_before_it_is_due(store: SqlStore) -> None:
    later = NOW + timedelta(hours=2)
    accept(store, termination("W0002", "evt-f", later))
    assert store.claim_runs("r1", NOW, timedelta(seconds=30), 10) == []
    assert store.next_due(NOW) == later
    assert len(store.claim_runs("r1", later, timedelta(seconds=30), 10)) == 1
    assert store.next_due(later) is None


def test_a_lease_protects_a_run_until_it_expires(store: SqlStore) -> None:
    accept(store, termination("W0003", "evt-l"))
    lease = timedelta(seconds=30)
    [held] = store.claim_runs("r1", NOW, lease, 10)
    assert store.claim_runs("r2", NOW + timedelta(seconds=10), lease, 10) == []
    assert store.renew_leases([held], NOW + timedelta(seconds=50)) == []
    assert store.claim_runs("r2", NOW + timedelta(seconds=40), lease, 10) == []
    # r1 died: once its lease lapses another replica takes the run over
    [taken] = store.claim_runs("r2", NOW + timedelta(seconds=51), lease, 10)
    assert taken.run_id == held.run_id
    assert taken.epoch > held.epoch
    assert store.renew_leases([held], NOW + timedelta(seconds=90)) == [held.run_id]


def test_claim_skips_rows_locked_by_another_replica(postgres_url: str) -> None:
    """PostgreSQL only: row locks are its mechanism (SQLite serialises whole transactions)."""
    drop_schema(postgres_url)
    store = SqlStore(postgres_url)
    store.create_schema()
    store.seed_workers([Worker(worker_id=f"W000{n}", updated_at=NOW) for n in (4, 5)])
    a = accept(store, termination("W0004", "evt-a")).run_id
    b = accept(store, termination("W0005", "evt-b")).run_id
    with Session(store.engine) as other:  # another replica is mid-claim on run a
        other.exec(select(RunRow).where(RunRow.id == a).with_for_update()).one()
        claimed = store.claim_runs("r2", NOW, timedelta(seconds=30), 10)  # must not block
        other.rollback()
    store.dispose()
    assert ids(claimed) == [b]


def test_evidence_appends_are_gap_free_and_once_per_run(store: SqlStore) -> None:
    run_ids = [accept(store, termination(f"W{n:04d}", f"evt-{n}")).run_id for n in range(1, 21)]

    def build(seq: int) -> tuple[str, bytes, bytes]:
        return f"rec-{seq}", f"record {seq}".encode(), seq.to_bytes(32, "big")

    def append(run_id: str) -> None:
        store.append_evidence(run_id, "W", build, NOW)

    threads = [threading.Thread(target=append, args=(r,)) for r in run_ids for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Session(store.engine) as s:
        seqs = sorted(s.exec(select(EvidenceRow.seq)).all())
    assert seqs == list(range(20))
    assert store.leaf_hashes() == [n.to_bytes(32, "big") for n in range(20)]
    seq, _ = store.append_evidence(run_ids[0], "W", build, NOW)
    assert store.load_run(run_ids[0]).run.evidence_seq == seq


def test_evidence_cannot_be_rewritten_or_deleted_within_retention(store: SqlStore) -> None:
    run_id = accept(store, termination("W0010", "evt-r")).run_id
    assert run_id is not None
    store.append_evidence(run_id, "W0010", lambda seq: ("r", b"record", b"\x00" * 32), NOW)
    store.save_checkpoint(1, b"\x01" * 32, "note", NOW)
    for statement in (
        "UPDATE evidence SET worker_id = 'W0001'",
        "DELETE FROM evidence",
        "UPDATE checkpoints SET note = 'forged'",
        "DELETE FROM checkpoints",
    ):
        with (
            pytest.raises(Exception, match=r"append-only|kept 6 years"),
            store.engine.begin() as conn,
        ):
            conn.exec_driver_sql(statement)
    assert store.leaf_hashes() == [b"\x00" * 32]
    assert store.latest_checkpoint() is not None


def test_evidence_older_than_retention_may_be_deleted(store: SqlStore) -> None:
    run_id = accept(store, termination("W0011", "evt-o")).run_id
    assert run_id is not None
    long_ago = NOW - timedelta(days=366 * 6 + 2)
    store.append_evidence(run_id, "W0011", lambda seq: ("r", b"old", b"\x02" * 32), long_ago)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM evidence")
    assert store.leaf_hashes() == []


def test_one_workers_runs_execute_in_order(store: SqlStore) -> None:
    first = accept(store, termination("W0012", "evt-1st")).run_id
    later = NOW + timedelta(seconds=1)
    second = start_offboard(
        store, KINDS, "W0012", reason="again", actor="admin:x", systems=SYSTEMS, now=later
    ).id
    other = accept(store, termination("W0013", "evt-oth"), later).run_id
    lease = timedelta(seconds=30)
    claimed = store.claim_runs("r1", later, lease, 10)
    assert set(ids(claimed)) == {first, other}
    finish(store, next(c for c in claimed if c.run_id == first), later)
    assert ids(store.claim_runs("r2", later, lease, 10)) == [second]


def test_a_replica_whose_lease_was_taken_over_can_write_nothing(store: SqlStore) -> None:
    run_id = accept(store, termination("W0014", "evt-fence")).run_id
    lease = timedelta(seconds=30)
    [stale] = store.claim_runs("r1", NOW, lease, 10)
    step = store.load_run(stale.run_id).steps[0]
    assert store.save_progress([StepProgress(stale, replace(step, attempts=1))]) == set()
    [fresh] = store.claim_runs("r2", NOW + timedelta(seconds=31), lease, 10)  # r1 paused
    assert fresh.run_id == run_id
    assert store.save_progress([StepProgress(stale, replace(step, attempts=7))]) == {run_id}
    assert store.load_run(run_id).steps[0].attempts == 1
    finish(store, stale, NOW + timedelta(seconds=32))
    assert store.load_run(run_id).run.status == "running"
    assert store.leaf_hashes() == []
    assert not store.defer_run(Deferral(stale, NOW + timedelta(minutes=1)))
    finish(store, fresh, NOW + timedelta(seconds=33))
    detail = store.load_run(run_id)
    assert (detail.run.status, detail.run.evidence_seq) == ("verified", 0)


def test_a_restarted_instance_reclaims_its_own_runs_at_once(store: SqlStore) -> None:
    run_id = accept(store, termination("W0015", "evt-own")).run_id
    lease = timedelta(seconds=30)
    [before] = store.claim_runs("node-a", NOW, lease, 10)
    later = NOW + timedelta(seconds=1)  # the lease is still live
    assert store.claim_runs("node-b", later, lease, 10, reclaim_own=True) == []
    assert store.claim_runs("node-a", later, lease, 10) == []
    [again] = store.claim_runs("node-a", later, lease, 10, reclaim_own=True)
    assert (again.run_id, again.owner) == (run_id, "node-a")
    assert again.epoch > before.epoch  # whatever the old process still writes is refused


def test_a_deferred_run_waits_running_for_its_next_attempt(store: SqlStore) -> None:
    run_id = accept(store, termination("W0016", "evt-wait")).run_id
    lease = timedelta(seconds=30)
    [held] = store.claim_runs("r1", NOW, lease, 10)
    retry_at = NOW + timedelta(minutes=2)
    assert store.defer_run(Deferral(held, retry_at))
    run = store.load_run(run_id).run
    assert (run.status, run.next_attempt_at, run.lease) == ("running", retry_at, None)
    assert store.next_due(NOW) == retry_at
    assert store.claim_runs("r2", NOW + timedelta(minutes=1), lease, 10) == []
    assert ids(store.claim_runs("r2", retry_at, lease, 10)) == [run_id]


def test_runs_are_unique_per_source_event_in_the_database(store: SqlStore) -> None:
    run_id = accept(store, termination("W0017", "evt-uniq")).run_id
    with Session(store.engine) as s:
        row = s.exec(select(RunRow).where(RunRow.id == run_id)).one()
        copy = RunRow.model_validate(row.model_dump() | {"id": "another"})
    with Session(store.engine) as s:
        s.add(copy)
        with pytest.raises(IntegrityError):
            s.commit()


def test_a_token_name_is_unique_among_live_tokens_and_rotation_frees_it(store: SqlStore) -> None:
    now = datetime(2026, 12, 10, 9, 0, tzinfo=UTC)
    first, replaced = store.add_token("ops", "admin", "a" * 64, now)
    assert replaced is None
    with pytest.raises(ConflictError):
        store.add_token("ops", "admin", "b" * 64, now)

    second, replaced = store.add_token("ops", "admin", "c" * 64, now, replace=True)

    assert replaced is not None
    assert replaced.id == first.id
    assert replaced.revoked_at == now
    assert store.token_by_hash("a" * 64) is None
    assert store.token_by_hash("c" * 64) == second
    assert second.id is not None
    store.touch_token(second.id, now)
    revoked = store.revoke_token(second.id, now)
    assert revoked.revoked_at == now
    assert revoked.last_used_at == now
    third, _ = store.add_token("ops", "auditor", "d" * 64, now, expires_at=now)
    assert third.expires_at == now
    assert [t.name for t in store.list_tokens(include_revoked=False)] == ["ops"]
    assert len(store.list_tokens()) == 3
