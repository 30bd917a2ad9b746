"""Shared helpers for the playbook, policy, roster and scheduler tests (memory connectors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from connectors.memory import MemoryConnector
from lifecycle.domain import Intake, RunDetail
from lifecycle.hr.event import HrEvent, HrEventType
from lifecycle.services import intake
from lifecycle.services.playbooks import SHIPPED, PlaybookLibrary
from lifecycle.services.sweeps import JobContext
from lifecycle.settings import PolicySettings, SchedulerSettings, Settings
from tests.unit.engine.harness import Harness, memory_systems


def library(directory: Path = SHIPPED) -> PlaybookLibrary:
    return PlaybookLibrary.load(directory, PolicySettings())


def harness(tmp_path: Path, workers: int = 9) -> Harness:
    return Harness(tmp_path, memory_systems(workers=workers))


def hr_event(
    worker: str, kind: HrEventType, job_code: str | None, event_id: str, **extra: Any
) -> HrEvent:
    return HrEvent(
        source="hr",
        event_id=event_id,
        type=kind,
        worker_id=worker,
        payload_sha256="ab" * 32,
        job_code=job_code,
        email=extra.pop("email", f"{worker.lower()}@example.org"),
        **extra,
    )


def accept(h: Harness, lib: PlaybookLibrary, event: HrEvent) -> Intake:
    return intake.accept(h.store, h.kinds, lib, sorted(h.connectors), event, h.clock())


async def accept_and_run(h: Harness, lib: PlaybookLibrary, event: HrEvent) -> RunDetail | None:
    accepted = accept(h, lib, event)
    if accepted.run_id is None:
        return None
    return await h.execute(accepted.run_id)


def account(connector: MemoryConnector, worker: str) -> Any:
    return next((a for a in connector.accounts.values() if a.worker_id == worker), None)


def records(h: Harness) -> list[dict[str, Any]]:
    return [json.loads(body) for _, body in h.store.evidence_records()]


def context(h: Harness, lib: PlaybookLibrary | None = None, **scheduler: Any) -> JobContext:
    """The scheduled jobs' context on the harness (settings default but for ``scheduler``)."""
    settings = Settings(scheduler=SchedulerSettings(**scheduler))
    return JobContext(settings, h.store, h.executor, lib or library(), h.alerts, h.evidence)
