"""The scheduler: missed runs coalesce on start, APScheduler fires jobs, leadership."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from lifecycle.exceptions import ConfigError
from lifecycle.scheduler import ScheduledJob, Scheduler, default_jobs, missed
from lifecycle.services.sweeps import JobContext
from lifecycle.settings import SchedulerSettings
from lifecycle.store.sql import SqlStore
from tests.unit.services.helpers import context, harness

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)


def test_missed_fire_times_of_a_daily_cron() -> None:
    daily = CronTrigger.from_crontab("0 3 * * *", timezone=UTC)
    assert not missed(daily, T0, T0 + timedelta(hours=23, minutes=59))
    assert missed(daily, T0, T0 + timedelta(days=1))
    assert missed(daily, T0, T0 + timedelta(days=5))
    every_minute = IntervalTrigger(seconds=60, timezone=UTC)
    assert not missed(every_minute, T0, T0 + timedelta(seconds=59))
    assert missed(every_minute, T0, T0 + timedelta(seconds=60))


def test_schedules_come_from_config_and_bad_ones_name_the_setting() -> None:
    jobs = {j.name: j for j in default_jobs(SchedulerSettings(inactivity_cron="15 2 * * *"))}
    assert set(jobs) == {"reverify", "inactivity", "reconcile", "policy", "checkpoint"}
    assert str(jobs["inactivity"].trigger.fields[6]) == "15"
    with pytest.raises(ConfigError, match="reconcile_cron = 'every day'"):
        default_jobs(SchedulerSettings(reconcile_cron="every day"))


class Counting:
    def __init__(self) -> None:
        self.calls: list[datetime] = []

    async def __call__(self, ctx: JobContext, now: datetime) -> Any:
        self.calls.append(now)
        return len(self.calls)


async def test_missed_runs_after_downtime_run_once_on_start(tmp_path: Path) -> None:
    h = harness(tmp_path)
    daily, hourly = Counting(), Counting()
    jobs = [
        ScheduledJob("daily", CronTrigger.from_crontab("0 3 * * *", timezone=UTC), daily),
        ScheduledJob("hourly", CronTrigger.from_crontab("0 * * * *", timezone=UTC), hourly),
    ]
    now = {"t": T0}
    scheduler = Scheduler(context(h), SchedulerSettings(), clock=lambda: now["t"], jobs=jobs)
    assert await scheduler.catch_up() == []  # first start ever: nothing was missed
    assert h.store.job_last_run("daily") == T0
    now["t"] = T0 + timedelta(days=3, minutes=10)  # down for three days: 3 daily, 72 hourly
    assert sorted(await scheduler.catch_up()) == ["daily", "hourly"]
    assert daily.calls == [now["t"]] and hourly.calls == [now["t"]]  # once each (coalesced)
    assert h.store.job_last_run("daily") == now["t"]
    assert await scheduler.catch_up() == []
    now["t"] += timedelta(minutes=55)  # past the next hour only
    assert await scheduler.catch_up() == ["hourly"]


async def test_a_failing_job_is_logged_and_not_marked_as_run(tmp_path: Path) -> None:
    h = harness(tmp_path)

    async def broken(ctx: JobContext, now: datetime) -> None:
        raise RuntimeError("boom")

    jobs = [ScheduledJob("broken", IntervalTrigger(seconds=60, timezone=UTC), broken)]
    scheduler = Scheduler(context(h), SchedulerSettings(), clock=lambda: T0, jobs=jobs)
    assert await scheduler.run_job("broken") is None
    assert h.store.job_last_run("broken") is None


async def test_apscheduler_fires_jobs_while_this_replica_leads(tmp_path: Path) -> None:
    h = harness(tmp_path)
    ticks = Counting()
    fired = anyio.Event()

    async def job(ctx: JobContext, now: datetime) -> None:
        await ticks(ctx, now)
        if len(ticks.calls) >= 2:
            fired.set()

    jobs = [ScheduledJob("tick", IntervalTrigger(seconds=1, timezone=UTC), job)]
    scheduler = Scheduler(
        context(h), SchedulerSettings(leader_retry_seconds=0.1), clock=h.clock, jobs=jobs
    )
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            await tg.start(scheduler.run)
            await fired.wait()
            tg.cancel_scope.cancel()
    assert len(ticks.calls) >= 2
    assert h.store.job_last_run("tick") is not None


def test_sqlite_process_always_leads() -> None:
    store = SqlStore("sqlite://")
    leader = store.leader_lock()
    assert leader.try_acquire() and leader.still_held() and leader.held
