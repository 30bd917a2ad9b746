"""The scheduled jobs, called directly with a controllable clock (no real waiting)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from lifecycle.domain import Worker
from lifecycle.services.sweeps import inactivity_sweep, reconcile, reverify_terminations
from tests.unit.engine.harness import Harness
from tests.unit.services.helpers import account, context, harness, records

pytestmark = pytest.mark.anyio


async def test_terminations_are_reverified_at_5_minutes_and_24_hours(tmp_path: Path) -> None:
    h = harness(tmp_path)
    ctx = context(h)
    original = await h.terminate("W0001")
    assert original.run.status == "verified"
    h.clock.offset = timedelta(minutes=4)
    assert await reverify_terminations(ctx, h.clock()) == []
    h.clock.offset = timedelta(minutes=5, seconds=1)
    [first] = await reverify_terminations(ctx, h.clock())
    assert (first.of_run, first.after_minutes, first.status) == (original.run.id, 5, "verified")
    assert first.reenabled == ()
    assert await reverify_terminations(ctx, h.clock()) == []  # once per offset
    assert not [a for a in h.alerts.sent if a.kind == "reenabled"]

    # someone turns the account back on in the identity provider
    account(h.connectors["idp"], "W0001").enabled = True
    h.clock.offset = timedelta(hours=24, seconds=1)
    [second] = await reverify_terminations(ctx, h.clock())
    assert (second.after_minutes, second.reenabled, second.status) == (1440, ("idp",), "verified")
    assert account(h.connectors["idp"], "W0001").enabled is False  # disabled again
    [alert] = [a for a in h.alerts.sent if a.kind == "reenabled"]
    assert alert.worker_id == "W0001" and "idp" in alert.message
    record = records(h)[-1]
    assert record["actor"] == "scheduler:reverify"
    assert record["trigger"]["event_id"] == f"reverify:{original.run.id}:+1440m"
    disable = next(a for a in record["actions"] if a["system"] == "idp" and a["op"] == "disable")
    assert disable["outcome"] == "done"
    assert next(a for a in record["actions"] if a["op"] == "verify")["readback"]["enabled"] is False


async def test_a_rehired_worker_is_not_reverified(tmp_path: Path) -> None:
    h = harness(tmp_path)
    await h.terminate("W0002")
    worker = h.store.get_worker("W0002")
    assert worker is not None
    h.store.upsert_worker(replace(worker, status="active"))
    h.clock.offset = timedelta(minutes=6)
    assert await reverify_terminations(context(h), h.clock()) == []


async def test_reverification_after_downtime_still_happens(tmp_path: Path) -> None:
    h = harness(tmp_path)
    await h.terminate("W0003")
    h.clock.offset = timedelta(days=3)  # the service was down for three days
    done = await reverify_terminations(context(h), h.clock())
    assert sorted(r.after_minutes for r in done) == [5, 1440]


def _roster(h: Harness, worker_id: str, **attrs: str) -> None:
    worker: Worker | None = h.store.get_worker(worker_id)
    assert worker is not None
    h.store.upsert_worker(replace(worker, **attrs))


async def test_inactivity_sweep_uses_each_workers_limit(tmp_path: Path) -> None:
    h = harness(tmp_path)
    now = h.clock()
    idp = h.connectors["idp"]
    _roster(h, "W0001", engagement="employee")
    _roster(h, "W0003", engagement="employee")
    _roster(h, "W0005", engagement="employee", job_code="VA-SCHED")
    _roster(h, "W0004", engagement="employee")
    for acct in idp.accounts.values():
        acct.last_sign_in = now - timedelta(days=1)
    account(idp, "W0001").last_sign_in = now - timedelta(days=100)  # employee, > 90
    account(idp, "W0002").last_sign_in = now - timedelta(days=50)  # contractor, > 45
    account(idp, "W0003").last_sign_in = now - timedelta(days=50)  # employee, < 90: kept
    account(idp, "W0005").last_sign_in = now - timedelta(days=50)  # VA playbook: 45
    never = account(idp, "W0004")
    never.last_sign_in, never.created_at = None, now - timedelta(days=95)  # never signed in
    for other in ("ehr", "phone"):
        for acct in h.connectors[other].accounts.values():
            acct.last_sign_in = now
    dormant = await inactivity_sweep(context(h), now)
    by = {d.owner: d for d in dormant}
    assert set(by) == {"W0001", "W0002", "W0004", "W0005"}
    assert (by["W0002"].limit_days, by["W0005"].limit_days, by["W0001"].limit_days) == (45, 45, 90)
    assert by["W0004"].never_signed_in
    for worker in ("W0001", "W0002", "W0004", "W0005"):
        assert account(idp, worker).enabled is False
        assert account(h.connectors["ehr"], worker).enabled is True  # only the idle account
        detail = h.store.load_run(by[worker].run_id or "")
        assert (detail.run.kind, detail.run.status) == ("disable", "verified")
    assert account(idp, "W0003").enabled is True
    row = h.store.get_worker("W0001")
    assert row is not None and row.status == "active"  # dormant, not terminated
    kinds = {r["actor"] for r in records(h)}
    assert kinds == {"scheduler:inactivity"}
    assert {r["policy"]["name"] for r in records(h)} == {"inactivity"}
    # the same day again: nothing new
    assert await inactivity_sweep(context(h), now) == []


async def test_reconciliation_reports_orphans_and_disables_them_when_configured(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path)
    ehr = h.connectors["ehr"]
    ehr.add_account("X0999")  # nobody in the roster
    _roster(h, "W0002", status="terminated")  # left, but the account is still on
    report = await reconcile(context(h), h.clock())
    assert {(o.system, o.owner) for o in report.orphans} == {
        ("ehr", "X0999"),
        ("idp", "W0002"),
        ("ehr", "W0002"),
        ("phone", "W0002"),
    }
    assert {o.reason for o in report.orphans if o.owner == "X0999"} == {"no worker in the roster"}
    assert account(ehr, "X0999").enabled is True  # report only by default
    assert h.alerts.sent[-1].kind == "orphans"
    assert records(h) == []

    report = await reconcile(context(h, disable_orphans=True), h.clock())
    assert all(o.run_id for o in report.orphans)
    assert account(ehr, "X0999").enabled is False
    assert account(h.connectors["phone"], "W0002").enabled is False
    assert account(h.connectors["phone"], "W0001").enabled is True
    assert {r["kind"] for r in records(h)} == {"disable"}
    assert (await reconcile(context(h), h.clock())).orphans == []  # disabled ones are settled


async def test_service_and_break_glass_accounts_can_be_left_out_of_sweeps(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path)
    ehr = h.connectors["ehr"]
    ehr.add_account("svc-backup")  # no worker, never signed in, created long ago
    account(ehr, "svc-backup").created_at = h.clock() - timedelta(days=400)
    ctx = context(h, sweep_ignore=["SVC-*@example.org"], disable_orphans=True)
    assert (await reconcile(ctx, h.clock())).orphans == []
    assert await inactivity_sweep(ctx, h.clock()) == []
    assert account(ehr, "svc-backup").enabled is True
    assert [o.owner for o in (await reconcile(context(h), h.clock())).orphans] == ["svc-backup"]


async def test_a_large_sweep_creates_its_runs_in_batches_and_executes_them_all(
    tmp_path: Path,
) -> None:
    h = harness(tmp_path, workers=300)  # more dormant owners than one batch (256)
    now = h.clock()
    for name, connector in h.connectors.items():
        for acct in connector.accounts.values():
            acct.last_sign_in = now - timedelta(days=200 if name == "idp" else 1)
    dormant = await inactivity_sweep(context(h), now)
    assert len(dormant) == 300
    assert len({d.run_id for d in dormant}) == 300  # one run per owner
    assert all(acct.enabled is False for acct in h.connectors["idp"].accounts.values())
    assert all(acct.enabled for acct in h.connectors["ehr"].accounts.values())
    details = h.store.load_runs([d.run_id or "" for d in dormant])
    assert {(d.run.kind, d.run.status) for d in details} == {("disable", "verified")}
    assert len(records(h)) == 300
    # The same day again: the accounts are off, so nothing is dormant and nothing new runs.
    assert await inactivity_sweep(context(h), now) == []
    assert len(records(h)) == 300


async def test_a_sweep_asked_twice_the_same_day_returns_the_first_runs(tmp_path: Path) -> None:
    h = harness(tmp_path, workers=5)
    now = h.clock()
    for acct in h.connectors["idp"].accounts.values():
        acct.last_sign_in = now - timedelta(days=200)
    for other in ("ehr", "phone"):
        for acct in h.connectors[other].accounts.values():
            acct.last_sign_in = now
    first = await inactivity_sweep(context(h), now)
    for acct in h.connectors["idp"].accounts.values():
        acct.enabled = True  # turned back on before the second sweep of the same day
    again = await inactivity_sweep(context(h), now)
    assert sorted(d.run_id or "" for d in again) == sorted(d.run_id or "" for d in first)
    assert len(records(h)) == 5  # no second run per owner and day
