"""The benchmark's instruments: the real service's pieces wired in-process, timed store and
engine, reference chains called directly on the connectors, statistics."""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from sqlalchemy import create_engine, make_url, text
from sqlmodel import Session, select

from connectors.base import Worker, utcnow
from connectors.memory import MemoryConnector
from lifecycle.alerts import AlertSink
from lifecycle.domain import Lease, PlanCodec, Run, RunDetail, RunStatus
from lifecycle.domain import Worker as RosterWorker
from lifecycle.engine.executor import Executor, ExecutorConfig
from lifecycle.engine.kinds import TERMINATION, default_kinds
from lifecycle.evidence.checkpoint import init_key, load_signing_key
from lifecycle.evidence.log import EvidenceLog
from lifecycle.metrics import Metrics
from lifecycle.retry import RetryPolicy
from lifecycle.service import settle_heap
from lifecycle.services.offboard import start_offboard
from lifecycle.store.sql import SqlStore
from lifecycle.store.sql.tables import RunRow, StepRow

TERMINATION_ACTIONS = tuple(a.name.value for a in TERMINATION)
#: Calls in one connector's termination chain: find_account + the four actions (the last is
#: the read-back that verifies).
CHAIN_CALLS = 1 + len(TERMINATION_ACTIONS)
TARGET_RATIO = 1.25
ORIGIN = "bench.lifecycle.local/evidence"
SYSTEM_NAMES = ("idp", "ehr", "phone")


# ---------------------------------------------------------------------------- statistics


@dataclass(frozen=True, slots=True)
class Stats:
    """Milliseconds. Percentiles are nearest-rank: with 30 samples p99 is the maximum."""

    n: int
    p50: float
    p99: float
    mean: float
    max: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        ordered = sorted(samples)

        def rank(p: float) -> float:
            return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]

        return cls(len(ordered), rank(50), rank(99), sum(ordered) / len(ordered), ordered[-1])


def ms(seconds: float) -> float:
    return seconds * 1000.0


# ---------------------------------------------------------------------------- instrumented rig


class TimedStore(SqlStore):
    """The real store, counting transactions and how long each one holds the database.

    On SQLite every transaction holds the process-wide writer lock, so the summed hold time is
    the database's busy time: when it approaches the wall time, the database is the bottleneck.
    """

    def __init__(self, url: str, *, plans: PlanCodec | None = None) -> None:
        super().__init__(url, plans=plans)
        self._stats_lock = threading.Lock()
        self.transactions = 0
        self.held_seconds = 0.0
        self.waited_seconds = 0.0

    @contextmanager
    def session(self) -> Iterator[Session]:
        asked = time.perf_counter()
        entered = asked
        try:
            with super().session() as s:
                entered = time.perf_counter()
                yield s
        finally:
            left = time.perf_counter()
            with self._stats_lock:
                self.transactions += 1
                self.held_seconds += left - entered
                self.waited_seconds += entered - asked

    def reset_stats(self) -> None:
        with self._stats_lock:
            self.transactions, self.held_seconds, self.waited_seconds = 0, 0.0, 0.0


