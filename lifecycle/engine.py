"""Plan and execute runs: claim due work, fan out to every connector at once, retry, verify,
escalate, and write the evidence record.

For a termination every connector runs its own chain concurrently:
find account -> disable -> revoke sessions -> remove access -> read back and verify.
Each step is persisted the moment it settles, so a restarted replica resumes a run without
repeating confirmed steps. The slowest connector alone sets the time to verified.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, ParamSpec, TypeVar

import anyio
import anyio.abc
import anyio.to_thread

from connectors.base import (
    Account,
    AccountState,
    ActionResult,
    Capability,
    Connector,
    Outcome,
    Worker,
)
from lifecycle.alerts import Alert, AlertSink
from lifecycle.evidence.log import EvidenceLog
from lifecycle.exceptions import (
    ConnectorError,
    LifecycleError,
    PermanentConnectorError,
    TransientConnectorError,
)
from lifecycle.logs import bound
from lifecycle.metrics import Metrics
from lifecycle.models import AccountLink, Run, RunKind, RunStatus, Step, StepStatus, WorkerRow
from lifecycle.retry import RetryPolicy, retry_transient
from lifecycle.store import Finish, RunDetail, Store

log = logging.getLogger("lifecycle.engine")
P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")
LOOP_BACKOFF = 2.0
"""Seconds the executor waits after a database error before it tries again."""

CAPABILITY_OF: Mapping[str, Capability] = {
    "disable": Capability.DISABLE,
    "revoke_sessions": Capability.REVOKE_SESSIONS,
    "remove_access": Capability.REMOVE_ACCESS,
    "verify": Capability.READ_STATE,
}


@dataclass(frozen=True, slots=True)
class EngineConfig:
    retry: RetryPolicy
    step_timeout: float = 30.0
    sla_seconds: int = 3600
    lease: timedelta = timedelta(seconds=30)
    poll_seconds: float = 1.0
    max_parallel_runs: int = 256
    connector_concurrency: Mapping[str, int] | None = None
    default_concurrency: int = 32


@dataclass(frozen=True, slots=True)
class PlannedAccount:
    """Dry-run answer for one system."""

    system: str
    account_id: str | None
    login: str | None
    enabled: bool | None
    entitlements: tuple[str, ...]
    actions: tuple[str, ...]
    error: str | None = None


def worker_of(row: WorkerRow | None, worker_id: str) -> Worker:
    if row is None:
        return Worker(worker_id=worker_id)
    return Worker(
        worker_id=row.worker_id,
        email=row.email,
        name=row.name,
        upn=row.upn,
        engagement=row.engagement,
        vendor=row.vendor,
        job_code=row.job_code,
    )


def readback_of(state: AccountState) -> dict[str, Any]:
    return {
        "enabled": state.enabled,
        "locked": state.locked,
        "sessions_valid_from": (
            state.sessions_valid_from.isoformat().replace("+00:00", "Z")
            if state.sessions_valid_from
            else None
        ),
        "entitlements_left": sorted(state.entitlements),
        "read_at": state.read_at.isoformat().replace("+00:00", "Z"),
    }


def result_json(result: ActionResult) -> str:
    data = asdict(result)
    data["outcome"] = result.outcome.value
    data["skipped"] = [f"{s.item}: {s.reason}" for s in result.skipped]
    data["started_at"] = result.started_at.isoformat()
    data["finished_at"] = result.finished_at.isoformat()
    data["detail"] = dict(result.detail)
    return json.dumps(data, sort_keys=True)


def outcome_of(detail: RunDetail) -> tuple[RunStatus, datetime, int | None]:
    """The run's final status, when it finished, and its time to revoke (verified runs only)."""
    by_connector: dict[str, list[Step]] = defaultdict(list)
    for step in detail.steps:
        by_connector[step.connector].append(step)
    finished = max(
        (s.finished_at for s in detail.steps if s.finished_at), default=detail.run.received_at
    )
    with_accounts = {
        name: steps
        for name, steps in by_connector.items()
        if not all(s.status == StepStatus.NO_ACCOUNT for s in steps)
    }
    if not with_accounts:
        return RunStatus.NO_ACCOUNTS, finished, None
    verifies = [
        next((s for s in steps if s.action == "verify"), None) for steps in with_accounts.values()
    ]
    any_failed = any(s.status == StepStatus.FAILED for s in detail.steps)
    if not any_failed and all(v is not None and v.status == StepStatus.DONE for v in verifies):
        last = max(v.finished_at for v in verifies if v is not None and v.finished_at)
        start = max(detail.run.received_at, detail.run.not_before)
        return (
            RunStatus.VERIFIED,
            finished,
            max(math.ceil((last - start).total_seconds() * 1000), 0),
        )
    return RunStatus.INCOMPLETE, finished, None


