"""The executor: claims due runs (fenced leases, heartbeat) and executes every kind of run with
the one step runner.

A run's plan expands into steps, one per (system, action); every system runs its own chain
concurrently, in the order its kind's ``RunSpec`` gives. Each step is persisted the moment it
settles, under the lease the run was claimed with, so a restarted replica resumes a run without
repeating confirmed steps, and a replica whose lease another took over can write nothing more.
The slowest system alone sets the time to verified.

Failures: transient errors (timeouts, 5xx, 429 with Retry-After, a read-back not yet showing
the change) are retried fast, in process; a step still failing then waits durably (persisted
next attempt, backoff growing to ``[retry] max_seconds``) until the retry horizon, with the run
``running`` meanwhile; an alert goes out at the first such failure and when a termination's SLA
is at risk. Permanent errors, and transient ones past the horizon, fail the step and escalate.
"""

from __future__ import annotations

import logging
import math
import random
import socket
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

import anyio
import anyio.abc
import anyio.to_thread

from connectors import base
from connectors.base import Account, Connector
from lifecycle.alerts import Alert, AlertSink
from lifecycle.domain import (
    ErrorCode,
    Lease,
    Link,
    Run,
    RunDetail,
    RunStatus,
    Step,
    StepError,
    StepStatus,
    identity_of,
)
from lifecycle.engine.actions import Action, ActionContext
from lifecycle.engine.commit import GroupCommit
from lifecycle.engine.kinds import Kinds, OnFailure, RunSpec, default_kinds
from lifecycle.evidence.log import EvidenceLog
from lifecycle.evidence.records import RecordOptions
from lifecycle.exceptions import (
    ConnectorError,
    LeaseLostError,
    LifecycleError,
    PermanentConnectorError,
    ReadbackMismatchError,
    StepTimeoutError,
    TransientConnectorError,
    UnsupportedOperationError,
)
from lifecycle.logs import bound
from lifecycle.metrics import Metrics
from lifecycle.retry import RetryPolicy, retry_transient
from lifecycle.store.ports import Deferral, Finish, LinkProgress, Progress, RunQueue, StepProgress

log = logging.getLogger("lifecycle.engine")
T = TypeVar("T")
LOOP_BACKOFF = 2.0
"""Seconds the executor waits after a database error before it tries again."""


def default_owner() -> str:
    """The instance id when none is configured: the host name, so that a restarted single-node
    service recognises the leases it held and resumes those runs at once. Replicas sharing a
    host need distinct ``[service] instance_id`` values."""
    return socket.gethostname() or f"replica-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True, slots=True)
class ExecutorConfig:
    retry: RetryPolicy
    step_timeout: float = 30.0
    sla_seconds: int = 3600
    horizon_seconds: float | None = None
    """How long a run keeps retrying an unreachable system (durably) before its step fails;
    None: half the termination SLA; 0: give up after the in-process retries."""
    lease: timedelta = timedelta(seconds=30)
    poll_seconds: float = 1.0
    max_parallel_runs: int = 256
    connector_concurrency: Mapping[str, int] | None = None
    default_concurrency: int = 32

    @property
    def horizon(self) -> timedelta:
        seconds = self.sla_seconds / 2 if self.horizon_seconds is None else self.horizon_seconds
        return timedelta(seconds=seconds)


class Write(Enum):
    NOW = "now"
    LATER = "later"
    """With the system's next write: before its next call is sent, or when its chain ends."""


class _ChainStopped(Exception):
    """The system's chain cannot go on now (its steps are already settled or deferred)."""


@dataclass
class _Execution:
    """One run being executed here: the latest state of its steps, and what waits."""

    lease: Lease
    run: Run
    spec: RunSpec
    worker: base.Worker
    links: dict[str, Link]
    steps: dict[int, Step]
    deferred: dict[str, datetime] = field(default_factory=dict)
    """System -> when its waiting step is due again."""
    unflushed: dict[str, list[Progress]] = field(default_factory=dict)
    """System -> settled steps and links not yet written: they go with that system's next
    write, which always comes before its next call is sent (or when its chain ends; the run's
    last chain leaves them to the run's end, which writes them in its own transaction)."""
    chains: int = 0
    """Systems whose chain is still running."""
    accounts: dict[str, Account] = field(default_factory=dict)
    """System -> the account adopted during this execution: named on each of its steps not
    settled before (``Executor._adopt``)."""


