"""The composition root: the service's object graph, built once from Settings and handed to the
web app, the CLI and tests. The only module that builds the SQL store and concrete connectors."""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import httpx

from connectors import build_connector
from connectors.base import Connector, ConnectorContext, utcnow
from lifecycle.alerts import AlertSink
from lifecycle.domain import Worker
from lifecycle.engine.executor import Executor, ExecutorConfig
from lifecycle.engine.kinds import Kinds, default_kinds
from lifecycle.evidence.checkpoint import SigningKey, init_key, load_signing_key
from lifecycle.evidence.log import EvidenceLog
from lifecycle.exceptions import (
    ConfigError,
    ConnectorConfigError,
    DatabaseNotReadyError,
    EvidenceError,
)
from lifecycle.metrics import Metrics
from lifecycle.scheduler import Scheduler
from lifecycle.services.access import AccessContext
from lifecycle.services.intake import HrIntake
from lifecycle.services.playbooks import PlaybookLibrary, shipped_playbooks
from lifecycle.services.sweeps import JobContext
from lifecycle.settings import Settings
from lifecycle.store.migrations.upgrade import head as schema_head
from lifecycle.store.sql import SqlStore

log = logging.getLogger("lifecycle.service")


def demo_workers(settings: Settings, now: datetime) -> list[Worker]:
    domain = settings.demo.domain
    return [
        Worker(
            worker_id=f"W{n:04d}",
            name=f"Demo Worker {n:04d}",
            email=f"w{n:04d}@{domain}",
            job_code=("VA-SCHED", "VA-BILL", "VA-CALLBACK", "VA-INTAKE")[n % 4],
            engagement="contractor" if n % 3 else "employee",
            vendor="Acme Staffing" if n % 3 else None,
            updated_at=now,
        )
        for n in range(1, settings.demo.workers + 1)
    ]


def load_key(settings: Settings) -> SigningKey | None:
    """The evidence signing key; created on first start in demo mode only."""
    path = settings.service.evidence_key
    name = settings.service.log_origin
    if not path.exists() and settings.service.demo:
        init_key(path, name)
        log.warning("demo mode: created evidence key %s", path)
    try:
        return load_signing_key(path, name)
    except EvidenceError as exc:
        log.error("evidence key not loaded: %s", exc.message)
        return None


def load_playbooks(settings: Settings, base_dir: Path | None = None) -> PlaybookLibrary:
    """``[playbooks] directory`` (relative: to the configuration file's folder), else the
    shipped ones (the repository's ``playbooks/``, or the copy inside an installed wheel)."""
    directory = settings.playbooks.directory
    if directory is None:
        shipped = shipped_playbooks()
        return PlaybookLibrary.load(shipped, settings.policy) if shipped else PlaybookLibrary()
    if not directory.is_absolute():
        directory = (base_dir or settings.base_dir) / directory
    return PlaybookLibrary.load(directory, settings.policy)


GC_THRESHOLDS = (20_000, 50, 100)
"""Young collections every 20,000 net allocations instead of 700, older ones far more rarely:
a termination allocates tens of thousands of short-lived objects (rows, values, records), and
with the defaults the collector ran several times per termination and a full pass every few
hundred runs; cycles are still collected, just in larger, rarer passes."""


