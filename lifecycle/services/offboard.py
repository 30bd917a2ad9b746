"""Terminations an admin starts (API, CLI), and the read-only dry run of one."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import anyio

from connectors import base
from connectors.base import Connector
from lifecycle.domain import OffboardPlan, Run, RunKind
from lifecycle.engine.kinds import Kinds
from lifecycle.exceptions import ConnectorError
from lifecycle.store.ports import Store


def start_offboard(
    store: Store,
    kinds: Kinds,
    worker_id: str,
    *,
    reason: str,
    actor: str,
    systems: Sequence[str],
    now: datetime,
) -> Run:
    """An immediate termination of every configured system (blocking; call in a thread).

    Raises UnknownWorkerError for a worker the roster does not know."""
    payload = f"offboard:{worker_id}:{reason}:{actor}:{now.isoformat()}".encode()
    run = kinds.new_run(
        OffboardPlan(targets=tuple(systems)),
        worker_id=worker_id,
        actor=actor,
        source="admin",
        source_event_id=str(uuid.uuid4()),
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        reason=reason,
    )
    return store.create_run(run, now, require_worker=True)


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


async def plan_offboard(
    connectors: Mapping[str, Connector], kinds: Kinds, worker: base.Worker
) -> list[PlannedAccount]:
    """What a termination would do, read-only: find each account and read its state."""
    chain = kinds[RunKind.OFFBOARD].actions

    async def one(name: str, connector: Connector, out: list[PlannedAccount]) -> None:
        try:
            account = await connector.find_account(worker)
            if account is None:
                out.append(PlannedAccount(name, None, None, None, (), ()))
                return
            state = await connector.read_state(account)
            actions = tuple(
                a.name.value
                for a in chain
                if a.capability is None or a.capability in connector.capabilities
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
        for name, connector in connectors.items():
            tg.start_soon(one, name, connector, results)
    return sorted(results, key=lambda p: p.system)
