"""The store queries of joiners/movers, sweeps and the scheduler, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lifecycle.domain import (
    AccountRef,
    DisablePlan,
    NewRun,
    OffboardPlan,
    OnboardPlan,
    Plan,
    PolicyPlan,
    RosterEntry,
    RunKind,
    VersionRef,
    Worker,
)
from lifecycle.engine.kinds import default_kinds
from lifecycle.store.ports import Finish
from lifecycle.store.sql import SqlStore

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
KINDS = default_kinds()
POLICY = VersionRef(name="p", sha256="0" * 64)


@pytest.fixture
def store(new_store: SqlStore) -> SqlStore:
    new_store.seed_workers([Worker(worker_id=f"W{n}", updated_at=NOW) for n in range(1, 4)])
    return new_store


def plan(kind: RunKind, name: str | None = None) -> Plan:
    if kind is RunKind.ONBOARD:
        return OnboardPlan(
            target_playbook=VersionRef(name=name or "x", sha256="0" * 64), targets={}
        )
    if kind is RunKind.OFFBOARD:
        return OffboardPlan(targets=("idp",))
    if kind is RunKind.POLICY:
        return PolicyPlan(enforced=POLICY, baselines={"idp": {"mfa": True}})
    return DisablePlan(
        enforced=POLICY,
        targets={"idp": AccountRef(account_id="acct-1", login="w1@example.org")},
    )


def new_run(
    worker_id: str, p: Plan, *, actor: str, source: str, key: str, owner: str | None = None
) -> NewRun:
    return KINDS.new_run(
        p,
        worker_id=worker_id,
        actor=actor,
        source=source,
        source_event_id=key,
        payload_sha256="0" * 64,
        reason="r",
        lease_owner=owner,
        lease_until=NOW + timedelta(seconds=30) if owner else None,
    )


def test_runs_with_their_own_steps_are_idempotent_per_source_event(store: SqlStore) -> None:
    first = store.create_run(
        new_run("W1", plan(RunKind.ONBOARD, "billing-va"), actor="a", source="admin", key="e1"),
        NOW,
    )
    again = store.create_run(
        new_run("W1", plan(RunKind.ONBOARD, "billing-va"), actor="a", source="admin", key="e1"),
        NOW,
    )
    assert again.id == first.id
    assert store.current_playbook("W1") == "billing-va"
    assert store.source_event_ids("admin", "e") == {"e1"}
    disable = store.create_run(
        new_run("W1", plan(RunKind.DISABLE), actor="a", source="scheduler", key="d1"), NOW
    )
    detail = store.load_run(disable.id)
    assert [(s.action, s.account_id) for s in detail.steps] == [
        ("disable", "acct-1"),
        ("revoke_sessions", "acct-1"),
        ("verify", "acct-1"),
    ]


def test_a_leased_run_is_not_claimed_by_others(store: SqlStore) -> None:
    run = store.create_run(
        new_run(
            "W2", plan(RunKind.POLICY), actor="scheduler:x", source="scheduler", key="k", owner="me"
        ),
        NOW,
    )
    assert store.claim_runs("other", NOW, timedelta(seconds=30), 10) == []
    later = NOW + timedelta(seconds=31)
    assert [c.run_id for c in store.claim_runs("other", later, timedelta(seconds=30), 10)] == [
        run.id
    ]


def test_finished_terminations_exclude_reverifications(store: SqlStore) -> None:
    ids = []
    for kind, key in ((RunKind.OFFBOARD, "a"), (RunKind.REVERIFY, "b")):
        p = (
            plan(RunKind.OFFBOARD)
            if kind is RunKind.OFFBOARD
            else KINDS[kind].plan.model_validate(
                {"kind": "reverify", "targets": ["idp"], "of_run": "x", "after_minutes": 5}
            )
        )
        run = store.create_run(new_run("W3", p, actor="x", source="s", key=key), NOW)
        [lease] = [
            c for c in store.claim_runs("r", NOW, timedelta(seconds=30), 10) if c.run_id == run.id
        ]
        store.finish_runs(
            [Finish(lease, "W3", "verified", NOW, 5, lambda seq: (f"r{seq}", b"x", b"\x00" * 32))],  # type: ignore[arg-type]
            NOW,
        )
        ids.append(run.id)
    found = store.finished_runs(
        RunKind.OFFBOARD, NOW - timedelta(minutes=1), NOW + timedelta(minutes=1)
    )
    assert [r.id for r in found] == ids[:1]


def test_job_times_and_workers(store: SqlStore) -> None:
    assert store.job_last_run("policy") is None
    store.mark_job_run("policy", NOW)
    store.mark_job_run("policy", NOW + timedelta(hours=1))
    assert store.job_last_run("policy") == NOW + timedelta(hours=1)
    counts = store.import_workers(
        [RosterEntry(worker_id="W1", job_code="VA-BILL")], complete=True, now=NOW
    )
    assert (counts.added, counts.updated, counts.absent) == (0, 1, 2)
    assert [w.status for w in store.workers()] == ["active", "absent", "absent"]
    # (An older database getting the newer columns: tests/integration/store/test_migrations.py.)
