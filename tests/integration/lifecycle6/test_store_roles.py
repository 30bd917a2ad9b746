"""The store queries of joiners/movers, sweeps and the scheduler, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import inspect
from sqlmodel import SQLModel

from lifecycle.models import RunKind, RunStatus, WorkerRow
from lifecycle.store import RunPlan, Store

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> Iterator[Store]:
    url = (
        f"sqlite:///{tmp_path}/store.db"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    store = Store(url)
    SQLModel.metadata.drop_all(store.engine)
    store.create_schema()
    store.seed_workers([WorkerRow(worker_id=f"W{n}", updated_at=NOW) for n in range(1, 4)])
    yield store
    store.dispose()


def plan(kind: RunKind, name: str | None = None) -> RunPlan:
    return RunPlan(
        kind=kind,
        steps=[("idp", "disable", 0), ("idp", "verify", 1)],
        plan_json="{}",
        playbook_name=name,
        playbook_sha256="0" * 64 if name else None,
        accounts={"idp": ("acct-1", "w1@example.org")},
    )


def test_runs_with_their_own_steps_are_idempotent_per_source_event(store: Store) -> None:
    first = store.create_run(
        "W1",
        plan(RunKind.ONBOARD, "billing-va"),
        reason="r",
        actor="a",
        now=NOW,
        source="admin",
        source_event_id="e1",
    )
    again = store.create_run(
        "W1",
        plan(RunKind.ONBOARD, "billing-va"),
        reason="r",
        actor="a",
        now=NOW,
        source="admin",
        source_event_id="e1",
    )
    assert again.id == first.id
    detail = store.load_run(first.id)
    assert [(s.action, s.account_id) for s in detail.steps] == [
        ("disable", "acct-1"),
        ("verify", "acct-1"),
    ]
    assert store.current_playbook("W1") == "billing-va"
    assert store.source_event_ids("admin", "e") == {"e1"}


def test_a_leased_run_is_not_claimed_by_others(store: Store) -> None:
    run = store.create_run(
        "W2",
        plan(RunKind.POLICY),
        reason="r",
        actor="scheduler:x",
        now=NOW,
        source="scheduler",
        source_event_id="k",
        lease_owner="me",
        lease_until=NOW + timedelta(seconds=30),
    )
    assert store.claim_runs("other", NOW, timedelta(seconds=30), 10) == []
    later = NOW + timedelta(seconds=31)
    assert store.claim_runs("other", later, timedelta(seconds=30), 10) == [run.id]


def test_finished_terminations_exclude_scheduler_runs(store: Store) -> None:
    ids = []
    for actor, key in (("admin:x", "a"), ("scheduler:reverify", "b")):
        run = store.create_run(
            "W3",
            plan(RunKind.OFFBOARD),
            reason="r",
            actor=actor,
            now=NOW,
            source="s",
            source_event_id=key,
        )
        store.finish_run(run.id, status=RunStatus.VERIFIED, finished_at=NOW, time_to_revoke_ms=5)
        ids.append(run.id)
    found = store.finished_offboards(NOW - timedelta(minutes=1), NOW + timedelta(minutes=1))
    assert [r.id for r in found] == ids[:1]


def test_job_times_workers_and_schema_upgrade(store: Store) -> None:
    assert store.job_last_run("policy") is None
    store.mark_job_run("policy", NOW)
    store.mark_job_run("policy", NOW + timedelta(hours=1))
    assert store.job_last_run("policy") == NOW + timedelta(hours=1)
    added, updated, absent = store.import_workers(
        [WorkerRow(worker_id="W1", job_code="VA-BILL", updated_at=NOW)], complete=True, now=NOW
    )
    assert (added, updated, absent) == (0, 1, 2)
    assert [w.status for w in store.workers()] == ["active", "absent", "absent"]
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN plan_json")
    store.create_schema()
    assert "plan_json" in {c["name"] for c in inspect(store.engine).get_columns("runs")}
