"""The scheduled jobs: plain async functions of (context, now), so tests drive them with any
clock and the scheduler only decides when they run.

Every change a job makes is a run executed by the engine, so it is persisted step by step,
retried, escalated and recorded in the evidence log like a termination.

Re-verification is a ``reverify`` run: it repeats the termination chain (disable, revoke
sessions, remove access, read back), which is idempotent, so an account found enabled again is
disabled again by the same code and proven by the same read-back. Its trigger (``source``
``scheduler``, ``event_id`` ``reverify:<run>:+<n>m``) names the termination it re-verifies and,
unique per source and event id, makes it happen once per offset, also across replicas. Dormant
and orphan accounts are disabled by ``disable`` runs.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.to_thread

from connectors.base import AccountState, Capability, Connector, PolicyBaseline
from lifecycle.alerts import Alert, AlertSink
from lifecycle.domain import (
    AccountRef,
    DisablePlan,
    Lease,
    Plan,
    ReverifyPlan,
    Run,
    RunDetail,
    RunKind,
    StepAction,
    VersionRef,
    Worker,
    WorkerStatus,
    plan_digest,
)
from lifecycle.engine.executor import Executor
from lifecycle.evidence.log import EvidenceLog
from lifecycle.exceptions import ConnectorError
from lifecycle.services.playbooks import PlaybookLibrary
from lifecycle.services.policy import check as check_policy
from lifecycle.services.policy import enforce, expectations
from lifecycle.settings import Settings
from lifecycle.store.ports import Store

log = logging.getLogger("lifecycle.sweeps")
SOURCE = "scheduler"


def reverify_key(of_run: str, minutes: int) -> str:
    """The trigger event id of the re-verification ``minutes`` after termination ``of_run``
    (unique per source: it happens once, also across replicas)."""
    return f"{reverify_prefix(of_run)}+{minutes}m"


def reverify_prefix(of_run: str) -> str:
    return f"reverify:{of_run}:"


@dataclass
class JobContext:
    """What every job needs, injected (no module-level state)."""

    settings: Settings
    store: Store
    executor: Executor
    playbooks: PlaybookLibrary
    alerts: AlertSink
    evidence: EvidenceLog

    @property
    def connectors(self) -> Mapping[str, Connector]:
        return self.executor.connectors

    async def db(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)


Job = Callable[[JobContext, datetime], Awaitable[Any]]


async def _create_and_execute(
    ctx: JobContext, worker_id: str, plan: Plan, *, reason: str, actor: str, key: str, now: datetime
) -> str:
    """Create the job's run (once per key, across replicas) and execute it here, now."""
    executor = ctx.executor
    new = executor.kinds.new_run(
        plan,
        worker_id=worker_id,
        actor=actor,
        source=SOURCE,
        source_event_id=key,
        payload_sha256=plan_digest(SOURCE, key, plan),
        reason=reason,
        lease_owner=executor.owner,
        lease_until=executor.clock() + executor.config.lease,
    )
    run = await ctx.db(ctx.store.create_run, new, now)
    if not run.status.finished and run.lease is not None and run.lease.owner == executor.owner:
        await executor.execute_owned(run.lease)
    return str(run.id)


@dataclass(frozen=True, slots=True)
class _Job:
    """A run a sweep asks for: once per ``key`` (the source event id), across replicas."""

    worker_id: str
    plan: Plan
    reason: str
    actor: str
    key: str


BATCH = 256
"""Runs a sweep creates per transaction, and executes at once at most (also bounded by
``max_parallel_runs``); the connectors' concurrency limits bound the calls."""


