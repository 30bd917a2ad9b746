"""Outages do not end runs early: fast retries in process, then a persisted next attempt with
growing backoff until the retry horizon; alerts at the first failure and when the SLA is at
risk; only past the horizon does the step fail and the run end incomplete. A restarted
instance resumes its own runs at once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from connectors.memory import Fault
from lifecycle.domain import RunDetail, Step
from tests.unit.engine.harness import Harness, memory_systems

pytestmark = pytest.mark.anyio
HORIZON = 1800.0  # half of the default one-hour termination SLA


def step(detail: RunDetail, system: str, action: str) -> Step:
    return next(s for s in detail.steps if s.system == system and s.action == action)


def outage(system: str, op: str = "disable") -> dict[str, list[Fault]]:
    return {system: [Fault(op=op, mode="transient", retry_after=0)]}


async def test_an_unreachable_system_waits_durably_and_the_run_stays_running(
    tmp_path: Path,
) -> None:
    systems = memory_systems(faults=outage("ehr"))
    h = Harness(tmp_path, systems, attempts=2, horizon_seconds=HORIZON)
    run_id = h.offboard("W0001")
    detail = await h.execute(run_id)
    assert detail.run.status == "running"
    assert detail.run.lease is None  # released: any replica may take the next attempt
    waiting = step(detail, "ehr", "disable")
    assert waiting.status == "pending"
    assert waiting.attempts == 2
    assert waiting.next_attempt_at is not None
    assert detail.run.next_attempt_at == waiting.next_attempt_at
    assert waiting.error is not None and waiting.error.message.startswith("attempt 2: ")
    assert step(detail, "idp", "verify").status == "done"  # the others went ahead
    assert step(detail, "ehr", "verify").status == "pending"  # waits behind its disable
    assert [a.kind for a in h.alerts.sent] == ["step_retrying"]
    assert list(h.store.evidence_records()) == []  # not finished, not recorded

    # The system answers again; the next attempt (when due) finishes the run.
    systems["ehr"].faults.clear()
    h.clock.offset = timedelta(minutes=1)
    detail = await h.execute(run_id)
    assert detail.run.status == "verified"
    assert step(detail, "ehr", "disable").attempts == 3
    assert step(detail, "ehr", "disable").error is None
    assert detail.run.time_to_revoke_ms is not None
    assert detail.run.time_to_revoke_ms >= 60_000  # measured from the HR receipt
    assert [a.kind for a in h.alerts.sent] == ["step_retrying"]  # once, not per attempt


async def test_past_the_horizon_the_step_fails_and_the_run_is_incomplete(tmp_path: Path) -> None:
    systems = memory_systems(faults=outage("phone", "remove_access"))
    h = Harness(tmp_path, systems, attempts=2, horizon_seconds=HORIZON)
    run_id = h.offboard("W0002")
    assert (await h.execute(run_id)).run.status == "running"
    h.clock.offset = timedelta(minutes=16)  # half the horizon: the SLA is at risk
    assert (await h.execute(run_id)).run.status == "running"
    assert [a.kind for a in h.alerts.sent] == ["step_retrying", "sla_at_risk"]
    h.clock.offset = timedelta(seconds=HORIZON)  # the next attempt would be past the horizon
    detail = await h.execute(run_id)
    assert detail.run.status == "incomplete"
    failed = step(detail, "phone", "remove_access")
    assert failed.status == "failed"
    assert failed.attempts == 4  # two in process, then one per durable attempt
    assert failed.error is not None
    assert failed.error.message.startswith("gave up after 4 attempts")
    assert (failed.error.error_class, failed.error.code) == ("TransientConnectorError", "exhausted")
    assert step(detail, "phone", "verify").status == "done"  # the account is off all the same
    assert [a.kind for a in h.alerts.sent][-2:] == ["step_failed", "run_incomplete"]


async def test_backoff_grows_to_the_configured_maximum(tmp_path: Path) -> None:
    # No Retry-After: the wait is the executor's own backoff.
    systems = memory_systems(faults={"idp": [Fault(op="disable", mode="transient")]})
    h = Harness(
        tmp_path, systems, attempts=1, horizon_seconds=HORIZON, initial_seconds=1, max_seconds=8
    )
    run_id = h.offboard("W0003")
    waits = []
    for _ in range(6):
        detail = await h.execute(run_id)
        waiting = step(detail, "idp", "disable")
        assert waiting.next_attempt_at is not None
        waits.append((waiting.next_attempt_at - h.clock()).total_seconds())
        h.clock.offset = waiting.next_attempt_at - h.clock() + h.clock.offset
    assert 0.9 < waits[0] < 1.3  # [retry] initial_seconds (plus up to 20 % jitter)
    assert waits[:4] == sorted(waits[:4])  # each wait as long as the failing so far
    assert all(7.9 < w < 9.7 for w in waits[-2:])  # capped at [retry] max_seconds (+ jitter)


async def test_a_lookup_during_an_outage_waits_too(tmp_path: Path) -> None:
    systems = memory_systems(faults=outage("ehr", "find_account"))
    h = Harness(tmp_path, systems, attempts=2, horizon_seconds=HORIZON)
    run_id = h.offboard("W0004")
    detail = await h.execute(run_id)
    assert detail.run.status == "running"
    assert step(detail, "ehr", "disable").next_attempt_at is not None
    systems["ehr"].faults.clear()
    h.clock.offset = timedelta(minutes=1)
    assert (await h.execute(run_id)).run.status == "verified"


async def test_a_restarted_instance_resumes_its_own_runs_without_waiting_for_the_lease(
    tmp_path: Path,
) -> None:
    h = Harness(tmp_path, memory_systems(), owner="node-a")
    run_id = h.offboard("W0005")
    h.claim(run_id, owner="node-a")  # ...and then the process died mid-run
    # The same instance starts again: its 30 s lease has not expired.
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(h.executor.run_forever)
            while h.store.load_run(run_id).run.status != "verified":
                await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
