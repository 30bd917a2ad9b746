"""The executor on memory connectors: fan-out, retries, escalation, verification, resume,
evidence."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
import rfc8785

from connectors.memory import Fault
from lifecycle.domain import Link, Step, StepStatus
from lifecycle.evidence.checkpoint import verify_checkpoint
from lifecycle.evidence.merkle import leaf_hash, root_hash
from lifecycle.hr.event import HrEvent, HrEventType
from lifecycle.services import intake
from lifecycle.services.playbooks import PlaybookLibrary
from lifecycle.store.ports import StepProgress
from tests.unit.engine.harness import Harness, memory_systems

pytestmark = pytest.mark.anyio


def steps_of(steps: tuple[Step, ...], connector: str) -> dict[str, Step]:
    return {s.action: s for s in steps if s.system == connector}


async def test_termination_disables_every_system_and_verifies(tmp_path: Path) -> None:
    systems = memory_systems()
    h = Harness(tmp_path, systems)
    detail = await h.terminate("W0003")
    assert detail.run.status == "verified"
    assert detail.run.time_to_revoke_ms is not None
    for name, connector in systems.items():
        [account] = [a for a in connector.accounts.values() if a.worker_id == "W0003"]
        assert account.enabled is False
        assert account.groups == set()
        verify = steps_of(detail.steps, name)["verify"]
        assert verify.status == StepStatus.DONE
        assert verify.readback is not None and verify.readback["enabled"] is False
    # the phone system has no sessions: recorded as such, not as success
    assert steps_of(detail.steps, "phone")["revoke_sessions"].status == "not_applicable"
    assert steps_of(detail.steps, "idp")["revoke_sessions"].status == "done"
    removed = steps_of(detail.steps, "ehr")["remove_access"].result
    assert removed is not None
    assert len(removed.removed) == 2  # kept so that a wrongful termination can be undone


async def test_connectors_run_at_the_same_time(tmp_path: Path) -> None:
    h = Harness(tmp_path, memory_systems(latency_ms=30))
    detail = await h.terminate("W0001")
    started = [s.started_at for s in detail.steps if s.action == "disable"]
    verified = [s.finished_at for s in detail.steps if s.action == "verify"]
    assert all(t is not None for t in started + verified)
    # sequential chains would start one system's disable only after another's verify ended
    assert max(started) < min(verified)  # type: ignore[type-var]


async def test_transient_errors_are_retried(tmp_path: Path) -> None:
    faults = {"ehr": [Fault(op="disable", mode="transient", times=2, retry_after=0)]}
    h = Harness(tmp_path, memory_systems(faults=faults))
    detail = await h.terminate("W0002")
    assert detail.run.status == "verified"
    disable = steps_of(detail.steps, "ehr")["disable"]
    assert disable.attempts == 3
    assert disable.error is None


async def test_a_hung_call_times_out_and_is_retried(tmp_path: Path) -> None:
    faults = {"idp": [Fault(op="revoke_sessions", mode="hang", times=1)]}
    h = Harness(tmp_path, memory_systems(faults=faults), step_timeout=0.2)
    detail = await h.terminate("W0002")
    assert detail.run.status == "verified"
    assert steps_of(detail.steps, "idp")["revoke_sessions"].attempts == 2


async def test_permanent_error_escalates_and_leaves_the_run_incomplete(tmp_path: Path) -> None:
    faults = {"ehr": [Fault(op="disable", mode="permanent")]}
    h = Harness(tmp_path, memory_systems(faults=faults))
    detail = await h.terminate("W0004")
    assert detail.run.status == "incomplete"
    ehr = steps_of(detail.steps, "ehr")
    assert ehr["disable"].status == "failed"
    assert ehr["disable"].attempts == 1  # permanent: no retry
    assert "injected permanent fault" in (
        ehr["disable"].error.message if ehr["disable"].error else ""
    )
    assert ehr["verify"].status == "failed"  # the read-back still shows it enabled
    assert steps_of(detail.steps, "idp")["verify"].status == "done"  # others still revoked
    kinds = [a.kind for a in h.alerts.sent]
    assert "step_failed" in kinds
    assert kinds[-1] == "run_incomplete"
    assert detail.run.time_to_revoke_ms is None
    # Connector errors are not LifecycleErrors; the alert still carries their message.
    failed = [a.message for a in h.alerts.sent if a.kind == "step_failed"]
    assert any("injected permanent fault in disable" in m for m in failed)
    # Connector errors are not LifecycleErrors; the alert still carries their message.
    failed = [a.message for a in h.alerts.sent if a.kind == "step_failed"]
    assert any("injected permanent fault in disable" in m for m in failed)


async def test_exhausted_retries_fail_with_the_count(tmp_path: Path) -> None:
    faults = {"phone": [Fault(op="remove_access", mode="transient", retry_after=0)]}
    h = Harness(tmp_path, memory_systems(faults=faults), attempts=3)
    detail = await h.terminate("W0005")
    assert detail.run.status == "incomplete"
    step = steps_of(detail.steps, "phone")["remove_access"]
    assert step.status == "failed"
    assert step.attempts == 3
    assert step.error is not None
    assert step.error.message.startswith("gave up after 3 attempts")


async def test_worker_without_accounts_is_recorded_as_such(tmp_path: Path) -> None:
    h = Harness(tmp_path, memory_systems(workers=5), workers=10)
    detail = await h.terminate("W0009")
    assert detail.run.status == "no_accounts"
    assert {s.status for s in detail.steps} == {"no_account"}
    record = json.loads(h.store.evidence_records().__next__()[1])
    assert record["status"] == "no_accounts"
    assert record["computed"]["sla_met"] is False


async def test_vanished_linked_account_is_a_failure_not_no_account(tmp_path: Path) -> None:
    systems = memory_systems()
    h = Harness(tmp_path, systems)
    h.store.link_account(Link("W0006", "ehr", "ehr-account-gone", "w6", h.clock()))
    for key in [k for k, a in systems["ehr"].accounts.items() if a.worker_id == "W0006"]:
        del systems["ehr"].accounts[key]
    detail = await h.terminate("W0006")
    assert detail.run.status == "incomplete"
    error = steps_of(detail.steps, "ehr")["disable"].error
    assert error is not None and "was not found" in error.message


async def test_resumed_run_skips_confirmed_steps(tmp_path: Path) -> None:
    systems = memory_systems()
    h = Harness(tmp_path, systems)
    run_id = h.offboard("W0007")
    # a previous replica confirmed idp's disable, then died
    first = h.claim(run_id, owner="replica-1")
    [account] = [a for a in systems["idp"].accounts.values() if a.worker_id == "W0007"]
    account.enabled = False
    progress = []
    for step in h.store.load_run(run_id).steps:
        if step.system == "idp":
            step = replace(step, account_id=account.account_id)
            if step.action == "disable":
                step = replace(step, status=StepStatus.DONE, attempts=1)
            progress.append(StepProgress(first, step))
    assert h.store.save_progress(progress) == set()
    later = h.clock() + timedelta(seconds=31)  # its lease lapsed
    [lease] = h.store.claim_runs("replica-2", later, timedelta(seconds=30), 10)
    assert lease.run_id == run_id
    await h.executor.execute(lease)
    assert systems["idp"].calls["disable"] == 0
    assert systems["idp"].calls["find_account"] == 0  # the account id was already known
    assert systems["ehr"].calls["disable"] == 1
    assert h.store.load_run(run_id).run.status == "verified"


async def test_evidence_log_is_canonical_chained_and_signed(tmp_path: Path) -> None:
    h = Harness(tmp_path, memory_systems())
    for worker in ("W0001", "W0002", "W0003"):
        await h.terminate(worker)
    records = list(h.store.evidence_records())
    assert [seq for seq, _ in records] == [0, 1, 2]
    for seq, body in records:
        record = json.loads(body)
        assert rfc8785.dumps(record) == body
        assert record["schema"] == "dpe/1"
        assert record["seq"] == seq
        assert {a["system"] for a in record["actions"]} == {"idp", "ehr", "phone"}
        assert record["computed"]["sla_met"] is True
        assert record["subject"] == {
            "worker_id": record["subject"]["worker_id"],
            "engagement": "contractor",
            "vendor": "Acme",
        }
    leaves = [leaf_hash(body) for _, body in records]
    assert h.store.leaf_hashes() == leaves
    checkpoint = await h.evidence.sign()
    assert checkpoint is not None
    head = verify_checkpoint(checkpoint.note, h.verifier, origin="test.lifecycle.local/evidence")
    assert head.tree_size == 3
    assert head.root_hash == root_hash(leaves)


async def test_future_dated_termination_fires_when_due(tmp_path: Path) -> None:
    systems = memory_systems()
    h = Harness(tmp_path, systems)
    later = h.clock() + timedelta(hours=3)
    event = HrEvent(
        source="hr",
        event_id="e1",
        type=HrEventType.TERMINATION,
        worker_id="W0008",
        payload_sha256="0" * 64,
        effective_at=later,
    )
    run_id = intake.accept(
        h.store, h.kinds, PlaybookLibrary(), sorted(systems), event, h.clock()
    ).run_id
    assert run_id is not None
    async with anyio.create_task_group() as tg:
        await tg.start(h.executor.run_forever)
        await anyio.sleep(0.3)
        assert h.store.load_run(run_id).run.status == "pending"
        assert systems["idp"].calls["disable"] == 0
        h.clock.offset = timedelta(hours=3, seconds=1)  # three hours later
        h.executor.wake()
        with anyio.fail_after(5):
            while h.store.load_run(run_id).run.status != "verified":
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    run = h.store.load_run(run_id).run
    assert run.started_at is not None
    assert run.started_at >= later


async def test_a_wake_for_work_due_after_the_next_look_is_ignored_and_one_before_is_heeded(
    tmp_path: Path,
) -> None:
    systems = memory_systems()
    h = Harness(tmp_path, systems, poll_seconds=30)
    claims = 0
    claim_runs = h.store.claim_runs

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal claims
        claims += 1
        return claim_runs(*args, **kwargs)

    h.store.claim_runs = counted  # type: ignore[method-assign]

    def future_termination(worker: str, due: timedelta) -> tuple[str, Any]:
        event = HrEvent(
            source="hr",
            event_id=f"e-{worker}",
            type=HrEventType.TERMINATION,
            worker_id=worker,
            payload_sha256="0" * 64,
            effective_at=h.clock() + due,
        )
        accepted = intake.accept(
            h.store, h.kinds, PlaybookLibrary(), sorted(systems), event, h.clock()
        )
        assert accepted.run_id is not None
        return accepted.run_id, event.effective_at

    async with anyio.create_task_group() as tg:
        await tg.start(h.executor.run_forever)
        with anyio.fail_after(5):
            while h.executor._sleep_until is None:  # the loop has gone to sleep for 30 s
                await anyio.sleep(0.01)
        looked = claims
        # A burst of future-dated HR events: due after the loop's next look anyway.
        for n in range(1, 6):
            _, due = future_termination(f"W000{n}", timedelta(hours=1))
            h.executor.wake(due)
        await anyio.sleep(0.3)
        assert claims == looked
        # Due before the next look (in 0.3 s, the loop would have slept 30 s): heeded.
        soon, due = future_termination("W0009", timedelta(seconds=0.3))
        h.executor.wake(due)
        with anyio.fail_after(10):
            while h.store.load_run(soon).run.status != "verified":
                await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    assert h.store.load_run(soon).run.started_at >= due


async def test_step_attempts_and_errors_are_counted(tmp_path: Path) -> None:
    faults = {"idp": [Fault(op="disable", mode="transient", times=1, retry_after=0)]}
    h = Harness(tmp_path, memory_systems(faults=faults))
    await h.terminate("W0001")
    assert h.metrics.step_attempts.labels("idp", "disable")._value.get() == 2
    assert h.metrics.step_errors.labels("idp", "disable", "transient")._value.get() == 1
    assert h.metrics.time_to_revoke._sum.get() > 0  # type: ignore[attr-defined]


async def test_group_commit_fails_every_waiting_writer_and_recovers() -> None:
    from lifecycle.engine.commit import GroupCommit
    from lifecycle.exceptions import StoreError

    written: list[list[int]] = []
    fail_next = True

    async def write(rows: list[int]) -> set[str]:
        nonlocal fail_next
        await anyio.sleep(0.05)  # others queue meanwhile
        if fail_next:
            fail_next = False
            raise StoreError("disk full")
        written.append(rows)
        return set()

    commit: GroupCommit[int] = GroupCommit(write, str)
    outcomes: dict[int, str] = {}

    async def submit(n: int) -> None:
        try:
            await commit.submit(n)
            outcomes[n] = "ok"
        except StoreError:
            outcomes[n] = "failed"

    with anyio.fail_after(5):  # nobody may be left waiting
        async with anyio.create_task_group() as tg:
            for n in range(5):
                tg.start_soon(submit, n)
                await anyio.sleep(0.01)
    assert set(outcomes) == set(range(5))
    assert "failed" in outcomes.values()
    await commit.submit(99)  # the next write works again
    assert written[-1] == [99]


async def test_a_heartbeat_during_the_runs_own_end_does_not_cancel_its_alert(
    tmp_path: Path,
) -> None:
    """The heartbeat renews leases concurrently with runs ending: a run whose end was just
    committed has no lease left, so its renewal is refused. That is the run's own doing, not a
    takeover: the run must still send its ``run_incomplete`` escalation."""
    faults = {"ehr": [Fault(op="disable", mode="permanent")]}
    h = Harness(tmp_path, memory_systems(faults=faults))
    run_id = h.offboard("W0004")
    lease = h.claim(run_id)
    finishes = h.executor._finishes
    submit = finishes.submit

    async def submit_then_heartbeat(item: Any) -> Any:
        ended = await submit(item)
        # The heartbeat's renewal lands between the commit and the run's next line.
        refused = h.store.renew_leases([lease], h.clock() + timedelta(seconds=30))
        assert refused == [run_id]
        h.executor._lost(refused)
        await anyio.sleep(0)  # a cancelled scope would stop the run here
        return ended

    finishes.submit = submit_then_heartbeat  # type: ignore[method-assign]
    await h.executor._execute_tracked(lease, None)
    assert h.store.load_run(run_id).run.status == "incomplete"
    assert [a.kind for a in h.alerts.sent][-1] == "run_incomplete"


async def test_a_renewal_refused_for_a_run_that_has_ended_meanwhile_is_not_a_takeover(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The heartbeat names the leases in flight, then waits for the database; a run that ends
    meanwhile has released its lease, so its renewal comes back refused. It was no takeover."""
    h = Harness(tmp_path, memory_systems())
    run_id = h.offboard("W0005")
    lease = h.claim(run_id)
    await h.executor._execute_tracked(lease, None)
    refused = h.store.renew_leases([lease], h.clock() + timedelta(seconds=30))
    assert refused == [run_id]
    with caplog.at_level("WARNING", logger="lifecycle"):
        h.executor._lost(refused)
    assert "taken over" not in caplog.text