async def _create_and_execute_all(
    ctx: JobContext, jobs: Sequence[_Job], now: datetime
) -> list[str]:
    """Create the jobs' runs in batches (one transaction per batch) and execute them here,
    concurrently: a sweep of thousands of accounts takes about as long as the systems need for
    their calls at their concurrency limits, not one round trip per worker after another.
    Each batch is created just before it starts, so its leases are fresh; a run that raises is
    logged and left to the executor's loop (its lease lapses and it is resumed). Returns the
    run ids in the order of ``jobs``."""
    executor = ctx.executor
    size = max(1, min(BATCH, executor.config.max_parallel_runs))
    slots = anyio.Semaphore(size)
    run_ids: list[str] = []

    async def execute(lease: Lease, detail: RunDetail | None) -> None:
        try:
            await executor.execute_owned(lease, detail)
        except Exception:
            log.exception("sweep run %s raised; the executor resumes it", lease.run_id)
        finally:
            slots.release()

    async with anyio.create_task_group() as tg:
        for start in range(0, len(jobs), size):
            batch = jobs[start : start + size]
            until = executor.clock() + executor.config.lease
            new = [
                executor.kinds.new_run(
                    job.plan,
                    worker_id=job.worker_id,
                    actor=job.actor,
                    source=SOURCE,
                    source_event_id=job.key,
                    payload_sha256=plan_digest(SOURCE, job.key, job.plan),
                    reason=job.reason,
                    lease_owner=executor.owner,
                    lease_until=until,
                )
                for job in batch
            ]
            runs: list[Run] = await ctx.db(ctx.store.create_runs, new, now)
            run_ids += [str(run.id) for run in runs]
            mine = [
                run
                for run in runs
                if not run.status.finished
                and run.lease is not None
                and run.lease.owner == executor.owner
            ]
            loaded: list[RunDetail] = await ctx.db(ctx.store.load_runs, [r.id for r in mine])
            details = {d.run.id: d for d in loaded}
            for run in mine:
                assert run.lease is not None
                await slots.acquire()
                tg.start_soon(execute, run.lease, details.get(run.id))
    return run_ids


# ---------------------------------------------------------------------- re-verification


@dataclass(frozen=True, slots=True)
class Reverification:
    of_run: str
    worker_id: str
    after_minutes: int
    run_id: str
    status: str
    reenabled: tuple[str, ...]
    """Systems where the account was found enabled again (and was disabled again)."""


async def reverify_terminations(ctx: JobContext, now: datetime) -> list[Reverification]:
    """Re-run the termination chain for terminations that finished ``n`` minutes ago."""
    options = ctx.settings.scheduler
    done: set[str] = await ctx.db(ctx.store.source_event_ids, SOURCE, "reverify:")
    names = tuple(sorted(ctx.connectors))
    results = []
    for minutes in options.reverify_after_minutes:
        until = now - timedelta(minutes=minutes)
        since = until - timedelta(days=options.reverify_catch_up_days)
        for run in await ctx.db(ctx.store.finished_runs, RunKind.OFFBOARD, since, until):
            key = reverify_key(run.id, minutes)
            if key in done:
                continue
            worker: Worker | None = await ctx.db(ctx.store.get_worker, run.worker_id)
            if worker is not None and worker.status != WorkerStatus.TERMINATED:
                continue  # rehired (or reinstated) since: their accounts are meant to be on
            run_id = await _create_and_execute(
                ctx,
                run.worker_id,
                ReverifyPlan(targets=names, of_run=run.id, after_minutes=minutes),
                reason=f"re-verification +{minutes} min of termination run {run.id}",
                actor="scheduler:reverify",
                key=key,
                now=now,
            )
            results.append(await _reverified(ctx, run.id, run.worker_id, minutes, run_id))
    return results


async def _reverified(
    ctx: JobContext, of_run: str, worker_id: str, minutes: int, run_id: str
) -> Reverification:
    """What the re-verification found; an account found enabled again is alerted."""
    detail = await ctx.db(ctx.store.load_run, run_id)
    reenabled = tuple(
        sorted(
            s.system
            for s in detail.steps
            if s.action == StepAction.DISABLE and s.result and s.result.outcome == "done"
        )
    )
    if reenabled:
        await ctx.alerts.send(
            Alert(
                "reenabled",
                f"{worker_id} was found ENABLED again {minutes} min after termination "
                f"in {', '.join(reenabled)}; disabled again (run {run_id}: "
                f"{detail.run.status})",
                run_id=run_id,
                worker_id=worker_id,
            )
        )
    return Reverification(of_run, worker_id, minutes, run_id, detail.run.status, reenabled)


# ---------------------------------------------------------------------- account scans


@dataclass(frozen=True, slots=True)
class Scanned:
    system: str
    state: AccountState
    worker: Worker | None

    @property
    def key(self) -> str:
        """Who the account belongs to: the worker, else the system's own name for it."""
        if self.worker is not None:
            return self.worker.worker_id
        account = self.state.account
        return account.worker_id or f"{self.system}:{account.login or account.account_id}"


