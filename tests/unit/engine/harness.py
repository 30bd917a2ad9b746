"""An in-process executor on an in-memory SQLite store, memory connectors and a settable clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.base import utcnow
from connectors.memory import Fault, MemoryConnector
from lifecycle.alerts import AlertSink
from lifecycle.domain import Lease, RunDetail, Worker
from lifecycle.engine.executor import Executor, ExecutorConfig
from lifecycle.engine.kinds import Kinds, default_kinds
from lifecycle.evidence.checkpoint import init_key, load_signing_key
from lifecycle.evidence.log import EvidenceLog
from lifecycle.metrics import Metrics
from lifecycle.retry import RetryPolicy
from lifecycle.services.offboard import start_offboard
from lifecycle.store.sql import SqlStore

ORIGIN = "test.lifecycle.local/evidence"


class Clock:
    """Real time, optionally shifted forward by a test."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        connectors: dict[str, MemoryConnector],
        *,
        workers: int = 10,
        attempts: int = 3,
        step_timeout: float = 1.0,
        poll_seconds: float = 0.05,
        horizon_seconds: float = 0,
        initial_seconds: float = 0.01,
        max_seconds: float = 0.05,
        kinds: Kinds | None = None,
        url: str = "sqlite://",
        owner: str = "test",
    ) -> None:
        self.clock = Clock()
        self.kinds = kinds or default_kinds()
        self.store = SqlStore(url, plans=self.kinds.plans)
        self.store.create_schema()
        self.store.seed_workers(
            [
                Worker(
                    worker_id=f"W{n:04d}",
                    email=f"w{n:04d}@example.org",
                    engagement="contractor",
                    vendor="Acme",
                    updated_at=self.clock(),
                )
                for n in range(1, workers + 1)
            ]
        )
        self.connectors = connectors
        self.verifier = init_key(tmp_path / "key", ORIGIN)
        self.alerts = AlertSink()
        self.metrics = Metrics()
        self.evidence = EvidenceLog(
            self.store,
            load_signing_key(tmp_path / "key", ORIGIN),
            ORIGIN,
            sla_seconds=3600,
            clock=self.clock,
        )
        self.executor = Executor(
            queue=self.store,
            connectors=connectors,
            evidence=self.evidence,
            alerts=self.alerts,
            metrics=self.metrics,
            clock=self.clock,
            config=ExecutorConfig(
                retry=RetryPolicy(
                    attempts=attempts, initial_seconds=initial_seconds, max_seconds=max_seconds
                ),
                step_timeout=step_timeout,
                poll_seconds=poll_seconds,
                horizon_seconds=horizon_seconds,
            ),
            owner=owner,
            kinds=self.kinds,
            db_threads=1 if self.store.is_sqlite else 16,
        )

    def offboard(self, worker_id: str) -> str:
        run = start_offboard(
            self.store,
            self.kinds,
            worker_id,
            reason="test",
            actor="admin:test",
            systems=sorted(self.connectors),
            now=self.clock(),
        )
        return run.id

    def claim(self, run_id: str, owner: str = "test") -> Lease:
        claimed = self.store.claim_runs(owner, self.clock(), timedelta(seconds=30), 100)
        [lease] = [c for c in claimed if c.run_id == run_id]
        return lease

    async def execute(self, run_id: str) -> RunDetail:
        """Claim the run and execute it to its end (or its durable wait)."""
        await self.executor.execute(self.claim(run_id))
        return self.store.load_run(run_id)

    async def terminate(self, worker_id: str) -> RunDetail:
        return await self.execute(self.offboard(worker_id))


def memory_systems(
    latency_ms: float = 0,
    workers: int = 9,
    faults: dict[str, list[Fault]] | None = None,
    **extra: Callable[[], None],
) -> dict[str, MemoryConnector]:
    """idp, ehr and phone, each with W0001..W<workers> enabled and in two groups."""
    systems = {}
    for name in ("idp", "ehr", "phone"):
        connector = MemoryConnector(
            name,
            latency_ms=latency_ms,
            faults=(faults or {}).get(name, []),
            has_sessions=name != "phone",
        )
        connector.seed(workers, [f"{name}-a", f"{name}-b", f"{name}-c"])
        systems[name] = connector
    return systems


def at(value: datetime) -> datetime:
    return value.astimezone(UTC)
