"""Suspend, restore with a second admin's approval, rehire, cancel and retry, on the memory
connectors and the SQL store, executed by the one executor."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from lifecycle.domain import RunStatus, Worker, WorkerStatus
from lifecycle.exceptions import ForbiddenError, StateConflictError
from lifecycle.hr.event import HrEventType
from lifecycle.services import access
from lifecycle.services.access import AccessContext
from lifecycle.services.sweeps import reverify_terminations
from tests.unit.engine.harness import Harness, memory_systems
from tests.unit.services.helpers import accept_and_run, account, context, library, records

pytestmark = pytest.mark.anyio
ALICE, BOB = "admin:alice", "admin:bob"


def ctx(h: Harness, *, approval: bool = True) -> AccessContext:
    return AccessContext(
        h.store,
        h.kinds,
        library(),
        tuple(sorted(h.connectors)),
        restore_requires_approval=approval,
        reverify_after_minutes=(5, 1440),
    )


def groups(h: Harness, worker: str) -> dict[str, set[str]]:
    return {name: set(account(c, worker).groups) for name, c in h.connectors.items()}


def enabled(h: Harness, worker: str) -> dict[str, bool]:
    return {name: account(c, worker).enabled for name, c in h.connectors.items()}


async def test_a_wrong_termination_is_restored_exactly_after_a_second_admins_approval(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, memory_systems())
    c = ctx(h)
    before = groups(h, "W0003")
    terminated = await h.terminate("W0003")
    assert terminated.run.status == "verified"
    assert set(enabled(h, "W0003").values()) == {False}
    assert h.store.get_worker("W0003").status == WorkerStatus.TERMINATED  # type: ignore[union-attr]

    requested = access.request_restore(
        c, "W0003", reason="wrong worker", actor=ALICE, now=h.clock()
    )
    assert requested.status == RunStatus.AWAITING_APPROVAL
    assert [r.id for r in access.list_approvals(c)] == [requested.id]
    claimed = h.store.claim_runs("test", h.clock(), timedelta(seconds=30), 10)
    assert claimed == []  # nothing runs before the approval

    with pytest.raises(ForbiddenError, match="another admin"):
        access.approve(c, requested.id, actor=ALICE, reason=None, now=h.clock())
    approved = access.approve(c, requested.id, actor=BOB, reason="checked with HR", now=h.clock())
    assert approved.status == RunStatus.PENDING
    assert approved.approved is not None and approved.approved.by == BOB

    detail = await h.execute(requested.id)
    assert detail.run.status == "verified", [
        (s.system, s.action, s.status, s.error) for s in detail.steps
    ]
    assert groups(h, "W0003") == before  # exactly the snapshot, nothing more
    assert set(enabled(h, "W0003").values()) == {True}
    assert h.store.get_worker("W0003").status == WorkerStatus.ACTIVE  # type: ignore[union-attr]

    restore_record = records(h)[-1]
    assert restore_record["kind"] == "restore"
    assert restore_record["reverses"] == terminated.run.evidence_seq
    assert restore_record["approval"] == {"requested_by": ALICE, "approved_by": BOB}
    # W0003's job code is unknown to the playbooks: every restored entitlement is for review.
    restored = {(f["system"], f["entitlement"]) for f in restore_record["findings"]}
    assert restored == {(s, g) for s, gs in before.items() for g in gs}
    assert {a["op"] for a in restore_record["actions"]} == {
        "enable",
        "restore_access",
        "revoke_sessions",
        "verify",
    }
    with pytest.raises(StateConflictError):
        access.approve(c, requested.id, actor=BOB, reason=None, now=h.clock())


async def test_restored_entitlements_the_current_playbook_grants_are_not_findings(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, memory_systems())
    h.store.upsert_worker(replace(h.store.get_worker("W0004"), job_code="VA-BILL"))  # type: ignore[type-var]
    h.connectors["idp"].groups.add("va-billing")
    account(h.connectors["idp"], "W0004").groups.add("va-billing")
    before = groups(h, "W0004")
    await h.terminate("W0004")
    c = ctx(h, approval=False)
    run = access.request_restore(c, "W0004", reason="wrong worker", actor=ALICE, now=h.clock())
    assert run.status == RunStatus.PENDING  # approval switched off
    detail = await h.execute(run.id)
    assert detail.run.status == "verified"
    [record] = [r for r in records(h) if r["kind"] == "restore"]
    assert record["playbook"]["name"] == "billing-va"
    flagged = {(f["system"], f["entitlement"]) for f in record["findings"]}
    # Everything came back; only what billing-va does not grant is for review.
    assert groups(h, "W0004") == before
    assert flagged == {(s, g) for s, gs in before.items() for g in gs} - {("idp", "va-billing")}
    assert record["approval"] == {"requested_by": ALICE, "approved_by": None}


async def test_suspend_keeps_access_and_restore_enables_without_restoring_anything(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, memory_systems())
    c = ctx(h)
    before = groups(h, "W0005")
    run = access.start_suspend(c, "W0005", reason="laptop lost", actor=ALICE, now=h.clock())
    detail = await h.execute(run.id)
    assert detail.run.status == "verified"
    assert [s.action for s in detail.steps if s.system == "idp"] == [
        "disable",
        "revoke_sessions",
        "verify",
    ]
    assert set(enabled(h, "W0005").values()) == {False}
    assert groups(h, "W0005") == before  # access kept
    assert h.store.get_worker("W0005").status == WorkerStatus.SUSPENDED  # type: ignore[union-attr]
    assert records(h)[-1]["kind"] == "suspend"
    with pytest.raises(StateConflictError):
        access.start_suspend(c, "W0005", reason="again", actor=ALICE, now=h.clock())
    # playbook apply is refused on a suspended worker
    from lifecycle.services.provisioning import refuse_disabled

    with pytest.raises(StateConflictError, match="suspended"):
        refuse_disabled(h.store.get_worker("W0005"))  # type: ignore[arg-type]

    restore = access.request_restore(c, "W0005", reason="laptop found", actor=ALICE, now=h.clock())
    access.approve(c, restore.id, actor=BOB, reason=None, now=h.clock())
    detail = await h.execute(restore.id)
    assert detail.run.status == "verified"
    assert {s.status for s in detail.steps if s.action == "restore_access"} == {"not_applicable"}
    assert set(enabled(h, "W0005").values()) == {True}
    assert groups(h, "W0005") == before
    assert h.store.get_worker("W0005").status == WorkerStatus.ACTIVE  # type: ignore[union-attr]


async def test_approving_a_restore_suppresses_the_terminations_reverifications(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, memory_systems())
    c = ctx(h)
    terminated = await h.terminate("W0006")
    restore = access.request_restore(c, "W0006", reason="wrong", actor=ALICE, now=h.clock())
    access.approve(c, restore.id, actor=BOB, reason=None, now=h.clock())
    await h.execute(restore.id)
    suppressed = [r for r in h.store.list_runs(worker_id="W0006", kind="reverify")]
    assert {r.source_event_id for r in suppressed} == {
        f"reverify:{terminated.run.id}:+5m",
        f"reverify:{terminated.run.id}:+1440m",
    }
    assert {r.status for r in suppressed} == {RunStatus.CANCELLED}
    assert all(r.cancelled and "being restored" in (r.cancelled.reason or "") for r in suppressed)
    # Even with the roster saying "terminated" again, the scheduler creates none of them.
    h.store.upsert_worker(replace(h.store.get_worker("W0006"), status="terminated"))  # type: ignore[type-var]
    h.clock.offset = timedelta(days=2)
    assert [
        r for r in await reverify_terminations(context(h), h.clock()) if r.worker_id == "W0006"
    ] == []
    assert set(enabled(h, "W0006").values()) == {True}


async def test_a_rejected_restore_is_cancelled_with_its_reason_and_changes_nothing(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, memory_systems())
    c = ctx(h)
    await h.terminate("W0007")
    restore = access.request_restore(c, "W0007", reason="wrong", actor=ALICE, now=h.clock())
    with pytest.raises(StateConflictError, match="already has restore run"):
        access.request_restore(c, "W0007", reason="twice", actor=BOB, now=h.clock())
    rejected = access.reject(
        c, restore.id, actor=BOB, reason="HR confirms the termination", now=h.clock()
    )
    assert rejected.status == RunStatus.CANCELLED
    assert (
        rejected.rejected is not None and rejected.rejected.reason == "HR confirms the termination"
    )
    assert set(enabled(h, "W0007").values()) == {False}
    assert access.list_approvals(c) == []


async def test_cancel_a_future_termination_and_refuse_to_cancel_a_finished_run(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, memory_systems())
    c = ctx(h)
    from lifecycle.domain import OffboardPlan

    future = h.kinds.new_run(
        OffboardPlan(targets=tuple(sorted(h.connectors))),
        worker_id="W0008",
        actor="hr:demo",
        source="demo",
        source_event_id="evt-future",
        payload_sha256="0" * 64,
        effective_at=h.clock() + timedelta(days=3),
    )
    run = h.store.create_run(future, h.clock())
    cancelled = access.cancel_run(c, run.id, actor=ALICE, reason="contract extended", now=h.clock())
    assert cancelled.status == RunStatus.CANCELLED
    assert cancelled.cancelled is not None
    assert (cancelled.cancelled.by, cancelled.cancelled.reason) == (ALICE, "contract extended")
    h.clock.offset = timedelta(days=4)
    assert h.store.claim_runs("test", h.clock(), timedelta(seconds=30), 10) == []
    assert set(enabled(h, "W0008").values()) == {True}
    done = await h.terminate("W0009")
    with pytest.raises(StateConflictError, match="has not started"):
        access.cancel_run(c, done.run.id, actor=ALICE, reason="too late", now=h.clock())


async def test_retry_of_an_incomplete_run_is_a_new_run_linked_both_ways(tmp_path: Path) -> None:
    from connectors.memory import Fault

    systems = memory_systems(faults={"ehr": [Fault(op="disable", mode="permanent", times=1)]})
    h = Harness(tmp_path, systems)
    c = ctx(h)
    first = await h.terminate("W0001")
    assert first.run.status == "incomplete"
    retry = access.retry_run(c, first.run.id, actor=BOB, reason="EHR back up", now=h.clock())
    assert (retry.retry_of, retry.actor, retry.reason) == (first.run.id, BOB, "EHR back up")
    assert h.store.load_run(first.run.id).run.retried_as == retry.id
    with pytest.raises(StateConflictError, match="already retried"):
        access.retry_run(c, first.run.id, actor=BOB, reason="again", now=h.clock())
    detail = await h.execute(retry.id)
    assert detail.run.status == "verified"
    with pytest.raises(StateConflictError, match="incomplete or failed"):
        access.retry_run(c, retry.id, actor=BOB, reason="verified", now=h.clock())


async def test_a_rehire_reenables_with_sessions_revoked_first_and_the_current_playbook(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, memory_systems())
    lib = library()
    await h.terminate("W0002")
    idp = account(h.connectors["idp"], "W0002")
    revoked_at = idp.sessions_valid_from
    for connector in h.connectors.values():
        connector.groups.update({"va-scheduling", "ehr-scheduling", "queue-scheduling"})
    from tests.unit.services.helpers import hr_event

    detail = await accept_and_run(
        h, lib, hr_event("W0002", HrEventType.HIRE, "VA-SCHED", "rehire-1")
    )
    assert detail is not None and detail.run.kind == "onboard"
    assert detail.run.status == "verified", [
        (s.system, s.action, s.status, s.error) for s in detail.steps
    ]
    enables = {s.system: s for s in detail.steps if s.action == "enable"}
    for system in ("idp", "ehr", "phone"):
        step = enables[system]
        if step.status == "done":
            assert step.result is not None and step.result.outcome == "done"
    assert enables["idp"].status == "done"
    assert enables["idp"].result is not None
    assert enables["idp"].result.detail["revoke_sessions"] in ("done", "already")
    assert account(h.connectors["idp"], "W0002").enabled
    assert account(h.connectors["idp"], "W0002").sessions_valid_from != revoked_at
    # the current playbook fresh, not the old snapshot
    assert account(h.connectors["idp"], "W0002").groups == {"va-scheduling"}
    assert h.store.get_worker("W0002").status == WorkerStatus.ACTIVE  # type: ignore[union-attr]


async def test_a_transfer_of_a_terminated_worker_is_refused_before_anything_changes(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, memory_systems())
    await h.terminate("W0001")
    from tests.unit.services.helpers import accept, hr_event

    h.store.upsert_worker(replace(h.store.get_worker("W0001"), job_code="VA-SCHED"))  # type: ignore[type-var]
    intake = accept(h, library(), hr_event("W0001", HrEventType.TRANSFER, "VA-BILL", "move-1"))
    assert intake.run_id is None and intake.outcome == "ignored"
    assert intake.detail is not None and "terminated" in intake.detail
    assert h.store.get_worker("W0001").status == WorkerStatus.TERMINATED  # type: ignore[union-attr]


def test_unknown_and_active_workers_cannot_be_restored(tmp_path: Path) -> None:
    h = Harness(tmp_path, memory_systems())
    c = ctx(h)
    from lifecycle.exceptions import NotFoundError

    with pytest.raises(NotFoundError):
        access.request_restore(c, "W9999", reason="x", actor=ALICE, now=h.clock())
    with pytest.raises(StateConflictError, match="only a suspended or terminated"):
        access.request_restore(c, "W0001", reason="x", actor=ALICE, now=h.clock())
    assert json.dumps([]) == "[]"
    assert isinstance(h.store.get_worker("W0001"), Worker)


async def test_a_bundle_with_suspend_and_restore_records_verifies_offline(tmp_path: Path) -> None:
    import io
    import zipfile

    from lifecycle.evidence.checkpoint import load_signing_key
    from lifecycle.evidence.export import export_bundle
    from lifecycle.evidence.verify import verify_bundle
    from tests.unit.engine.harness import ORIGIN

    h = Harness(tmp_path, memory_systems())
    c = ctx(h)
    await h.terminate("W0001")
    restore = access.request_restore(c, "W0001", reason="wrong", actor=ALICE, now=h.clock())
    access.approve(c, restore.id, actor=BOB, reason=None, now=h.clock())
    await h.execute(restore.id)
    suspend = access.start_suspend(c, "W0002", reason="incident", actor=ALICE, now=h.clock())
    await h.execute(suspend.id)
    out = io.BytesIO()
    export_bundle(h.store, load_signing_key(tmp_path / "key", ORIGIN), ORIGIN, out, now=h.clock())
    out.seek(0)
    report = verify_bundle(out, h.verifier.text())
    assert report.records == 3
    with zipfile.ZipFile(out) as bundle:
        rows = bundle.read("terminations.csv").decode().strip().splitlines()
    assert len(rows) == 2  # the header and the one termination: restores and suspensions are not


async def test_a_restore_is_not_approved_once_the_worker_is_no_longer_terminated(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, memory_systems())
    c = ctx(h)
    await h.terminate("W0003")
    restore = access.request_restore(c, "W0003", reason="wrong", actor=ALICE, now=h.clock())
    h.store.upsert_worker(replace(h.store.get_worker("W0003"), status="active"))  # type: ignore[type-var]
    with pytest.raises(StateConflictError, match="no longer as run"):
        access.approve(c, restore.id, actor=BOB, reason=None, now=h.clock())
    assert h.store.load_run(restore.id).run.status == RunStatus.AWAITING_APPROVAL