class BenchExecutor(Executor):
    """The real executor; records when each run's ``execute`` returned (our own wall clock)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.done_at: dict[str, float] = {}
        self._done: dict[str, anyio.Event] = {}
        self.expect = 0
        self.all_done = anyio.Event()

    async def execute(self, lease: Lease, detail: RunDetail | None = None) -> RunStatus:
        status = await super().execute(lease, detail)
        run_id = lease.run_id
        self.done_at[run_id] = time.perf_counter()
        self._done.setdefault(run_id, anyio.Event()).set()
        if len(self.done_at) >= self.expect:
            self.all_done.set()
        return status

    async def wait_for(self, run_id: str) -> float:
        await self._done.setdefault(run_id, anyio.Event()).wait()
        return self.done_at[run_id]


@dataclass
class Rig:
    store: TimedStore
    engine: BenchExecutor
    evidence: EvidenceLog
    connectors: dict[str, MemoryConnector]
    tg: anyio.abc.TaskGroup

    async def start(self) -> None:
        """Start the executor loop; its first claim takes every due run (up to
        max_parallel_runs), exactly as ``engine.wake()`` does for a sleeping loop."""
        await self.tg.start(self.engine.run_forever)

    @property
    def names(self) -> list[str]:
        return sorted(self.connectors)

    def terminate(self, worker_id: str) -> Run:
        """Store an immediate termination, received now (the admin intake path)."""
        return start_offboard(
            self.store,
            self.engine.kinds,
            worker_id,
            reason="bench",
            actor="bench",
            systems=self.names,
            now=utcnow(),
        )


@contextmanager
def database(url: str | None, tmp: Path) -> Iterator[str]:
    """A fresh database: a SQLite file in ``tmp``, or a new PostgreSQL database dropped after."""
    if url is None:
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    name = f"lifecycle_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@asynccontextmanager
async def running_rig(
    url: str,
    tmp: Path,
    latencies: dict[str, float],
    workers: Sequence[str],
    *,
    concurrency: int,
    max_parallel_runs: int,
    extra_accounts: Sequence[str] = (),
) -> AsyncIterator[Rig]:
    """Build the service's pieces the way ``Service.build`` does and run the checkpoint signer
    in the background; ``Rig.start()`` starts the executor. Torn down (tasks cancelled, store
    disposed) on exit."""
    now = utcnow()
    kinds = default_kinds()
    store = TimedStore(url, plans=kinds.plans)
    store.create_schema()
    store.seed_workers(
        [
            RosterWorker(
                worker_id=w, name=f"Bench {w}", email=f"{w.lower()}@bench.example", updated_at=now
            )
            for w in workers
        ]
    )
    connectors: dict[str, MemoryConnector] = {}
    for name, latency in latencies.items():
        conn = MemoryConnector(name, latency_ms=latency, domain="bench.example")
        for w in [*workers, *extra_accounts]:
            conn.add_account(w, groups={"all-staff", f"{name}-users"})
        connectors[name] = conn
    key_path = tmp / f"evidence-{uuid.uuid4().hex[:8]}.ed25519"
    init_key(key_path, ORIGIN)
    clock = utcnow
    evidence = EvidenceLog(
        store, load_signing_key(key_path, ORIGIN), ORIGIN, sla_seconds=3600, clock=clock
    )
    engine = BenchExecutor(
        queue=store,
        connectors=connectors,
        evidence=evidence,
        alerts=AlertSink(None),
        metrics=Metrics(),
        config=ExecutorConfig(
            retry=RetryPolicy(),
            step_timeout=30.0,
            lease=timedelta(seconds=120),
            # Work arrives through wake() only: no poll can start a burst half-stored.
            poll_seconds=3600.0,
            max_parallel_runs=max_parallel_runs,
            connector_concurrency=dict.fromkeys(connectors, concurrency),
            default_concurrency=concurrency,
        ),
        clock=clock,
        owner="bench",
        kinds=kinds,
        db_threads=1 if store.is_sqlite else 16,
    )
    try:
        async with AsyncExitStack() as stack:
            for conn in connectors.values():
                await stack.enter_async_context(conn)
            settle_heap()  # as Service.run does
            async with anyio.create_task_group() as tg:
                tg.start_soon(evidence.run_signer)
                yield Rig(store, engine, evidence, connectors, tg)
                tg.cancel_scope.cancel()
    finally:
        store.dispose()


# ---------------------------------------------------------------------------- references


async def connector_chain(conn: MemoryConnector, worker: Worker) -> None:
    """One connector's own termination chain, called directly (no engine, no database)."""
    account = await conn.find_account(worker)
    if account is None:
        raise RuntimeError(f"{conn.name}: no account for {worker.worker_id}")
    await conn.disable(account)
    await conn.revoke_sessions(account)
    await conn.remove_access(account)
    state = await conn.read_state(account)
    if state.enabled:
        raise RuntimeError(f"{conn.name}: {worker.worker_id} still enabled after disable")