class Executor:
    """Claims and executes runs of every kind (one step runner, chosen by ``RunSpec``)."""

    def __init__(
        self,
        *,
        queue: RunQueue,
        connectors: Mapping[str, Connector],
        evidence: EvidenceLog,
        alerts: AlertSink,
        metrics: Metrics,
        config: ExecutorConfig,
        clock: Callable[[], datetime],
        owner: str | None = None,
        kinds: Kinds | None = None,
        db_threads: int = 16,
    ) -> None:
        self.queue = queue
        self.connectors = connectors
        self.evidence = evidence
        self.alerts = alerts
        self.metrics = metrics
        self.config = config
        self.clock = clock
        self.kinds = kinds or default_kinds()
        self.owner = owner or default_owner()
        concurrency = config.connector_concurrency or {}
        self.limiters = {
            name: anyio.CapacityLimiter(concurrency.get(name, config.default_concurrency))
            for name in connectors
        }
        self._db_limiter = anyio.CapacityLimiter(db_threads)
        self._in_flight: dict[str, Lease] = {}
        self._scopes: dict[str, anyio.CancelScope] = {}
        self._releasing: set[str] = set()
        """Runs whose end or wait is being written: their lease goes away by our own hand, so
        a heartbeat that finds it gone must not take that for a takeover."""
        self._wake = anyio.Event()
        self._sleep_until: datetime | None = None
        """When the loop looks for due work next, while it sleeps (None: it is awake)."""
        self._due_while_awake: datetime | None = None
        """The earliest future work woken for while the loop was awake."""
        self._reclaim_own = True
        self._writes: GroupCommit[Progress] = GroupCommit(
            lambda items: self._db(self.queue.save_progress, items), lambda i: i.lease.run_id
        )
        self._finishes: GroupCommit[Finish] = GroupCommit(self._finish_batch, _run_of)
        self.finished_runs = 0

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._db_limiter)

    async def _finish_batch(self, items: list[Finish]) -> set[str]:
        seqs = await self._db(self.queue.finish_runs, items, self.clock())
        return {item.lease.run_id for item in items} - set(seqs)

    def wake(self, due: datetime | None = None) -> None:
        """New work was stored, due at ``due`` (None: now): look for it then instead of at
        the next poll. Work due after the loop's next look anyway changes nothing (a burst of
        future-dated HR events must not send the loop claiming nothing once per event)."""
        if due is None:
            self._wake.set()
        elif self._sleep_until is None:  # awake: the next sleep is cut short to ``due``
            self._due_while_awake = min(due, self._due_while_awake or due)
        elif due < self._sleep_until:
            self._wake.set()

    # ------------------------------------------------------------------ the loop

    async def run_forever(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Claim and execute due runs until cancelled. A database error never stops the loop:
        it is logged and the loop tries again after a pause (runs stay durable meanwhile)."""
        await self._warm_up()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat)
            task_status.started()
            while True:
                try:
                    more, due = await self._claim_and_start(tg)
                    if not more:
                        await self._sleep_until_work(due)
                except Exception:
                    log.exception("executor: claiming failed; retrying in %.1f s", LOOP_BACKOFF)
                    await anyio.sleep(LOOP_BACKOFF)

    async def _warm_up(self) -> None:
        """Run the executor's queries once on nothing (no row is read or written), so the
        database driver has prepared them before the first termination after a start needs
        them; a failure here is left to the loop, which retries."""
        try:
            await self._db(self.queue.load_runs, [])
            await self._db(self.queue.save_progress, [])
            await self._db(self.queue.finish_runs, [], self.clock())
        except Exception:
            log.warning("executor: warming up the database queries failed", exc_info=True)

    async def _claim_and_start(self, tg: anyio.abc.TaskGroup) -> tuple[bool, datetime | None]:
        """Claim what is due and start it; (True when more may be waiting, when the next run
        not due yet is due)."""
        self._wake = anyio.Event()
        self._sleep_until = None  # awake: whatever is stored now is claimed next
        free = self.config.max_parallel_runs - len(self._in_flight)
        if free <= 0:
            return False, await self._db(self.queue.next_due, self.clock())
        reclaim_own, self._reclaim_own = self._reclaim_own, False
        exclude = sorted(self._in_flight)

        def claim_and_load() -> tuple[list[Lease], list[RunDetail], datetime | None]:
            # One trip to the database thread for the claim, the load (none when nothing was
            # due) and the next due time (when the loop will sleep): every HR event accepted
            # wakes this loop.
            claimed = self.queue.claim_runs(
                self.owner,
                self.clock(),
                self.config.lease,
                free,
                # A run still executing here (its lease lapsed under load) is not started a
                # second time: the heartbeat renews its lease.
                exclude=exclude,
                # Just started: runs this instance held before a restart are resumed now,
                # not after their leases expire.
                reclaim_own=reclaim_own,
            )
            # A failed load leaves the leases to lapse: the runs are claimed again.
            details = self.queue.load_runs([c.run_id for c in claimed]) if claimed else []
            due = self.queue.next_due(self.clock()) if len(claimed) < free else None
            return claimed, details, due

        try:
            claimed, details, due = await self._db(claim_and_load)
        except BaseException:
            self._reclaim_own = reclaim_own
            raise
        for lease in claimed:
            self._in_flight[lease.run_id] = lease
        by_id = {lease.run_id: lease for lease in claimed}
        for detail in details:
            tg.start_soon(self._execute_claimed, by_id[detail.run.id], detail)
        return len(claimed) == free, due

    async def _sleep_until_work(self, due: datetime | None) -> None:
        """Sleep until ``due`` (the next run not due at the claim), the poll, or a wake."""
        now = self.clock()
        wait = self.config.poll_seconds
        # Work stored since the claim may be missing from ``due``: its wake said when.
        woken, self._due_while_awake = self._due_while_awake, None
        for when in (due, woken):
            if when is not None:
                wait = min(wait, max((when - now).total_seconds(), 0.0))
        self._sleep_until = now + timedelta(seconds=wait)
        with anyio.move_on_after(wait):
            await self._wake.wait()

    async def _heartbeat(self) -> None:
        interval = self.config.lease.total_seconds() / 3
        while True:
            await anyio.sleep(interval)
            if not self._in_flight:
                continue
            try:
                lost = await self._db(
                    self.queue.renew_leases,
                    list(self._in_flight.values()),
                    self.clock() + self.config.lease,
                )
            except Exception:
                log.exception("lease renewal failed; trying again at the next beat")
                continue
            self._lost(lost)

    def _lost(self, run_ids: Sequence[str]) -> None:
        """Stop the runs whose lease renewal was refused: another replica took them over. A
        run whose own end (or durable wait) is being written released its lease itself: it
        is left to finish, alerts included; one that ended while the renewal was under way
        (the renewal named its lease before that) is gone already."""
        for run_id in run_ids:
            if run_id in self._releasing or run_id not in self._in_flight:
                continue
            log.warning("run %s was taken over by another replica; stopping here", run_id)
            scope = self._scopes.get(run_id)
            if scope is not None:
                scope.cancel()

    async def _execute_claimed(self, lease: Lease, detail: RunDetail | None = None) -> None:
        try:
            await self._execute_tracked(lease, detail)
        except LeaseLostError:
            log.warning("run %s was taken over by another replica; stopped", lease.run_id)
        except Exception as exc:
            # The lease lapses and another attempt (here or on a replica) resumes the run.
            log.exception(
                "run %s raised; it will be resumed after its lease expires",
                lease.run_id,
                extra={"run_id": lease.run_id, "error_class": type(exc).__name__},
            )

    async def _execute_tracked(self, lease: Lease, detail: RunDetail | None) -> RunStatus | None:
        self._in_flight[lease.run_id] = lease
        try:
            with anyio.CancelScope() as scope:
                self._scopes[lease.run_id] = scope
                return await self.execute(lease, detail)
            return None  # cancelled: the lease was lost
        finally:
            self._scopes.pop(lease.run_id, None)
            self._in_flight.pop(lease.run_id, None)
            self._releasing.discard(lease.run_id)

    async def execute_owned(
        self, lease: Lease, detail: RunDetail | None = None
    ) -> RunStatus | None:
        """Execute a run this replica created already leased to itself (scheduled jobs, policy
        enforcement); while it runs the heartbeat renews its lease like a claimed run's.
        ``detail``: the run as already loaded (a batch loads many in one query). Returns None
        if another replica took it over meanwhile."""
        try:
            return await self._execute_tracked(lease, detail)
        except LeaseLostError:
            log.warning("run %s was taken over by another replica; stopped", lease.run_id)
            return None

    # ------------------------------------------------------------------ one run

    async def execute(self, lease: Lease, detail: RunDetail | None = None) -> RunStatus:
        """Execute (or resume) a claimed run until it ends or waits; returns its status
        (``running``: a system is unreachable and its step waits for its next attempt).
        Raises LeaseLostError when another replica has taken the run over."""
        if detail is None:
            loaded = await self._db(self.queue.load_runs, [lease.run_id])
            if not loaded:
                raise LeaseLostError(f"run {lease.run_id} no longer exists")
            detail = loaded[0]
        run = detail.run
        ex = _Execution(
            lease=lease,
            run=run,
            spec=self.kinds[run.kind],
            worker=identity_of(detail.worker, run.worker_id),
            links=dict(detail.links),
            steps={s.id: s for s in detail.steps},
        )
        by_system: dict[str, list[Step]] = defaultdict(list)
        for step in detail.steps:
            by_system[step.system].append(step)
        ex.chains = len(by_system)
        try:
            with bound(run_id=run.id, worker_id=run.worker_id, kind=run.kind):
                async with anyio.create_task_group() as tg:
                    for name, steps in by_system.items():
                        chain = sorted(steps, key=lambda s: s.position)
                        tg.start_soon(self._run_system, ex, name, chain)
        except BaseExceptionGroup as group:
            lost, rest = group.split(LeaseLostError)
            if lost is not None and rest is None:
                raise LeaseLostError(f"run {run.id} was taken over by another replica") from None
            raise
        if ex.deferred:
            return await self._defer(ex)
        return await self._finish(ex, detail)

    async def _alert_run(self, run: Run, kind: str, message: str) -> None:
        await self.alerts.send(Alert(kind, message, run_id=run.id, worker_id=run.worker_id))

    def _ended(self, run_id: str) -> None:
        """The run's lease is released (ended or waiting): the heartbeat must neither renew it
        nor, finding it gone, cancel what is left to do here (its alerts)."""
        self._in_flight.pop(run_id, None)
        self._scopes.pop(run_id, None)
        self._releasing.discard(run_id)

    async def _finish(self, ex: _Execution, detail: RunDetail) -> RunStatus:
        run, spec = ex.run, ex.spec
        steps = tuple(ex.steps.values())
        status, finished, ttr = outcome_of(run, spec, steps)
        final = RunDetail(run, steps, detail.worker, detail.links)
        options = RecordOptions(sla=spec.sla, added=spec.record_added, reversal=spec.reversal)
        worker_status = spec.worker_status if status is not RunStatus.NO_ACCOUNTS else None
        # The steps' last states, the record and the run's end are one transaction (batched
        # with other runs' ends).
        progress = tuple(item for items in ex.unflushed.values() for item in items)
        ex.unflushed.clear()
        self._releasing.add(run.id)
        await self._finishes.submit(
            Finish(
                ex.lease,
                run.worker_id,
                status,
                finished,
                ttr,
                self.evidence.builder(final, status, ttr, options),
                worker_status,
                progress,
            )
        )
        self._ended(run.id)
        self.evidence.appended()
        self.finished_runs += 1
        if ttr is not None:
            self.metrics.time_to_revoke.observe(ttr / 1000)
        if status is RunStatus.INCOMPLETE:
            failed = [f"{s.system}.{s.action}" for s in steps if s.status is StepStatus.FAILED]
            await self._alert_run(
                run,
                "run_incomplete",
                f"{spec.describe()} of {run.worker_id} is NOT verified; failed steps: "
                f"{', '.join(failed) or 'none'}",
            )
        log.info(
            "run %s finished: %s",
            run.id,
            status,
            extra={
                "run_id": run.id,
                "worker_id": run.worker_id,
                "kind": run.kind,
                "status": str(status),
                "time_to_revoke_ms": ttr,
            },
        )
        return status

    async def _defer(self, ex: _Execution) -> RunStatus:
        run, spec = ex.run, ex.spec
        now = self.clock()
        at_risk = (
            spec.sla and run.sla_alerted_at is None and now >= run.due_at + self.config.horizon / 2
        )
        not_before = min(ex.deferred.values())
        self._releasing.add(run.id)
        ok = await self._db(
            self.queue.defer_run, Deferral(ex.lease, not_before, now if at_risk else None)
        )
        if not ok:
            raise LeaseLostError(f"run {run.id} was taken over by another replica")
        self._ended(run.id)
        if at_risk:
            deadline = run.due_at + timedelta(seconds=self.config.sla_seconds)
            await self._alert_run(
                run,
                "sla_at_risk",
                f"{spec.describe()} of {run.worker_id} is still not verified in "
                f"{', '.join(sorted(ex.deferred))}; its SLA ends at {deadline.isoformat()}",
            )
        log.info(
            "run %s waits for %s until %s",
            run.id,
            ", ".join(sorted(ex.deferred)),
            not_before.isoformat(),
            extra={"run_id": run.id, "next_attempt_at": not_before.isoformat()},
        )
        return RunStatus.RUNNING

    # ------------------------------------------------------------------ the step runner

    async def _run_system(self, ex: _Execution, system: str, steps: list[Step]) -> None:
        """One system's chain (with ``system`` on every log line it writes)."""
        with bound(system=system):
            await self._chain(ex, system, steps)
            ex.chains -= 1
            if ex.chains or ex.deferred:
                await self._flush(ex, system)
            # Else this was the run's last chain and the run ends now: what it has not written
            # goes with the run's end (one transaction and one round trip less per run).

    async def _chain(self, ex: _Execution, system: str, steps: list[Step]) -> None:
        """Resolve the account, then run each pending step in order."""
        pending = [s for s in steps if not s.status.settled]
        if not pending:
            return
        connector = self.connectors.get(system)
        if connector is None:
            message = f"connector {system!r} is no longer configured"
            await self._fail_all(ex, pending, StepError(message, None, ErrorCode.CONNECTOR_MISSING))
            await self.alerts.send(
                Alert("connector_missing", message, ex.run.id, ex.run.worker_id, system)
            )
            return
        async with self.limiters[system]:
            try:
                account = await self._account(ex, connector, steps, pending)
                for step in pending:
                    account = await self._step(ex, connector, account, step, pending, steps)
            except _ChainStopped:
                return

    async def _account(
        self, ex: _Execution, connector: Connector, steps: list[Step], pending: list[Step]
    ) -> Account | None:
        """The worker's account here (None: the chain runs without one, as a joiner's create
        does); raises _ChainStopped with the steps settled when there is nothing to do."""
        spec, system = ex.spec, connector.name
        if not spec.find_account:
            return None
        account = await self._resolve(ex, connector, steps)
        if account is None and not (
            spec.creates_account and spec.creates_account(ex.run.plan, system)
        ):
            for step in pending:
                await self._skip(ex, step, StepStatus.NO_ACCOUNT)
            raise _ChainStopped
        return account

    async def _resolve(
        self, ex: _Execution, connector: Connector, steps: list[Step]
    ) -> Account | None:
        """The account the steps already name, else a lookup (linked accounts must be found)."""
        known = next((s for s in steps if s.account_id), None)
        if known is not None and known.account_id:
            return Account(
                connector.name, known.account_id, known.account_login, ex.worker.worker_id
            )
        pending = [ex.steps[s.id] for s in steps if not s.status.settled]
        waiting = pending[0].first_failed_at is not None
        try:
            account: Account | None = await self._call(
                ex,
                connector,
                "find_account",
                None,
                lambda: connector.find_account(ex.worker),
                attempts=1 if waiting else None,
            )
        except TransientConnectorError as exc:
            # An outage shows first here: the lookup waits as the chain's first step would.
            if not await self._wait_durably(ex, connector.name, pending[0].id, exc):
                await self._failed(
                    ex, connector.name, "find_account", pending, exc, prefix="find_account: "
                )
            raise _ChainStopped from exc
        except Exception as exc:  # a connector bug must fail the run, not loop it forever
            await self._failed(
                ex, connector.name, "find_account", pending, exc, prefix="find_account: "
            )
            raise _ChainStopped from exc
        link = ex.links.get(connector.name)
        if account is None:
            if link is None:
                return None
            message = (
                f"linked account {link.account_id} was not found; it may have been "
                "renamed or deleted outside lifecycle"
            )
            await self._fail_all(ex, pending, StepError(message, None, ErrorCode.ACCOUNT_VANISHED))
            await self.alerts.send(
                Alert("step_failed", message, ex.run.id, ex.run.worker_id, connector.name)
            )
            raise _ChainStopped
        await self._adopt(ex, account)
        return account

    async def _adopt(self, ex: _Execution, account: Account) -> None:
        """Link the account to the worker and name it on the system's steps."""
        link = ex.links.get(account.system)
        if link is None or link.account_id != account.account_id:
            new = Link(
                ex.worker.worker_id, account.system, account.account_id, account.login, self.clock()
            )
            ex.links[account.system] = new
            ex.unflushed.setdefault(account.system, []).append(LinkProgress(ex.lease, new))
        # The system's steps not settled yet take the account with their next state change
        # (``_save``), not with a copy of each step now.
        ex.accounts[account.system] = account

    async def _step(
        self,
        ex: _Execution,
        connector: Connector,
        account: Account | None,
        step: Step,
        pending: list[Step],
        chain: list[Step],
    ) -> Account | None:
        """Run one step to its settled state (or its durable wait); returns the account the
        later steps use (``chain``: all of the system's steps, in order). Raises _ChainStopped
        when the chain cannot go on."""
        action = ex.spec.action(step.action)
        now = self.clock()
        if action.capability is not None and action.capability not in connector.capabilities:
            await self._skip(ex, step, StepStatus.NOT_APPLICABLE)
            return account
        # When the step started: set with its first attempt's write-ahead (or its outcome when
        # it makes no call), not by a state change of its own.
        started = step.started_at or now
        try:
            done = await action.run(
                ActionContext(
                    system=connector.name,
                    connector=connector,
                    worker=ex.worker,
                    plan=ex.run.plan,
                    account=account,
                    call=_Caller(self, ex, connector, step.id, action, started),
                    results={
                        s.action: result
                        for s in chain
                        if s.position < step.position and (result := ex.steps[s.id].result)
                    },
                )
            )
        except LeaseLostError:
            raise
        except TransientConnectorError as exc:
            self._started(ex, step.id, started)
            if await self._wait_durably(ex, connector.name, step.id, exc):
                raise _ChainStopped from exc
            await self._give_up(ex, connector.name, step.id, exc, pending)
            return account
        except Exception as exc:
            self._started(ex, step.id, started)
            await self._give_up(ex, connector.name, step.id, exc, pending)
            return account
        if done.account is not None:
            account = done.account
            await self._adopt(ex, account)
        current = ex.steps[step.id]
        await self._save(
            ex,
            current,
            write=Write.LATER,
            started_at=current.started_at or started,
            status=done.status,
            finished_at=self.clock(),
            result=done.result,
            readback=done.readback,
            error=None,
            next_attempt_at=None,
        )
        return account

    @staticmethod
    def _started(ex: _Execution, step_id: int, started: datetime) -> None:
        """The step failed before its first attempt's write-ahead: it started all the same."""
        step = ex.steps[step_id]
        if step.started_at is None:
            ex.steps[step_id] = replace(step, started_at=started)

    async def _skip(self, ex: _Execution, step: Step, status: StepStatus) -> None:
        """Settle a step that has nothing to do here (no account, no such capability)."""
        now = self.clock()
        await self._save(
            ex, step, write=Write.LATER, status=status, started_at=now, finished_at=now
        )

    async def _give_up(
        self,
        ex: _Execution,
        system: str,
        step_id: int,
        exc: BaseException,
        pending: list[Step],
    ) -> None:
        """Fail the step and escalate; with a STOP spec the system's later steps fail too."""
        step = ex.steps[step_id]
        prefix = (
            f"gave up after {step.attempts} attempts: "
            if isinstance(exc, TransientConnectorError)
            else ""
        )
        await self._failed(ex, system, step.action, [step], exc, prefix=prefix)
        if ex.spec.on_failure is OnFailure.STOP:
            later = [s for s in pending if s.position > step.position]
            message = f"not attempted: {step.action} failed"
            await self._fail_all(ex, later, StepError(message, None, ErrorCode.NOT_ATTEMPTED))
            raise _ChainStopped from exc

    async def _failed(
        self,
        ex: _Execution,
        system: str,
        action: str,
        steps: Iterable[Step],
        exc: BaseException,
        *,
        prefix: str = "",
    ) -> None:
        error = error_of(exc, prefix)
        if error.code == ErrorCode.CONNECTOR_BUG:
            log.error(
                "connector %s raised unexpectedly in %s",
                system,
                action,
                exc_info=exc,
                extra={"action": action, "error_class": type(exc).__name__},
            )
        await self._fail_all(ex, list(steps), error)
        await self._escalate(ex, system, action, exc)

    async def _fail_all(self, ex: _Execution, steps: list[Step], error: StepError) -> None:
        now = self.clock()
        for step in steps:
            current = ex.steps[step.id]
            await self._save(
                ex,
                current,
                status=StepStatus.FAILED,
                error=error,
                finished_at=now,
                next_attempt_at=None,
            )

    async def _wait_durably(
        self, ex: _Execution, system: str, step_id: int, exc: TransientConnectorError
    ) -> bool:
        """Put the step off to a persisted next attempt while the horizon allows; False when
        it is past (the step then fails)."""
        step = ex.steps[step_id]
        now = self.clock()
        next_attempt = now + timedelta(seconds=self._durable_wait(step, exc, now))
        if (
            self.config.horizon <= timedelta(0)
            or next_attempt > ex.run.due_at + self.config.horizon
        ):
            return False
        if any(s.system == system and s.status is StepStatus.FAILED for s in ex.steps.values()):
            # An earlier step here failed for good (and is escalated): waiting for this one
            # (say, a read-back that cannot show the disable that failed) helps nobody.
            return False
        first = step.first_failed_at is None
        await self._save(
            ex,
            step,
            error=error_of(exc, f"attempt {step.attempts}: "),
            next_attempt_at=next_attempt,
            first_failed_at=step.first_failed_at or now,
        )
        ex.deferred[system] = next_attempt
        if first:
            await self.alerts.send(
                Alert(
                    "step_retrying",
                    f"{step.action} for {ex.run.worker_id} in {system} keeps failing "
                    f"({exc.message}); retrying until "
                    f"{(ex.run.due_at + self.config.horizon).isoformat()}",
                    ex.run.id,
                    ex.run.worker_id,
                    system,
                )
            )
        return True

    def _durable_wait(self, step: Step, exc: TransientConnectorError, now: datetime) -> float:
        """Seconds until the next attempt: as long as the step has already been failing
        (so the wait doubles each time), from ``[retry] initial_seconds`` up to
        ``max_seconds``; a server's Retry-After wins (capped), as in process."""
        policy = self.config.retry
        if exc.retry_after is not None:
            return policy.wait(1, exc)
        failing = (now - (step.first_failed_at or now)).total_seconds()
        base = min(max(failing, policy.initial_seconds), policy.max_seconds)
        return base * (1 + random.uniform(0, policy.jitter))  # noqa: S311 - jitter, not crypto

    async def _save(
        self, ex: _Execution, step: Step, *, write: Write = Write.NOW, **changes: Any
    ) -> Step:
        """The step's new state, kept for the run's outcome and written under the run's lease:
        now (with what its system has not written yet) or with its system's next write."""
        current = ex.steps.get(step.id, step)
        account = ex.accounts.get(current.system)
        if (
            account is not None
            and (current.account_id, current.account_login) != (account.account_id, account.login)
            and not current.status.settled
        ):
            changes.update(account_id=account.account_id, account_login=account.login)
        new = replace(current, **changes) if changes else current
        ex.steps[step.id] = new
        if write is Write.LATER:
            ex.unflushed.setdefault(new.system, []).append(StepProgress(ex.lease, new))
        elif write is Write.NOW:
            await self._flush(ex, new.system, StepProgress(ex.lease, new))
        return new

    async def _flush(self, ex: _Execution, system: str, *items: Progress) -> None:
        """Write what ``system``'s chain has not written yet, and ``items``, in one commit."""
        batch = [*ex.unflushed.pop(system, ()), *items]
        if batch:
            await self._writes.submit_all(batch)

    async def _call(
        self,
        ex: _Execution,
        connector: Connector,
        action: str,
        step_id: int | None,
        call: Callable[[], Awaitable[T]],
        attempts: int | None = None,
        started: datetime | None = None,
    ) -> T:
        """One connector call with timeout and the retry policy; a step's attempts are
        counted and persisted (``step_id`` None: the account lookup, which is no step's;
        ``started``: when the step started, if its first attempt is the first to say so)."""
        policy = self.config.retry
        if attempts is not None:
            policy = replace(policy, attempts=attempts)

        async def attempt() -> T:
            number = None
            if step_id is not None:
                # Write-ahead: the attempt is durable before the call is sent, so a call that a
                # crash leaves unconfirmed still counts when the resumed run sends it again.
                step = ex.steps[step_id]
                number = step.attempts + 1
                await self._save(
                    ex, step, attempts=number, started_at=step.started_at or started or self.clock()
                )
            self.metrics.attempted(connector.name, action)
            # A cancel scope with a deadline is ``anyio.fail_after`` without its two
            # generator-based context managers (half the cost, around every call).
            deadline = anyio.current_time() + self.config.step_timeout
            try:
                with bound(attempt=number), anyio.CancelScope(deadline=deadline):
                    return await call()
            except TimeoutError as exc:
                raise timed_out() from exc
            except ConnectorError as exc:
                kind = "transient" if isinstance(exc, TransientConnectorError) else "permanent"
                self.metrics.step_errors.labels(connector.name, action, kind).inc()
                raise
            # Only the deadline ends the block without a return (the scope caught its own
            # cancellation).
            raise timed_out()

        def timed_out() -> StepTimeoutError:
            self.metrics.step_errors.labels(connector.name, action, "transient").inc()
            return StepTimeoutError(
                f"{action} did not answer within {self.config.step_timeout:g} s",
                connector=connector.name,
            )

        async def on_retry(number: int, exc: TransientConnectorError, wait: float) -> None:
            # retry_transient logs the attempt; the error goes with the next attempt's write.
            if step_id is not None:
                await self._save(
                    ex,
                    ex.steps[step_id],
                    write=Write.LATER,
                    error=error_of(
                        exc, f"attempt {number}: ", suffix=f" (retrying in {wait:.1f} s)"
                    ),
                )

        with bound(action=action):
            return await retry_transient(attempt, policy, on_retry=on_retry)

    async def _escalate(self, ex: _Execution, system: str, action: str, exc: BaseException) -> None:
        message = (
            exc.message if isinstance(exc, LifecycleError | ConnectorError) else type(exc).__name__
        )
        kind = "permanent" if isinstance(exc, PermanentConnectorError) else "exhausted"
        with bound(action=action, error_class=type(exc).__name__):
            await self.alerts.send(
                Alert(
                    "step_failed",
                    f"{action} failed ({kind}) for {ex.run.worker_id} in {system}: {message}",
                    ex.run.id,
                    ex.run.worker_id,
                    system,
                )
            )


class _Caller:
    """``ActionContext.call`` for one step: in the durable phase one attempt per scheduled
    time, else the whole in-process retry policy."""

    __slots__ = ("action", "connector", "ex", "executor", "started", "step_id")

    def __init__(
        self,
        executor: Executor,
        ex: _Execution,
        connector: Connector,
        step_id: int,
        action: Action,
        started: datetime,
    ) -> None:
        self.executor, self.ex, self.connector = executor, ex, connector
        self.step_id, self.action, self.started = step_id, action, started

    def __call__(self, call: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        waiting = self.ex.steps[self.step_id].first_failed_at is not None
        return self.executor._call(
            self.ex,
            self.connector,
            self.action.name,
            self.step_id,
            call,
            attempts=1 if waiting else None,
            started=self.started,
        )


def _run_of(item: Finish) -> str:
    return item.lease.run_id


def error_of(exc: BaseException, prefix: str = "", suffix: str = "") -> StepError:
    """The class and code evidence keeps, and the operators' message."""
    if isinstance(exc, UnsupportedOperationError):
        code = ErrorCode.UNSUPPORTED
    elif isinstance(exc, PermanentConnectorError):
        code = ErrorCode.PERMANENT
    elif isinstance(exc, StepTimeoutError):
        code = ErrorCode.TIMEOUT
    elif isinstance(exc, ReadbackMismatchError):
        code = ErrorCode.READBACK_MISMATCH
    elif isinstance(exc, TransientConnectorError):
        code = ErrorCode.EXHAUSTED
    elif isinstance(exc, LifecycleError | ConnectorError):
        code = ErrorCode.PERMANENT
    else:
        code = ErrorCode.CONNECTOR_BUG
    message = (
        exc.message
        if isinstance(exc, LifecycleError | ConnectorError)
        else f"unexpected {type(exc).__name__} in connector"
    )
    return StepError(prefix + message + suffix, type(exc).__name__, code)


def outcome_of(
    run: Run, spec: RunSpec, steps: Sequence[Step]
) -> tuple[RunStatus, datetime, int | None]:
    """The run's final status, when it finished, and its time to revoke (terminations that
    verified only)."""
    by_system: dict[str, list[Step]] = defaultdict(list)
    for step in steps:
        by_system[step.system].append(step)
    finished = max((s.finished_at for s in steps if s.finished_at), default=run.received_at)
    with_accounts = {
        name: chain
        for name, chain in by_system.items()
        if not all(s.status is StepStatus.NO_ACCOUNT for s in chain)
    }
    if not with_accounts:
        return RunStatus.NO_ACCOUNTS, finished, None
    verifies = [
        next((s for s in chain if s.action == spec.verify), None)
        for chain in with_accounts.values()
    ]
    any_failed = any(s.status is StepStatus.FAILED for s in steps)
    if any_failed or not all(v is not None and v.status is StepStatus.DONE for v in verifies):
        return RunStatus.INCOMPLETE, finished, None
    if not spec.sla:
        return RunStatus.VERIFIED, finished, None
    last = max(v.finished_at for v in verifies if v is not None and v.finished_at)
    return (
        RunStatus.VERIFIED,
        finished,
        max(math.ceil((last - run.due_at).total_seconds() * 1000), 0),
    )