async def scan_accounts(
    ctx: JobContext, keep: Callable[[Scanned], bool] | None = None
) -> tuple[list[Scanned], list[str]]:
    """Every enabled account of every system that can list them, matched to the roster by
    worker id, by lifecycle's account links, then by email/login. Returns (accounts, errors).

    ``keep``: only the accounts it accepts are returned (the rest are looked at as they
    stream past and dropped): a sweep of a large workforce holds what it acts on, not every
    account of every system."""
    workers: list[Worker] = await ctx.db(ctx.store.workers)
    by_id = {w.worker_id: w for w in workers}
    by_email = {w.email.casefold(): w for w in workers if w.email}
    links: dict[tuple[str, str], str] = await ctx.db(ctx.store.links_by_account)
    found: list[Scanned] = []
    errors: list[str] = []
    ignore = ctx.settings.scheduler.sweep_ignore

    def ignored(state: AccountState) -> bool:
        names = [n.casefold() for n in (state.account.login, state.account.account_id) if n]
        return any(fnmatch.fnmatchcase(n, p.casefold()) for n in names for p in ignore)

    async def one(name: str, connector: Connector) -> None:
        try:
            async for state in connector.list_accounts():
                if not state.enabled or ignored(state):
                    continue
                account = state.account
                worker = by_id.get(account.worker_id or "") or by_id.get(
                    links.get((name, account.account_id), "")
                )
                if worker is None and account.login:
                    worker = by_email.get(account.login.casefold())
                item = Scanned(name, state, worker)
                if keep is None or keep(item):
                    found.append(item)
        except ConnectorError as exc:
            errors.append(f"{name}: {exc.message}")

    async with anyio.create_task_group() as tg:
        for name, connector in ctx.connectors.items():
            if Capability.LIST_ACCOUNTS in connector.capabilities:
                tg.start_soon(one, name, connector)
    return found, errors


def _disable_plan(
    items: list[Scanned], policy: VersionRef, why: dict[str, dict[str, str | int | bool]]
) -> DisablePlan:
    return DisablePlan(
        enforced=policy,
        targets={
            i.system: AccountRef(account_id=i.state.account.account_id, login=i.state.account.login)
            for i in items
        },
        why=why,
    )


def _version(name: str, body: Any) -> VersionRef:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return VersionRef(name=name, sha256=digest)


# ---------------------------------------------------------------------- inactivity


@dataclass(frozen=True, slots=True)
class Dormant:
    system: str
    account_id: str
    owner: str
    idle_days: int
    limit_days: int
    never_signed_in: bool
    run_id: str | None = None


def inactivity_limit(
    worker: Worker | None,
    system: str,
    base: PolicyBaseline,
    contractor_days: int,
    playbooks: PlaybookLibrary,
) -> int:
    """Days of inactivity allowed: the default, contractors' own limit, the role's playbook."""
    days = base.inactive_disable_days
    if worker is None:
        return days
    if worker.engagement == "contractor":
        days = min(days, contractor_days)
    book = playbooks.for_job_code(worker.job_code)
    if book is not None:
        days = min(days, book.baseline_for(base, system).inactive_disable_days)
    return days


async def inactivity_sweep(ctx: JobContext, now: datetime) -> list[Dormant]:
    """Disable enabled accounts idle beyond their limit, including never-used ones older than
    it. Systems that do not track sign-ins are skipped (idleness unknown, never guessed)."""
    policy = ctx.settings.policy
    base = policy.baseline()

    def idleness(item: Scanned) -> tuple[timedelta, int] | None:
        """(idle for, limit in days) of a dormant account, else None."""
        state = item.state
        if not state.sign_in_tracked and state.last_sign_in is None:
            return None
        since = state.last_sign_in or state.created_at
        if since is None:
            return None
        limit = inactivity_limit(
            item.worker, item.system, base, policy.contractor_inactive_disable_days, ctx.playbooks
        )
        idle = now - since
        return (idle, limit) if idle > timedelta(days=limit) else None

    scanned, errors = await scan_accounts(ctx, keep=lambda item: idleness(item) is not None)
    dormant: dict[str, list[tuple[Scanned, Dormant]]] = defaultdict(list)
    for item in scanned:
        state = item.state
        found = idleness(item)
        if found is not None:
            idle, limit = found
            dormant[item.key].append(
                (
                    item,
                    Dormant(
                        item.system,
                        state.account.account_id,
                        item.key,
                        idle.days,
                        limit,
                        state.last_sign_in is None,
                    ),
                )
            )
    out: list[Dormant] = []
    version = _version(
        "inactivity",
        {"base": base.inactive_disable_days, "contractor": policy.contractor_inactive_disable_days},
    )
    owners = sorted(dormant.items())
    jobs = []
    for owner, entries in owners:
        why: dict[str, dict[str, str | int | bool]] = {
            d.system: {
                "idle_days": d.idle_days,
                "limit_days": d.limit_days,
                "never_signed_in": d.never_signed_in,
            }
            for _, d in entries
        }
        jobs.append(
            _Job(
                owner,
                _disable_plan([i for i, _ in entries], version, why),
                reason="inactive beyond the limit: "
                + ", ".join(f"{d.system} {d.idle_days} d > {d.limit_days} d" for _, d in entries),
                actor="scheduler:inactivity",
                key=f"inactivity:{now.date().isoformat()}:{owner}",
            )
        )
    run_ids = await _create_and_execute_all(ctx, jobs, now)
    for (_, entries), run_id in zip(owners, run_ids, strict=True):
        out += [replace(d, run_id=run_id) for _, d in entries]
    if errors:
        await ctx.alerts.send(Alert("sweep_failed", "inactivity sweep: " + "; ".join(errors)))
    return out


