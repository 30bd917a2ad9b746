"""Fenced leases with two executors on one PostgreSQL: the first pauses past its lease, the
second takes the run over and finishes it, and nothing the first writes afterwards lands."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from connectors.base import Account, ActionResult
from connectors.memory import MemoryConnector
from lifecycle.exceptions import LeaseLostError
from tests.servers import drop_schema
from tests.unit.engine.harness import Harness, memory_systems

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class Paused(MemoryConnector):
    """The same system as ``inner`` (shared state), seen by a replica that stalls in disable
    until ``resume`` is set: a long GC pause, a frozen VM, a partitioned network."""

    def __init__(self, inner: MemoryConnector) -> None:
        self.__dict__ = inner.__dict__
        self.paused = anyio.Event()
        self.resume = anyio.Event()

    async def disable(self, account: Account) -> ActionResult:
        self.paused.set()
        await self.resume.wait()
        return await super().disable(account)


async def test_a_replica_paused_past_its_lease_cannot_write_progress_or_finish(
    tmp_path: Path, postgres_url: str
) -> None:
    drop_schema(postgres_url)
    systems = memory_systems()
    paused = {name: Paused(c) for name, c in systems.items()}
    # Two replicas: their own store connections and executors, one database, the same systems.
    first = Harness(tmp_path / "a", dict(paused), url=postgres_url, owner="replica-a")
    second = Harness(tmp_path / "b", systems, url=postgres_url, owner="replica-b")
    second.clock = first.clock
    second.executor.clock = first.clock
    run_id = first.offboard("W0001")
    stale = first.claim(run_id, owner="replica-a")
    outcome: dict[str, BaseException | None] = {}

    async def run_first() -> None:
        try:
            await first.executor.execute(stale)
            outcome["first"] = None
        except LeaseLostError as exc:
            outcome["first"] = exc

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run_first)
            await paused["idp"].paused.wait()  # replica a is mid-chain, its lease running out
            first.clock.offset = timedelta(seconds=31)
            taken = second.claim(run_id, owner="replica-b")
            assert taken.epoch > stale.epoch
            await second.executor.execute(taken)
            finished = second.store.load_run(run_id)
            for connector in paused.values():
                connector.resume.set()  # replica a wakes up and carries on
    assert isinstance(outcome["first"], LeaseLostError)
    detail = second.store.load_run(run_id)
    assert detail.run.status == "verified"
    records = [json.loads(body) for _, body in second.store.evidence_records()]
    assert [r["run_id"] for r in records] == [run_id]  # recorded once, by replica b
    assert records[0]["seq"] == detail.run.evidence_seq
    assert detail == finished  # replica a's late results never overwrote replica b's
    # a's disables were sent (written ahead) before it paused: b's resumed attempt is the 2nd
    assert {(s.action, s.attempts) for s in detail.steps if s.action == "disable"} == {
        ("disable", 2)
    }
    for store in (first.store, second.store):
        store.dispose()