def settle_heap() -> None:
    """Move what start-up made (modules, table metadata, schemas, the migration machinery) out
    of the garbage collector's full passes: they live as long as the process, and scanning them
    again and again shows as pauses of tens of milliseconds in the middle of a termination.
    Then space the collector's passes out (``GC_THRESHOLDS``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def build_connectors(settings: Settings, base_dir: Path) -> dict[str, Connector]:
    """Every ``[connectors.*]`` table as its connector; a bad table is a ConfigError."""
    context = ConnectorContext(allow_inline_secrets=settings.service.demo, base_dir=base_dir)
    try:
        return {
            name: build_connector(name, options, context)
            for name, options in sorted(settings.connectors.items())
        }
    except ConnectorConfigError as exc:
        raise ConfigError(exc.message) from exc


def executor_config(settings: Settings) -> ExecutorConfig:
    concurrency = {
        name: int(options["max_concurrency"])
        for name, options in settings.connectors.items()
        if "max_concurrency" in options
    }
    return ExecutorConfig(
        retry=settings.retry.policy(),
        step_timeout=settings.service.step_timeout_seconds,
        sla_seconds=settings.service.termination_sla_seconds,
        horizon_seconds=settings.retry.horizon_seconds,
        lease=timedelta(seconds=settings.service.lease_seconds),
        poll_seconds=settings.service.poll_seconds,
        max_parallel_runs=settings.service.max_parallel_runs,
        connector_concurrency=concurrency,
        default_concurrency=settings.service.connector_concurrency,
    )


def open_store(settings: Settings, kinds: Kinds | None = None, *, create: bool = False) -> SqlStore:
    """The database of ``settings``. With ``create`` (``serve``, ``db upgrade``) it is created
    or its schema brought up to date; otherwise it must exist at the newest schema revision,
    else DatabaseNotReadyError (never an empty database made by mistake somewhere else)."""
    sqlite = settings.sqlite_path()
    if not create and sqlite is not None and not sqlite.is_file():
        raise DatabaseNotReadyError(
            f"there is no database at {sqlite}: run `lifecycle db upgrade` (or start "
            "`lifecycle serve`) with this configuration first"
            + (f" ({settings.source})" if settings.source else "")
        )
    store = SqlStore(settings.service.database_url, plans=(kinds or default_kinds()).plans)
    if create:
        store.create_schema()
        return store
    try:
        revision = store.schema_revision()
    except Exception:
        store.dispose()
        raise
    if revision != schema_head():
        store.dispose()
        raise DatabaseNotReadyError(
            f"the database is at schema revision {revision or 'none'}, not "
            f"{schema_head()}: run `lifecycle db upgrade` first"
        )
    return store


@dataclass
class Service:
    settings: Settings
    store: SqlStore
    connectors: dict[str, Connector]
    evidence: EvidenceLog
    executor: Executor
    alerts: AlertSink
    metrics: Metrics
    key: SigningKey | None
    clock: Callable[[], datetime] = field(default=utcnow)
    playbooks: PlaybookLibrary = field(default_factory=PlaybookLibrary)
    scheduler: Scheduler | None = None
    kinds: Kinds = field(default_factory=default_kinds)
    intake: HrIntake | None = None
    """HR deliveries to inbox rows, and the retry of those awaiting a vendor look-up."""

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        base_dir: Path | None = None,
    ) -> Service:
        if not settings.connectors:
            raise ConfigError(
                "no [connectors.*] are configured: a termination would reach no system "
                "(use --config, or LIFECYCLE_CONFIG; config/demo.toml is the demo)"
            )
        kinds = default_kinds()
        store = open_store(settings, kinds, create=True)
        if settings.demo.workers:
            store.seed_workers(demo_workers(settings, clock()))
        connectors = build_connectors(settings, base_dir or settings.base_dir)
        key = load_key(settings)
        metrics = Metrics()
        metrics.watch_runs(store.run_counts)
        metrics.watch_inbox(store.inbox_counts)
        alerts = AlertSink(settings.alerts.webhook_url, timeout=settings.alerts.timeout_seconds)
        evidence = EvidenceLog(
            store,
            key,
            settings.service.log_origin,
            sla_seconds=settings.service.termination_sla_seconds,
            clock=clock,
        )
        executor = Executor(
            queue=store,
            connectors=connectors,
            evidence=evidence,
            alerts=alerts,
            metrics=metrics,
            config=executor_config(settings),
            clock=clock,
            owner=settings.service.instance_id,
            kinds=kinds,
            db_threads=1 if store.is_sqlite else 16,
        )
        service = cls(
            settings,
            store,
            connectors,
            evidence,
            executor,
            alerts,
            metrics,
            key,
            clock,
            kinds=kinds,
        )
        service.playbooks = load_playbooks(settings, base_dir)
        for book in service.playbooks.playbooks.values():
            missing = sorted(set(book.playbook.systems) - set(connectors))
            if missing:
                log.warning(
                    "playbook %s names unconfigured system(s) %s: it cannot be applied",
                    book.name,
                    ", ".join(missing),
                )
        service.scheduler = Scheduler(service.jobs, settings.scheduler, clock=clock)
        service.intake = HrIntake(
            settings=settings,
            store=store,
            alerts=alerts,
            http=httpx.AsyncClient(follow_redirects=False),
            connectors=service.connector_names,
            playbooks=service.playbooks,
            wake=executor.wake,
            clock=clock,
            kinds=kinds,
        )
        return service

    @property
    def jobs(self) -> JobContext:
        """What scheduled jobs (and their API/CLI triggers) are given."""
        return JobContext(
            self.settings, self.store, self.executor, self.playbooks, self.alerts, self.evidence
        )

    @property
    def access(self) -> AccessContext:
        """What the suspend/restore/approval/cancel/retry use cases are given."""
        return AccessContext(
            self.store,
            self.kinds,
            self.playbooks,
            tuple(self.connector_names),
            restore_requires_approval=self.settings.service.restore_requires_approval,
            reverify_after_minutes=tuple(self.settings.scheduler.reverify_after_minutes),
        )

    @property
    def connector_names(self) -> list[str]:
        return sorted(self.connectors)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The background work of a replica: the executor and the checkpoint signer."""
        async with AsyncExitStack() as stack:
            for connector in self.connectors.values():
                await stack.enter_async_context(connector)
            settle_heap()
            async with anyio.create_task_group() as tg:
                await tg.start(self.executor.run_forever)
                tg.start_soon(self.evidence.run_signer)
                if self.intake is not None:
                    await tg.start(self.intake.run_forever)
                if self.scheduler is not None and self.settings.scheduler.enabled:
                    await tg.start(self.scheduler.run)
                task_status.started()

    async def aclose(self) -> None:
        for connector in self.connectors.values():
            await connector.aclose()
        if self.intake is not None:
            self.intake.close()
            await self.intake.http.aclose()
        self.store.dispose()