# ---------------------------------------------------------------------- reconciliation


@dataclass(frozen=True, slots=True)
class Orphan:
    system: str
    account_id: str
    login: str | None
    owner: str
    reason: str
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    checked_at: datetime
    orphans: list[Orphan]
    errors: list[str] = field(default_factory=list)
    disabled: bool = False


async def reconcile(
    ctx: JobContext, now: datetime, *, disable: bool | None = None
) -> ReconcileReport:
    """Enabled accounts that belong to no active worker are orphans: reported (alert), and
    disabled when ``[scheduler] disable_orphans`` (or ``disable``) says so."""
    disable = ctx.settings.scheduler.disable_orphans if disable is None else disable
    scanned, errors = await scan_accounts(
        ctx, keep=lambda item: item.worker is None or item.worker.status != WorkerStatus.ACTIVE
    )
    orphans: dict[str, list[tuple[Scanned, Orphan]]] = defaultdict(list)
    for item in scanned:
        reason = (
            "no worker in the roster" if item.worker is None else f"worker is {item.worker.status}"
        )
        account = item.state.account
        orphans[item.key].append(
            (item, Orphan(item.system, account.account_id, account.login, item.key, reason))
        )
    found: list[Orphan] = []
    owners = sorted(orphans.items())
    run_ids: list[str | None] = [None] * len(owners)
    if disable:
        version = _version("reconcile", {"disable_orphans": True})
        jobs = [
            _Job(
                owner,
                _disable_plan(
                    [i for i, _ in entries],
                    version,
                    {o.system: {"orphan": o.reason} for _, o in entries},
                ),
                reason="orphan account(s): "
                + "; ".join(f"{o.system}: {o.reason}" for _, o in entries),
                actor="scheduler:reconcile",
                key=f"reconcile:{now.date().isoformat()}:{owner}",
            )
            for owner, entries in owners
        ]
        run_ids = list(await _create_and_execute_all(ctx, jobs, now))
    for (_, entries), run_id in zip(owners, run_ids, strict=True):
        found += [
            Orphan(o.system, o.account_id, o.login, o.owner, o.reason, run_id) for _, o in entries
        ]
    if found:
        await ctx.alerts.send(
            Alert(
                "orphans",
                f"{len(found)} enabled account(s) belong to no active worker"
                + (" and were disabled" if disable else "")
                + ": "
                + ", ".join(f"{o.system}/{o.login or o.account_id}" for o in found[:20]),
            )
        )
    if errors:
        await ctx.alerts.send(Alert("sweep_failed", "reconciliation: " + "; ".join(errors)))
    return ReconcileReport(now, found, errors, disable)


# ---------------------------------------------------------------------- policy, checkpoints


async def policy_job(ctx: JobContext, now: datetime) -> Any:
    """Hourly: check every system; alert on findings; remediate when configured."""
    expected = expectations(ctx.settings.policy, ctx.playbooks, sorted(ctx.connectors))
    if ctx.settings.scheduler.enforce_policy:
        report = await enforce(ctx.executor, ctx.store, expected, actor="scheduler:policy")
    else:
        report = await check_policy(ctx.connectors, expected, now)
    if report.failing:
        await ctx.alerts.send(
            Alert(
                "policy",
                f"{len(report.failing)} policy finding(s): "
                + ", ".join(
                    f"{f.system}.{f.control}={f.actual} (expected {f.expected})"
                    for f in report.failing[:20]
                ),
            )
        )
    return report


async def checkpoint_job(ctx: JobContext, now: datetime) -> Any:
    """Sign a checkpoint if the log grew (the signer also does after each append batch)."""
    del now
    return await ctx.evidence.sign()
