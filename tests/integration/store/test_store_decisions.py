"""Decisions taken by hand on both databases: approve/reject a run awaiting approval, cancel a
run that has not started, retry a finished run, and the suppression of a termination's
re-verifications (a live one loses its lease: the replica executing it is fenced out)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from lifecycle.domain import NewRun, OffboardPlan, ReverifyPlan, RunStatus, Worker
from lifecycle.engine.kinds import default_kinds
from lifecycle.exceptions import StateConflictError
from lifecycle.store.ports import StepProgress, Suppression
from lifecycle.store.sql import SqlStore

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
KINDS = default_kinds()


@pytest.fixture
def store(new_store: SqlStore) -> SqlStore:
    new_store.seed_workers([Worker(worker_id="W0001", updated_at=NOW)])
    return new_store


def offboard(key: str, **fields: object) -> NewRun:
    run = KINDS.new_run(
        OffboardPlan(targets=("idp",)),
        worker_id="W0001",
        actor="admin:alice",
        source="admin",
        source_event_id=key,
        payload_sha256="0" * 64,
    )
    return replace(run, **fields)  # type: ignore[arg-type]


def reverify(of: str, minutes: int) -> NewRun:
    return KINDS.new_run(
        ReverifyPlan(targets=("idp",), of_run=of, after_minutes=minutes),
        worker_id="W0001",
        actor="scheduler:reverify",
        source="scheduler",
        source_event_id=f"reverify:{of}:+{minutes}m",
        payload_sha256="0" * 64,
    )


def test_approve_reject_and_the_state_they_need(store: SqlStore) -> None:
    waiting = store.create_run(offboard("a", awaiting_approval=True), NOW)
    assert waiting.status == RunStatus.AWAITING_APPROVAL
    assert store.claim_runs("r1", NOW, timedelta(seconds=30), 10) == []
    approved = store.decide_run(waiting.id, approve=True, by="admin:bob", reason="ok", now=NOW)
    assert approved.status == RunStatus.PENDING and approved.approved is not None
    assert (approved.approved.by, approved.approved.reason) == ("admin:bob", "ok")
    with pytest.raises(StateConflictError):
        store.decide_run(waiting.id, approve=False, by="admin:bob", reason="no", now=NOW)
    assert [lease.run_id for lease in store.claim_runs("r1", NOW, timedelta(seconds=30), 10)] == [
        waiting.id
    ]

    other = store.create_run(offboard("b", awaiting_approval=True), NOW)
    rejected = store.decide_run(other.id, approve=False, by="admin:bob", reason="no", now=NOW)
    assert rejected.status == RunStatus.CANCELLED and rejected.rejected is not None
    assert rejected.approved is None


def test_cancel_only_what_has_not_started_and_retry_once(store: SqlStore) -> None:
    future = store.create_run(offboard("f", effective_at=NOW + timedelta(days=1)), NOW)
    cancelled = store.cancel_run(future.id, by="admin:alice", reason="extended", now=NOW)
    assert cancelled.status == RunStatus.CANCELLED and cancelled.cancelled is not None
    with pytest.raises(StateConflictError):
        store.cancel_run(future.id, by="admin:alice", reason="again", now=NOW)
    running = store.create_run(offboard("r"), NOW)
    [lease] = store.claim_runs("r1", NOW, timedelta(seconds=30), 10)
    assert lease.run_id == running.id
    with pytest.raises(StateConflictError):
        store.cancel_run(running.id, by="admin:alice", reason="late", now=NOW)
    with pytest.raises(StateConflictError, match="incomplete or failed"):
        store.create_retry(running.id, offboard("retry:r", retry_of=running.id), NOW)


def test_suppression_cancels_live_reverifications_fences_them_and_stores_the_rest(
    store: SqlStore,
) -> None:
    live = store.create_run(
        replace(reverify("T1", 5), lease_owner="r1", lease_until=NOW + timedelta(minutes=1)), NOW
    )
    detail = store.load_run(live.id)
    lease = detail.run.lease
    assert lease is not None
    suppress = Suppression(
        "scheduler",
        "reverify:T1:",
        (reverify("T1", 5), reverify("T1", 1440)),
        "admin:bob",
        "suppressed: restored",
    )
    restore = store.create_run(offboard("restore"), NOW, suppress=suppress)
    assert restore.status == RunStatus.PENDING
    runs = {r.source_event_id: r for r in store.list_runs(kind="reverify")}
    assert set(runs) == {"reverify:T1:+5m", "reverify:T1:+1440m"}
    assert {r.status for r in runs.values()} == {RunStatus.CANCELLED}
    assert runs["reverify:T1:+5m"].id == live.id
    assert all(r.cancelled and r.cancelled.reason == "suppressed: restored" for r in runs.values())
    # The replica that was executing the live one can write nothing more.
    refused = store.save_progress([StepProgress(lease, detail.steps[0])])
    assert refused == {live.id}
    # Another termination's re-verifications are left alone.
    other = store.create_run(reverify("T10", 5), NOW)
    store.create_run(offboard("restore-2"), NOW, suppress=suppress)
    assert store.load_run(other.id).run.status == RunStatus.PENDING