class GroupCommit(Generic[R]):
    """Batches progress writes (steps, account links) into one transaction per flush.

    Every caller still waits until its own row is committed, so "a step is persisted before the
    chain moves on" holds; while one flush runs, the rows submitted meanwhile queue for the
    next. The first waiting caller flushes (no background task), so it works wherever the
    engine runs. One transaction for many chains is what lets a burst of terminations be
    limited by connector concurrency instead of by database round trips.
    """

    def __init__(self, write: Callable[[list[R]], Awaitable[Any]]) -> None:
        self._write = write
        self._queue: list[tuple[R, _Ticket]] = []
        self._flushing = False

    async def submit(self, row: R) -> None:
        ticket = _Ticket()
        self._queue.append((row, ticket))
        if not self._flushing:
            self._flushing = True
            try:
                while self._queue:
                    batch, self._queue = self._queue, []
                    try:
                        await self._write([r for r, _ in batch])
                    except BaseException as exc:
                        # Everyone waiting, queued during this write too, learns of the failure;
                        # nobody is left waiting on a flush that will not come.
                        batch, self._queue = batch + self._queue, []
                        for _, waiting in batch:
                            waiting.fail(exc)
                        break
                    for _, waiting in batch:
                        waiting.done.set()
            finally:
                self._flushing = False
        await ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error


class _Ticket:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.done.set()


