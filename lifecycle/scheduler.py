"""When the jobs of ``lifecycle.services.sweeps`` run: APScheduler 3 on the replica that leads.

* Leadership: on PostgreSQL only the replica holding a session advisory lock (on a dedicated
  connection) runs the scheduler; if that replica dies its connection closes, the lock is
  released, and another replica takes over within ``leader_retry_seconds``. On SQLite the single
  process is the leader. Every job is idempotent anyway, so a brief overlap is harmless.
* Missed runs: each job's last run is stored; on start, a job whose trigger fired while no
  replica was leading runs once (coalesced), however many fire times were missed. Inside a
  running scheduler APScheduler's own ``coalesce`` and ``misfire_grace_time`` do the same.
* Schedules come from ``[scheduler]``; jobs receive the clock's ``now``, so tests call them
  directly with a controllable clock and never wait for real time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from lifecycle.exceptions import ConfigError
from lifecycle.services.sweeps import (
    Job,
    JobContext,
    checkpoint_job,
    inactivity_sweep,
    policy_job,
    reconcile,
    reverify_terminations,
)
from lifecycle.settings import SchedulerSettings
from lifecycle.store.ports import LeaderLock

log = logging.getLogger("lifecycle.scheduler")


@dataclass(frozen=True, slots=True)
class ScheduledJob:
    name: str
    trigger: BaseTrigger
    run: Job


def cron(expression: str, what: str) -> CronTrigger:
    try:
        return CronTrigger.from_crontab(expression, timezone=UTC)
    except ValueError as exc:
        raise ConfigError(f"[scheduler] {what} = {expression!r}: {exc}") from exc


def default_jobs(options: SchedulerSettings) -> list[ScheduledJob]:
    return [
        ScheduledJob(
            "reverify",
            IntervalTrigger(seconds=options.reverify_every_seconds, timezone=UTC),
            reverify_terminations,
        ),
        ScheduledJob(
            "inactivity", cron(options.inactivity_cron, "inactivity_cron"), inactivity_sweep
        ),
        ScheduledJob("reconcile", cron(options.reconcile_cron, "reconcile_cron"), reconcile),
        ScheduledJob("policy", cron(options.policy_check_cron, "policy_check_cron"), policy_job),
        ScheduledJob(
            "checkpoint",
            IntervalTrigger(seconds=options.checkpoint_every_seconds, timezone=UTC),
            checkpoint_job,
        ),
    ]


def missed(trigger: BaseTrigger, last_run: datetime, now: datetime) -> bool:
    """Whether ``trigger`` was due at least once after ``last_run`` and up to ``now``."""
    if isinstance(trigger, IntervalTrigger):
        interval: timedelta = trigger.interval
        return now - last_run >= interval
    upcoming: datetime | None = trigger.get_next_fire_time(None, last_run + timedelta(seconds=1))
    return upcoming is not None and upcoming <= now


class Scheduler:
    def __init__(
        self,
        ctx: JobContext,
        options: SchedulerSettings,
        *,
        clock: Callable[[], datetime],
        jobs: list[ScheduledJob] | None = None,
        leadership: LeaderLock | None = None,
    ) -> None:
        self.ctx = ctx
        self.options = options
        self.clock = clock
        self.jobs: Mapping[str, ScheduledJob] = {
            j.name: j for j in (jobs if jobs is not None else default_jobs(options))
        }
        self.leadership = leadership or ctx.store.leader_lock()
        self.last_results: dict[str, Any] = {}

    async def run_job(self, name: str) -> Any:
        """Run one job now (also what APScheduler calls); failures are logged, not raised."""
        job = self.jobs[name]
        if not self.leadership.held:
            log.info("job %s skipped: this replica does not lead", name)
            return None
        now = self.clock()
        try:
            result = await job.run(self.ctx, now)
        except Exception:
            log.exception("scheduled job %s failed", name)
            return None
        await anyio.to_thread.run_sync(self.ctx.store.mark_job_run, name, now)
        self.last_results[name] = result
        return result

    async def catch_up(self) -> list[str]:
        """Run, once each, the jobs that were due while nobody led. A job never run before
        gets its first timestamp now (nothing was missed before it existed)."""
        now = self.clock()
        due = []
        for name, job in self.jobs.items():
            last = await anyio.to_thread.run_sync(self.ctx.store.job_last_run, name)
            if last is None:
                await anyio.to_thread.run_sync(self.ctx.store.mark_job_run, name, now)
            elif missed(job.trigger, last, now):
                due.append(name)
        for name in due:
            log.info("job %s missed its schedule while no replica led; running it once", name)
            await self.run_job(name)
        return due

    def _start_apscheduler(self) -> AsyncIOScheduler:
        scheduler = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": self.options.misfire_grace_seconds,
            },
        )
        for name, job in self.jobs.items():
            scheduler.add_job(self.run_job, job.trigger, args=[name], id=name, name=name)
        scheduler.start()
        return scheduler

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Lead when possible: catch up, then let APScheduler fire jobs until leadership ends."""
        task_status.started()
        retry = self.options.leader_retry_seconds
        while True:
            try:
                await self._lead_while_possible()
            except Exception:  # a database hiccup must not end scheduling for good
                log.exception("scheduler: leadership term failed; trying again")
            await anyio.sleep(retry)

    async def _lead_while_possible(self) -> None:
        """One term: take the lock if free, catch up, fire jobs until the lock is lost."""
        if not await anyio.to_thread.run_sync(self.leadership.try_acquire):
            return
        log.info("this replica leads the scheduler")
        scheduler = self._start_apscheduler()
        try:
            await self.catch_up()
            # Poll the lock's connection: the lock cannot signal its own loss.
            while True:
                await anyio.sleep(self.options.leader_retry_seconds)
                if not await anyio.to_thread.run_sync(self.leadership.still_held):
                    break
        finally:
            scheduler.shutdown(wait=False)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self.leadership.release)
