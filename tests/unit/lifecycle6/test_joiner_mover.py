"""Joiners and movers through the durable path: HR event -> run -> engine -> evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lifecycle.hr.event import HrEvent, HrEventType
from lifecycle.models import StepStatus
from tests.unit.lifecycle6.helpers import (
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
    assert {s.connector for s in detail.steps} == {"idp", "ehr"}


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
        steps = {s.action: s for s in detail.steps if s.connector == system}
        remove, add = steps["remove_entitlements"], steps["add_entitlements"]
        assert remove.finished_at is not None and add.started_at is not None
        assert remove.finished_at <= add.started_at  # removal first
        assert json.loads(remove.result_json or "{}")["removed"] == [
            "va-intake" if system == "idp" else "ehr-intake"
        ]
    record = records(h)[-1]
    assert record["playbook"]["name"] == "scheduling-va"
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
    names = sorted(h.connectors)
    first = h.store.accept_hr_event(
        _hire("W0106", "VA-BILL"), names, h.clock(), provision=lib.hr_planner(names)
    )
    again = h.store.accept_hr_event(
        _hire("W0106", "VA-BILL"), names, h.clock(), provision=lib.hr_planner(names)
    )
    assert again.duplicate and again.run_id == first.run_id


def _hire(
    worker: str, job_code: str, *, kind: HrEventType = HrEventType.HIRE, event_id: str = "h"
) -> HrEvent:
    return hr_event(worker, kind, job_code, f"{event_id}-{worker}")
