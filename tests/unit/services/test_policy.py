"""Policy check and enforcement on memory connectors."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from connectors.base import Capability
from connectors.memory import MemoryConnector
from lifecycle.services.policy import Expected, check, enforce, expectations
from lifecycle.services.sweeps import policy_job
from lifecycle.settings import PolicySettings
from tests.unit.engine.harness import Harness
from tests.unit.services.helpers import context, harness, library, records

pytestmark = pytest.mark.anyio


def expected_for(h: Harness) -> dict[str, dict[str, Expected]]:
    return expectations(PolicySettings(), library(), sorted(h.connectors))


async def test_check_reports_expected_actual_and_sources_per_control(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.connectors["ehr"].policy["lockout_threshold"] = 10
    report = await check(h.connectors, expected_for(h), h.clock())
    by = {(f.system, f.control): f for f in report.findings}
    assert len(report.findings) == 3 * 7  # every system, every control
    lockout = by[("ehr", "lockout_threshold")]
    assert (lockout.expected, lockout.actual, lockout.compliant) == (5, 10, False)
    assert lockout.expected_source == "config [policy]"
    assert lockout.actual_source == "memory:ehr.policy.lockout_threshold"
    # the VA playbooks tighten inactivity to 45 days; the systems still say 90
    inactive = by[("idp", "inactive_disable_days")]
    assert (inactive.expected, inactive.actual, inactive.compliant) == (45, 90, False)
    assert inactive.expected_source.startswith("playbook ")
    assert by[("idp", "mfa")].compliant is True
    assert by[("idp", "lockout_threshold")].compliant is True
    assert report.systems_out_of_policy() == ["ehr", "idp", "phone"]


async def test_stricter_than_expected_is_compliant(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.connectors["idp"].policy.update(
        {"lockout_threshold": 3, "lockout_duration_minutes": 60, "inactive_disable_days": 30}
    )
    report = await check(h.connectors, expected_for(h), h.clock())
    assert not [f for f in report.failing if f.system == "idp"]


async def test_dry_run_enforce_changes_nothing(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.connectors["ehr"].policy["mfa"] = False
    report = await enforce(h.executor, h.store, expected_for(h), actor="admin:t", dry_run=True)
    assert report.run_ids == []
    assert h.connectors["ehr"].policy["mfa"] is False
    assert h.connectors["ehr"].calls["apply_policy"] == 0
    assert records(h) == []


async def test_enforce_remediates_reads_back_and_records_evidence(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.connectors["ehr"].policy.update({"mfa": False, "session_idle_minutes": 60})
    report = await enforce(h.executor, h.store, expected_for(h), actor="admin:t")
    assert report.failing == []
    [run_id] = report.run_ids
    detail = h.store.load_run(run_id)
    assert (detail.run.kind, detail.run.status) == ("policy", "verified")
    assert h.connectors["ehr"].policy["mfa"] is True
    assert h.connectors["ehr"].policy["session_idle_minutes"] == 15
    assert h.connectors["idp"].policy["inactive_disable_days"] == 45
    [record] = records(h)
    assert record["kind"] == "policy"
    assert record["policy"]["name"] == "baseline"
    assert len(record["policy"]["version_sha256"]) == 64
    ehr = {a["op"]: a for a in record["actions"] if a["system"] == "ehr"}
    assert ehr["apply_policy"]["detail"]["mfa"] == "False -> True"
    assert ehr["verify"]["readback"]["mfa"] is True
    # compliant now: a second enforcement makes no run
    assert (await enforce(h.executor, h.store, expected_for(h), actor="admin:t")).run_ids == []


class NoPolicy(MemoryConnector):
    capabilities: ClassVar[frozenset[Capability]] = frozenset(Capability) - {
        Capability.READ_POLICY,
        Capability.APPLY_POLICY,
    }


async def test_a_system_that_cannot_report_policy_is_unknown_not_compliant(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path)
    h.connectors["phone"] = NoPolicy("phone")
    report = await check(h.connectors, expected_for(h), h.clock())
    phone = [f for f in report.findings if f.system == "phone"]
    assert {f.compliant for f in phone} == {None}
    assert phone[0].note == "this connector cannot read policy settings"


async def test_hourly_job_alerts_on_findings_and_enforces_when_configured(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path)
    await policy_job(context(h), h.clock())
    assert h.alerts.sent[-1].kind == "policy"
    assert h.connectors["idp"].policy["inactive_disable_days"] == 90  # report only
    report = await policy_job(context(h, enforce_policy=True), h.clock())
    assert report.failing == []
    assert h.connectors["idp"].policy["inactive_disable_days"] == 45