def bench_worker(worker_id: str) -> Worker:
    return Worker(worker_id=worker_id, email=f"{worker_id.lower()}@bench.example")


def db_summary(store: TimedStore, runs: int, wall: float | None = None) -> dict[str, float]:
    out = {
        "transactions_per_run": round(store.transactions / max(runs, 1), 1),
        "ms_per_transaction": round(ms(store.held_seconds) / max(store.transactions, 1), 2),
        "held_s": round(store.held_seconds, 2),
        "waited_s": round(store.waited_seconds, 2),
    }
    if wall and store.is_sqlite:
        # One writer at a time on SQLite, so this is the database's busy share. On PostgreSQL
        # transactions overlap (and evidence appends wait for their advisory lock inside one).
        out["held_share_of_wall"] = round(store.held_seconds / wall, 2)
    return out


BREAKDOWN = {
    "intake_claim": "HR receipt -> run claimed (intake transaction, wake, claim)",
    "load_find_link": "claimed -> first action (load run, connector slot, find, link; excl. L)",
    "between_steps": "between actions (persist the settled step, next start)",
    "call_overhead": "inside the four action calls, beyond L",
}


def gap_ms(a: datetime | None, b: datetime | None) -> float:
    if a is None or b is None:
        raise RuntimeError("a verified run has a step without its timestamps")
    return ms((b - a).total_seconds())


def breakdown(
    store: SqlStore, run_ids: Sequence[str], latency_ms: dict[str, float]
) -> dict[str, Stats]:
    """Where a run's time above ``5 x L`` goes, on its slowest chain, from the stamps the engine
    stores (step started_at/finished_at, run received/started): the four parts sum to
    ``time to verified - 5 x L``."""
    wanted = set(run_ids)
    with store.session() as s:
        runs = [r for r in s.exec(select(RunRow)).all() if r.id in wanted]
        chains: dict[str, dict[str, dict[str, StepRow]]] = defaultdict(lambda: defaultdict(dict))
        for step in s.exec(select(StepRow)).all():
            if step.run_id in wanted:
                chains[step.run_id][step.connector][step.action] = step
    parts: dict[str, list[float]] = {k: [] for k in BREAKDOWN}
    for run in runs:
        name, chain = max(
            chains[run.id].items(),
            key=lambda item: item[1]["verify"].finished_at or run.received_at,
        )
        lat = latency_ms[name]
        ordered = [chain[a] for a in TERMINATION_ACTIONS]
        parts["intake_claim"].append(gap_ms(run.received_at, run.started_at))
        parts["load_find_link"].append(gap_ms(run.started_at, ordered[0].started_at) - lat)
        parts["between_steps"].append(
            sum(gap_ms(x.finished_at, y.started_at) for x, y in itertools.pairwise(ordered))
        )
        parts["call_overhead"].append(
            sum(gap_ms(x.started_at, x.finished_at) - lat for x in ordered)
        )
    return {k: Stats.of(v) for k, v in parts.items() if v}


async def concurrent_chains(
    connectors: Sequence[MemoryConnector], workers: Sequence[str], concurrency: int
) -> Stats:
    """The connectors' own chains (one after another per worker), ``concurrency`` workers in
    flight; completion time of each worker from the start, ms."""
    limiter = anyio.CapacityLimiter(concurrency)
    done: list[float] = []
    started = time.perf_counter()

    async def one(worker_id: str) -> None:
        async with limiter:
            for conn in connectors:
                await connector_chain(conn, bench_worker(worker_id))
        done.append(ms(time.perf_counter() - started))

    async with anyio.create_task_group() as tg:
        for w in workers:
            tg.start_soon(one, w)
    return Stats.of(done)
