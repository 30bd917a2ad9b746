"""Joiners and movers through the durable path: HR event -> run -> engine -> evidence."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.base import Worker
from connectors.memory import Fault
from lifecycle.domain import StepStatus
from lifecycle.hr.event import HrEvent, HrEventType
from lifecycle.services.provisioning import plan_diff
from tests.unit.engine.harness import Harness, memory_systems
from tests.unit.services.helpers import (
    accept,
    accept_and_run,
    account,
    harness,
    hr_event,
    library,
    records,
)

pytestmark = pytest.mark.anyio


async def test_hire_creates_an_account_in_every_system_the_playbook_names(
    tmp_path: Path,
) -> None:
    h, lib = harness(tmp_path), library()
    detail = await accept_and_run(h, lib, _hire("W0100", "VA-SCHED"))
    assert detail is not None
    assert detail.run.kind == "onboard"
    assert detail.run.status == "verified"
    assert detail.run.playbook_name == "scheduling-va"
    assert detail.run.playbook_sha256 == lib.get("scheduling-va").sha256
    assert account(h.connectors["idp"], "W0100").groups == {"va-scheduling"}
    assert account(h.connectors["ehr"], "W0100").groups == {"ehr-scheduling"}
    assert account(h.connectors["phone"], "W0100").groups == {"queue-scheduling"}
    creates = [s for s in detail.steps if s.action == "create_account"]
    assert {s.status for s in creates} == {StepStatus.DONE}
    [record] = records(h)
    assert record["playbook"] == {
        "name": "scheduling-va",
        "version_sha256": lib.get("scheduling-va").sha256,
    }
    assert record["kind"] == "onboard"
    assert {a["system"] for a in record["actions"] if a["op"] == "create_account"} == {
        "idp",
        "ehr",
        "phone",
    }


async def test_hire_only_touches_systems_the_role_needs(tmp_path: Path) -> None:
    h, lib = harness(tmp_path), library()
    detail = await accept_and_run(h, lib, _hire("W0101", "VA-INTAKE"))
    assert detail is not None and detail.run.status == "verified"
    assert account(h.connectors["phone"], "W0101") is None  # intake has no phone queue
    assert {s.system for s in detail.steps} == {"idp", "ehr"}


async def test_transfer_removes_then_adds_and_records_both(tmp_path: Path) -> None:
    h, lib = harness(tmp_path), library()
    await accept_and_run(h, lib, _hire("W0102", "VA-INTAKE"))
    h.connectors["idp"].accounts[account(h.connectors["idp"], "W0102").account_id].groups.add(
        "all-staff"  # not managed by any playbook: must survive the move
    )
    event = _hire("W0102", "VA-SCHED", kind=HrEventType.TRANSFER, event_id="t1")
    detail = await accept_and_run(h, lib, event)
    assert detail is not None
    assert detail.run.kind == "transfer"
    assert detail.run.status == "verified", [s.error for s in detail.steps]
    assert account(h.connectors["idp"], "W0102").groups == {"va-scheduling", "all-staff"}
    assert account(h.connectors["ehr"], "W0102").groups == {"ehr-scheduling"}
    assert account(h.connectors["phone"], "W0102").groups == {"queue-scheduling"}  # created
    for system in ("idp", "ehr"):
        steps = {s.action: s for s in detail.steps if s.system == system}
        remove, add = steps["remove_entitlements"], steps["add_entitlements"]
        assert remove.finished_at is not None and add.started_at is not None
        assert remove.finished_at <= add.started_at  # removal first
        assert remove.result is not None
        assert list(remove.result.removed) == ["va-intake" if system == "idp" else "ehr-intake"]
    record = records(h)[-1]
    assert record["playbook"] == {
        "name": "scheduling-va",
        "version_sha256": lib.get("scheduling-va").sha256,
        "from": {"name": "intake-va", "version_sha256": lib.get("intake-va").sha256},
    }
    idp = {a["op"]: a for a in record["actions"] if a["system"] == "idp"}
    assert idp["remove_entitlements"]["removed"] == ["va-intake"]
    assert idp["add_entitlements"]["added"] == ["va-scheduling"]


async def test_transfer_to_a_role_without_a_system_strips_that_system(tmp_path: Path) -> None:
    h, lib = harness(tmp_path), library()
    await accept_and_run(h, lib, _hire("W0103", "VA-CALLBACK"))
    event = _hire("W0103", "VA-INTAKE", kind=HrEventType.TRANSFER, event_id="t2")
    detail = await accept_and_run(h, lib, event)
    assert detail is not None and detail.run.status == "verified"
    phone = account(h.connectors["phone"], "W0103")
    assert phone.groups == set()


async def test_unmapped_job_code_and_same_role_create_no_run(tmp_path: Path) -> None:
    h, lib = harness(tmp_path), library()
    assert await accept_and_run(h, lib, _hire("W0104", "NURSE")) is None
    await accept_and_run(h, lib, _hire("W0105", "VA-BILL"))
    same = _hire("W0105", "VA-BILL", kind=HrEventType.TRANSFER, event_id="t3")
    assert await accept_and_run(h, lib, same) is None


async def test_redelivered_hire_returns_the_same_run(tmp_path: Path) -> None:
    h, lib = harness(tmp_path), library()
    first = accept(h, lib, _hire("W0106", "VA-BILL"))
    again = accept(h, lib, _hire("W0106", "VA-BILL"))
    assert again.duplicate and again.run_id == first.run_id


def _hire(
    worker: str, job_code: str, *, kind: HrEventType = HrEventType.HIRE, event_id: str = "h"
) -> HrEvent:
    return hr_event(worker, kind, job_code, f"{event_id}-{worker}")


async def test_plan_diff_reads_and_changes_nothing(tmp_path: Path) -> None:
    h, lib = harness(tmp_path), library()
    names = sorted(h.connectors)
    plan = lib.plan(lib.get("callback-va"), lib.get("billing-va"), names)
    worker = Worker("W0001", email="w0001@example.org")
    h.connectors["idp"].accounts[account(h.connectors["idp"], "W0001").account_id].groups.add(
        "va-billing"
    )
    diffs = {d.system: d for d in await plan_diff(h.connectors, worker, plan)}
    assert diffs["idp"].add == ("va-callback",)
    assert diffs["idp"].remove == ("va-billing",)
    assert "va-billing" not in diffs["idp"].keep and diffs["idp"].keep  # seeded groups stay
    assert not diffs["idp"].create
    new = await plan_diff(h.connectors, Worker("W0777"), plan)
    assert {d.system for d in new if d.create} == {"idp", "ehr", "phone"}
    for connector in h.connectors.values():
        assert connector.calls["apply_entitlements"] == 0
        assert connector.calls["create_account"] == 0
    assert "va-billing" in account(h.connectors["idp"], "W0001").groups


async def test_a_failed_step_leaves_the_run_incomplete_and_alerts(tmp_path: Path) -> None:
    h = Harness(
        tmp_path,
        memory_systems(faults={"ehr": [Fault(op="create_account", mode="permanent")]}),
    )
    detail = await accept_and_run(h, library(), _hire("W0110", "VA-BILL"))
    assert detail is not None and detail.run.status == "incomplete"
    ehr = {s.action: s for s in detail.steps if s.system == "ehr"}
    assert ehr["create_account"].status == StepStatus.FAILED
    assert ehr["verify"].error is not None
    assert ehr["verify"].error.message == "not attempted: create_account failed"
    assert account(h.connectors["idp"], "W0110") is not None  # the others went ahead
    assert any(a.kind == "run_incomplete" and "onboard" in a.message for a in h.alerts.sent)
    assert records(h)[-1]["computed"]["sla_met"] is None


async def test_a_playbook_naming_a_missing_system_still_stores_the_hire(tmp_path: Path) -> None:
    systems = memory_systems()
    del systems["phone"]
    h = Harness(tmp_path, systems)
    assert await accept_and_run(h, library(), _hire("W0111", "VA-SCHED")) is None
    worker = h.store.get_worker("W0111")
    assert worker is not None and worker.job_code == "VA-SCHED"
