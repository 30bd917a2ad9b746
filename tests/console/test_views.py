"""What the console's pages compute without I/O: per-system time to revoke against the SLA, the
chart drawn from it, and the per-system timeline of a run."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from lifecycle.domain import OffboardPlan, Run, RunDetail, RunStatus, Step, StepStatus
from lifecycle.web.console.chart import revoke_chart
from lifecycle.web.console.views import revoke_times, status_label, timeline

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
SLA = 3600


def run(run_id: str, due: datetime) -> Run:
    return Run(
        id=run_id,
        kind="offboard",
        worker_id="W0001",
        status=RunStatus.VERIFIED,
        plan=OffboardPlan(targets=("idp", "ehr")),
        actor="hr:demo",
        received_at=due,
        not_before=due,
    )


def step(run_id: str, system: str, action: str, position: int, **kw: object) -> Step:
    return Step(id=position, run_id=run_id, system=system, action=action, position=position, **kw)  # type: ignore[arg-type]


def detail(run_id: str, due: datetime, idp_s: float | None, ehr_status: StepStatus) -> RunDetail:
    steps = [
        step(run_id, "idp", "disable", 0, status=StepStatus.DONE),
        step(
            run_id,
            "idp",
            "verify",
            3,
            status=StepStatus.DONE if idp_s is not None else StepStatus.FAILED,
            finished_at=due + timedelta(seconds=idp_s or 0),
        ),
        step(run_id, "ehr", "verify", 3, status=ehr_status, finished_at=due),
    ]
    return RunDetail(run(run_id, due), tuple(steps), None)


def test_time_to_revoke_counts_each_systems_verified_read_back_from_the_due_time() -> None:
    details = [
        detail("a", T0, 2.5, StepStatus.NO_ACCOUNT),
        detail("b", T0 + timedelta(hours=1), 7200, StepStatus.DONE),
        detail("c", T0 + timedelta(days=1), None, StepStatus.DONE),
    ]
    times = {t.system: t for t in revoke_times(details, SLA, ["idp", "ehr", "phone"])}
    idp = times["idp"]
    assert [s.ms for s in idp.samples] == [2500, 7_200_000]
    assert idp.over_sla == 1
    assert idp.not_verified == 1
    assert idp.worst_ms == 7_200_000
    assert idp.by_day == {date(2026, 11, 20): 7_200_000}
    assert times["ehr"].count == 2  # "no account" is not a time to revoke
    assert times["phone"].count == 0
    assert times["phone"].median_ms is None


def test_the_chart_draws_days_over_the_sla_as_triangles_and_the_rest_as_circles() -> None:
    details = [
        detail("a", T0, 2.5, StepStatus.DONE),
        detail("b", T0 + timedelta(days=2), 7200, StepStatus.DONE),
    ]
    idp = next(t for t in revoke_times(details, SLA, ["idp"]) if t.system == "idp")
    svg = str(revoke_chart(idp, T0.date() - timedelta(days=3), 30))
    assert svg.count("<circle") == 1
    assert svg.count("<polygon") == 1
    assert "2026-11-22: worst 2.0 h (over SLA)" in svg
    assert "2026-11-20: worst 2.5 s (within SLA)" in svg
    assert "SLA 1.0 h" in svg
    assert 'role="img"' in svg


def test_the_chart_escapes_a_system_name() -> None:
    times = revoke_times([], SLA, ['<b>"x"</b>'])[0]
    svg = str(revoke_chart(times, T0.date(), 30))
    assert "<b>" not in svg
    assert re.search(r"&lt;b&gt;", svg)


def test_a_run_timeline_groups_steps_per_system_in_order() -> None:
    d = RunDetail(
        run("r", T0),
        (
            step("r", "idp", "verify", 3, status=StepStatus.PENDING),
            step("r", "ehr", "disable", 0, status=StepStatus.FAILED),
            step("r", "idp", "disable", 0, status=StepStatus.DONE, account_id="u1"),
        ),
        None,
    )
    systems = timeline(d)
    assert [s.system for s in systems] == ["ehr", "idp"]
    assert [s.action for s in systems[1].steps] == ["disable", "verify"]
    assert systems[0].status == "failed"
    assert systems[1].status == "pending"
    assert systems[1].account_id == "u1"
    assert systems[1].finished_at is None


def test_every_status_has_a_symbol_and_a_word() -> None:
    for status in ("verified", "failed", "incomplete", "running", "awaiting_approval"):
        symbol, word = status_label(status)
        assert symbol
        assert word
    assert len({status_label(s)[0] for s in ("verified", "failed", "incomplete", "running")}) == 4