class _ChainAborted(Exception):
    """The account could not be resolved; the chain's steps are already settled as failed."""


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        connectors: Mapping[str, Connector],
        evidence: EvidenceLog,
        alerts: AlertSink,
        metrics: Metrics,
        config: EngineConfig,
        clock: Callable[[], datetime],
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.connectors = connectors
        self.evidence = evidence
        self.alerts = alerts
        self.metrics = metrics
        self.config = config
        self.clock = clock
        self.owner = owner or f"replica-{uuid.uuid4().hex[:12]}"
        concurrency = config.connector_concurrency or {}
        self.limiters = {
            name: anyio.CapacityLimiter(concurrency.get(name, config.default_concurrency))
            for name in connectors
        }
        self._db_limiter = anyio.CapacityLimiter(1 if store.is_sqlite else 16)
        self._wake = anyio.Event()
        self._in_flight: set[str] = set()
        self._links: dict[str, dict[str, AccountLink]] = {}
        """Account links of the runs being executed, by run id and connector (read once)."""
        self._writes: GroupCommit[Step | AccountLink] = GroupCommit(
            lambda rows: self._db(self.store.save_progress, rows)
        )
        self._finishes: GroupCommit[Finish] = GroupCommit(
            lambda items: self._db(self.store.finish_runs, items, self.clock())
        )
        self.finished_runs = 0

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._db_limiter)

    def wake(self) -> None:
        """New work was stored: look for it now instead of at the next poll."""
        self._wake.set()

    # ------------------------------------------------------------------ the loop

    async def run_forever(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Claim and execute due runs until cancelled. A database error never stops the loop:
        it is logged and the loop tries again after a pause (runs stay durable meanwhile)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._heartbeat)
            task_status.started()
            while True:
                try:
                    more = await self._claim_and_start(tg)
                    if not more:
                        await self._sleep_until_work()
                except Exception:
                    log.exception("executor: claiming failed; retrying in %.1f s", LOOP_BACKOFF)
                    await anyio.sleep(LOOP_BACKOFF)

    async def _claim_and_start(self, tg: anyio.abc.TaskGroup) -> bool:
        """Claim what is due and start it; True when more may be waiting."""
        self._wake = anyio.Event()
        free = self.config.max_parallel_runs - len(self._in_flight)
        if free <= 0:
            return False
        claimed = await self._db(
            self.store.claim_runs, self.owner, self.clock(), self.config.lease, free
        )
        # A run this replica is still executing (its lease lapsed under load) is not started
        # a second time: the heartbeat renews its lease again.
        fresh = [run_id for run_id in claimed if run_id not in self._in_flight]
        self._in_flight.update(fresh)
        try:
            details = await self._db(self.store.load_runs, fresh) if fresh else []
        except BaseException:
            self._in_flight.difference_update(fresh)  # their leases lapse; they are re-claimed
            raise
        for detail in details:
            tg.start_soon(self._execute_claimed, detail.run.id, detail)
        return len(claimed) == free

    async def _sleep_until_work(self) -> None:
        wait = self.config.poll_seconds
        due = await self._db(self.store.next_due, self.clock())
        if due is not None:
            wait = min(wait, max((due - self.clock()).total_seconds(), 0.0))
        with anyio.move_on_after(wait):
            await self._wake.wait()

    async def _heartbeat(self) -> None:
        interval = self.config.lease.total_seconds() / 3
        while True:
            await anyio.sleep(interval)
            if not self._in_flight:
                continue
            try:
                await self._db(
                    self.store.renew_leases,
                    self.owner,
                    sorted(self._in_flight),
                    self.clock() + self.config.lease,
                )
            except Exception:
                log.exception("lease renewal failed; trying again at the next beat")

    async def _execute_claimed(self, run_id: str, detail: RunDetail | None = None) -> None:
        try:
            await self.execute(run_id, detail)
        except Exception as exc:
            # The lease lapses and another attempt (here or on a replica) resumes the run.
            log.exception(
                "run %s raised; it will be resumed after its lease expires",
                run_id,
                extra={"run_id": run_id, "error_class": type(exc).__name__},
            )
        finally:
            self._in_flight.discard(run_id)

    # ------------------------------------------------------------------ one run

    async def execute(self, run_id: str, detail: RunDetail | None = None) -> RunStatus:
        """Execute (or resume) a claimed run to its end and record its evidence."""
        if detail is None:
            detail = await self._db(self.store.load_run, run_id)
        run = detail.run
        worker = worker_of(detail.worker, run.worker_id)
        self._links[run_id] = detail.links
        by_connector: dict[str, list[Step]] = defaultdict(list)
        for step in detail.steps:
            by_connector[step.connector].append(step)
        chain = self._chain
        if run.kind in (RunKind.ONBOARD, RunKind.TRANSFER):
            from lifecycle.provisioning import provision_chain  # imports this module

            chain = functools.partial(provision_chain, self)
        elif any(s.action == "apply_policy" for s in detail.steps):
            from lifecycle.policy import policy_chain  # imports this module

            chain = functools.partial(policy_chain, self)
        try:
            with bound(run_id=run_id, worker_id=run.worker_id, kind=run.kind):
                async with anyio.create_task_group() as tg:
                    for name, steps in by_connector.items():
                        ordered = sorted(steps, key=lambda s: s.position)
                        tg.start_soon(self._bound_chain, chain, run, worker, name, ordered)
        finally:
            self._links.pop(run_id, None)
        # The chains settled (and persisted) these very step objects: no need to read them back.
        status, finished, ttr = outcome_of(detail)
        if run.kind != RunKind.OFFBOARD:
            ttr = None  # "time to revoke" is a termination measure; others have no SLA
        # The record and the run's end are one transaction (batched with other runs' ends).
        await self._finishes.submit(
            Finish(
                run_id,
                run.worker_id,
                status,
                finished,
                ttr,
                self.evidence.builder(detail, status, ttr),
            )
        )
        self.evidence.appended()
        self.finished_runs += 1
        if ttr is not None and not run.actor.startswith("scheduler:"):
            # Re-verifications are recorded but would skew the termination SLA histogram.
            self.metrics.time_to_revoke.observe(ttr / 1000)
        if status is RunStatus.INCOMPLETE:
            failed = [
                f"{s.connector}.{s.action}" for s in detail.steps if s.status == StepStatus.FAILED
            ]
            await self.alerts.send(
                Alert(
                    "run_incomplete",
                    f"{'termination' if run.kind == RunKind.OFFBOARD else run.kind} of "
                    f"{run.worker_id} is NOT verified; failed steps: "
                    f"{', '.join(failed) or 'none'}",
                    run_id=run_id,
                    worker_id=run.worker_id,
                )
            )
        log.info(
            "run %s finished: %s",
            run_id,
            status,
            extra={
                "run_id": run_id,
                "worker_id": run.worker_id,
                "kind": run.kind,
                "status": str(status),
                "time_to_revoke_ms": ttr,
            },
        )
        return status

    @staticmethod
    async def _bound_chain(
        chain: Callable[[Run, Worker, str, list[Step]], Awaitable[None]],
        run: Run,
        worker: Worker,
        name: str,
        steps: list[Step],
    ) -> None:
        """Run one system's chain with ``system`` on every log line it writes."""
        with bound(system=name):
            await chain(run, worker, name, steps)

    async def execute_owned(self, run_id: str) -> RunStatus:
        """Execute a run this replica created already leased to itself (scheduled jobs, policy
        enforcement); while it runs the heartbeat renews its lease like a claimed run's."""
        self._in_flight.add(run_id)
        try:
            return await self.execute(run_id)
        finally:
            self._in_flight.discard(run_id)

    async def chain_start(
        self, run: Run, name: str, steps: list[Step]
    ) -> tuple[Connector, list[Step]] | None:
        """What every chain does first: the steps still to run, and the connector to run them
        with; None when there is nothing to do (all settled, or the connector is gone, in which
        case the steps fail and an alert goes out)."""
        pending = [s for s in steps if not StepStatus(s.status).settled]
        if not pending:
            return None
        connector = self.connectors.get(name)
        if connector is None:
            message = f"connector {name!r} is no longer configured"
            for step in pending:
                await self._settle(step, StepStatus.FAILED, error=message)
            await self.alerts.send(Alert("connector_missing", message, run.id, run.worker_id, name))
            return None
        return connector, pending

    async def _chain(self, run: Run, worker: Worker, name: str, steps: list[Step]) -> None:
        started = await self.chain_start(run, name, steps)
        if started is None:
            return
        connector, pending = started
        async with self.limiters[name]:
            try:
                account = await self._resolve(run, worker, connector, steps)
            except _ChainAborted:
                return
            if account is None:
                for step in pending:
                    step.finished_at = self.clock()
                    await self._settle(step, StepStatus.NO_ACCOUNT)
                return
            for step in pending:
                await self._step(run, connector, account, step)

    async def _resolve(
        self, run: Run, worker: Worker, connector: Connector, steps: list[Step]
    ) -> Account | None:
        known = next((s for s in steps if s.account_id), None)
        if known is not None and known.account_id:
            return Account(
                connector.name,
                known.account_id,
                login=known.account_login,
                worker_id=worker.worker_id,
            )
        try:
            account: Account | None = await self._call(
                connector, "find_account", None, lambda: connector.find_account(worker)
            )
        except ConnectorError as exc:
            for step in steps:
                await self._settle(step, StepStatus.FAILED, error=f"find_account: {exc.message}")
            await self._escalate(run, connector.name, "find_account", exc)
            raise _ChainAborted from exc
        except Exception as exc:  # a connector bug must fail the run, not loop it forever
            log.exception("connector %s raised unexpectedly in find_account", connector.name)
            for step in steps:
                await self._settle(
                    step,
                    StepStatus.FAILED,
                    error=f"find_account: unexpected {type(exc).__name__} in connector",
                )
            await self._escalate(run, connector.name, "find_account", exc)
            raise _ChainAborted from exc
        link = self.link_of(run, connector.name)
        if account is None:
            if link is not None:
                message = (
                    f"linked account {link.account_id} was not found; it may have been "
                    "renamed or deleted outside lifecycle"
                )
                for step in steps:
                    await self._settle(step, StepStatus.FAILED, error=message)
                await self.alerts.send(
                    Alert("step_failed", message, run.id, run.worker_id, connector.name)
                )
                raise _ChainAborted
            return None
        if link is None or link.account_id != account.account_id:
            await self.link(worker, account)
        for step in steps:
            step.account_id, step.account_login = account.account_id, account.login
        return account

    async def _call(
        self, connector: Connector, action: str, step: Step | None, call: Callable[[], Any]
    ) -> Any:
        """One connector call with timeout and the retry policy; a step's attempts are
        persisted (``step`` is None for the account lookup, which belongs to no one step)."""
        account_id = step.account_id if step else None

        async def attempt() -> Any:
            if step is not None:
                # Write-ahead: the attempt is durable before the call is sent, so a call that a
                # crash leaves unconfirmed still counts when the resumed run sends it again.
                step.attempts += 1
                step.started_at = step.started_at or self.clock()
                await self._writes.submit(step)
            self.metrics.step_attempts.labels(connector.name, action).inc()
            try:
                with (
                    bound(attempt=step.attempts if step else None),
                    anyio.fail_after(self.config.step_timeout),
                ):
                    return await call()
            except TimeoutError as exc:
                raise TransientConnectorError(
                    f"{action} did not answer within {self.config.step_timeout:g} s",
                    connector=connector.name,
                    account_id=account_id,
                ) from exc
            except ConnectorError as exc:
                kind = "transient" if isinstance(exc, TransientConnectorError) else "permanent"
                self.metrics.step_errors.labels(connector.name, action, kind).inc()
                raise

        async def on_retry(number: int, exc: TransientConnectorError, wait: float) -> None:
            if step is None:
                return
            step.error = f"attempt {number}: {exc.message} (retrying in {wait:.1f} s)"
            await self._writes.submit(step)

        with bound(action=action):
            return await retry_transient(attempt, self.config.retry, on_retry=on_retry)

    async def _step(self, run: Run, connector: Connector, account: Account, step: Step) -> None:
        if CAPABILITY_OF[step.action] not in connector.capabilities:
            step.started_at = step.finished_at = self.clock()
            await self._settle(step, StepStatus.NOT_APPLICABLE)
            return
        step.started_at = self.clock()
        try:
            if step.action == "verify":
                state = await self._call(
                    connector, "verify", step, lambda: self._read_disabled(connector, account)
                )
                step.readback_json = json.dumps(readback_of(state), sort_keys=True)
                status = StepStatus.DONE
            else:
                method = getattr(connector, step.action)
                result: ActionResult = await self._call(
                    connector, step.action, step, lambda: method(account)
                )
                step.result_json = result_json(result)
                status = (
                    StepStatus.NOT_APPLICABLE
                    if result.outcome is Outcome.NOT_APPLICABLE
                    else StepStatus.DONE
                )
            step.error = None
        except ConnectorError as exc:
            step.finished_at = self.clock()
            prefix = (
                f"gave up after {step.attempts} attempts: "
                if isinstance(exc, TransientConnectorError)
                else ""
            )
            await self._settle(step, StepStatus.FAILED, error=prefix + exc.message)
            await self._escalate(run, connector.name, step.action, exc)
            return
        except LifecycleError as exc:
            step.finished_at = self.clock()
            await self._settle(step, StepStatus.FAILED, error=exc.message)
            await self._escalate(run, connector.name, step.action, exc)
            return
        except Exception as exc:  # a connector bug must not lose the run
            log.exception("connector %s raised unexpectedly in %s", connector.name, step.action)
            step.finished_at = self.clock()
            await self._settle(
                step, StepStatus.FAILED, error=f"unexpected {type(exc).__name__} in connector"
            )
            await self._escalate(run, connector.name, step.action, exc)
            return
        step.finished_at = self.clock()
        await self._settle(step, status)

    async def _read_disabled(self, connector: Connector, account: Account) -> AccountState:
        state = await connector.read_state(account)
        if state.enabled:
            raise TransientConnectorError(
                "read-back still shows the account enabled",
                connector=connector.name,
                account_id=account.account_id,
            )
        return state

    async def _settle(self, step: Step, status: StepStatus, *, error: str | None = None) -> None:
        step.status = status
        if error is not None:
            step.error = error
        await self._writes.submit(step)

    def link_of(self, run: Run, connector: str) -> AccountLink | None:
        """The worker's known account in ``connector``, as read with the run."""
        return self._links.get(run.id, {}).get(connector)

    async def link(self, worker: Worker, account: Account) -> None:
        """Remember the worker's account in ``account.system`` (batched with step writes)."""
        await self._writes.submit(
            AccountLink(
                worker_id=worker.worker_id,
                connector=account.system,
                account_id=account.account_id,
                login=account.login,
                linked_at=self.clock(),
            )
        )

    async def _escalate(self, run: Run, connector: str, action: str, exc: BaseException) -> None:
        message = (
            exc.message if isinstance(exc, LifecycleError | ConnectorError) else type(exc).__name__
        )
        kind = "permanent" if isinstance(exc, PermanentConnectorError) else "exhausted"
        with bound(action=action, error_class=type(exc).__name__):
            await self.alerts.send(
                Alert(
                    "step_failed",
                    f"{action} failed ({kind}) for {run.worker_id} in {connector}: {message}",
                    run.id,
                    run.worker_id,
                    connector,
                )
            )

    # ------------------------------------------------------------------ dry run

    async def plan_offboard(self, worker: Worker) -> list[PlannedAccount]:
        """What a termination would do, read-only: find each account and read its state."""

        async def one(name: str, connector: Connector, out: list[PlannedAccount]) -> None:
            try:
                account = await connector.find_account(worker)
                if account is None:
                    out.append(PlannedAccount(name, None, None, None, (), ()))
                    return
                state = await connector.read_state(account)
                actions = tuple(
                    a for a, cap in CAPABILITY_OF.items() if cap in connector.capabilities
                )
                out.append(
                    PlannedAccount(
                        name,
                        account.account_id,
                        account.login,
                        state.enabled,
                        tuple(sorted(state.entitlements)),
                        actions,
                    )
                )
            except ConnectorError as exc:
                out.append(PlannedAccount(name, None, None, None, (), (), error=exc.message))

        results: list[PlannedAccount] = []
        async with anyio.create_task_group() as tg:
            for name, connector in self.connectors.items():
                tg.start_soon(one, name, connector, results)
        return sorted(results, key=lambda p: p.system)


def connector_names(connectors: Mapping[str, Connector] | Sequence[str]) -> list[str]:
    return sorted(connectors)
