"""Group commit of HR intake: concurrent deliveries share one transaction, each is answered
only once its rows are committed, a failing delivery fails alone, a failed commit fails every
delivery in it, and re-deliveries and conflicts inside one batch behave as they do apart."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from lifecycle.alerts import AlertSink
from lifecycle.domain import Worker
from lifecycle.exceptions import ConflictingDeliveryError, StoreError, UnknownWorkerError
from lifecycle.services.group_commit import GroupCommit
from lifecycle.services.intake import HrIntake, Reply
from lifecycle.settings import HrSettings, HrSourceSettings, ServiceSettings, Settings
from lifecycle.store.sql import SqlStore
from tests.unit.hr.vendors import dumps, standard_headers

pytestmark = pytest.mark.anyio

SECRET = "whsec_c2VjcmV0LWZvci10ZXN0cy1vbmx5"


@pytest.fixture
async def intake(tmp_path: Path) -> AsyncIterator[HrIntake]:
    store = SqlStore(f"sqlite:///{tmp_path / 'intake.db'}")
    store.create_schema()
    now = datetime.now(UTC)
    store.seed_workers(
        [
            Worker(worker_id=f"W{n:04d}", email=f"w{n:04d}@example.org", updated_at=now)
            for n in range(1, 40)
        ]
    )
    settings = Settings(
        service=ServiceSettings(demo=True),
        hr=HrSettings(
            sources={"demo": HrSourceSettings(kind="standardwebhooks", secret=SecretStr(SECRET))}
        ),
    )
    async with httpx.AsyncClient() as http:
        intake = HrIntake(
            settings=settings,
            store=store,
            alerts=AlertSink(),
            http=http,
            connectors=["idp"],
            playbooks=None,
            wake=lambda _due: None,
        )
        yield intake
        intake.close()
    store.dispose()


def delivery(worker: str, msg_id: str) -> tuple[bytes, dict[str, str]]:
    now = datetime.now(UTC)
    body = dumps(
        {"type": "worker.terminated", "timestamp": now.isoformat(), "data": {"worker_id": worker}}
    )
    return body, standard_headers(body, SECRET, msg_id, now)


def db_path(intake: HrIntake) -> Path:
    store = intake.store
    assert isinstance(store, SqlStore)
    return Path(store.url.removeprefix("sqlite:///"))


def committed(path: Path, msg_id: str) -> list[tuple[str, str | None, str | None]]:
    """The inbox rows of ``msg_id`` as another connection sees them: only committed rows."""
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT worker_id, outcome, run_id FROM inbox WHERE source_event_id = ?", (msg_id,)
        ).fetchall()


async def held_writer(intake: HrIntake) -> tuple[threading.Event, asyncio.Task[Any]]:
    """Occupy the writer thread until the returned event is set, so that what is sent
    meanwhile queues up and is written as one batch."""
    started, gate = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        gate.wait(10)

    task = asyncio.ensure_future(intake.writer.run(block))
    while not started.is_set():
        await asyncio.sleep(0.001)
    return gate, task


async def in_one_batch(
    intake: HrIntake,
    sends: Sequence[tuple[bytes, dict[str, str]]],
    check: Callable[[int], None],
    *,
    later: int = 0,
) -> list[Reply | BaseException]:
    """Send ``sends`` while the writer is held, then release it: they form one batch.
    ``check(i)`` runs as soon as the i-th answer arrives (before anything else is awaited).
    ``later``: batches the deliveries add after theirs (an unmapped one records its row
    after it was found not to be in the roster)."""
    gate, blocker = await held_writer(intake)
    batches = intake.writer.batches

    async def one(i: int, body: bytes, headers: dict[str, str]) -> Reply:
        reply = await intake.receive("demo", body, headers)
        check(i)
        return reply

    tasks = [asyncio.ensure_future(one(i, *s)) for i, s in enumerate(sends)]
    while intake.writer.queued() < len(sends):
        await asyncio.sleep(0.001)
    gate.set()
    await blocker
    results = await asyncio.gather(*tasks, return_exceptions=True)
    # The blocker's, then all of ``sends``.
    assert intake.writer.batches == batches + 2 + later
    return results


async def test_concurrent_deliveries_share_a_transaction_and_each_is_durable_before_its_answer(
    intake: HrIntake,
) -> None:
    sends = [delivery(f"W{n:04d}", f"gc_{n}") for n in range(1, 21)]
    path = db_path(intake)
    seen: dict[int, list[tuple[str, str | None, str | None]]] = {}
    results = await in_one_batch(
        intake, sends, lambda i: seen.__setitem__(i, committed(path, f"gc_{i + 1}"))
    )
    for i, reply in enumerate(results):
        assert isinstance(reply, Reply), reply
        assert reply.status_code == 202
        # Another connection saw the row and its run the moment the answer arrived.
        assert seen[i] == [(f"W{i + 1:04d}", "run", reply.body["run_id"])]
        assert reply.body["run_id"] is not None


async def test_a_batch_of_plain_deliveries_takes_the_bulk_path_and_others_run_one_by_one(
    intake: HrIntake,
) -> None:
    bulk = intake.writer.bulk_batches
    results = await in_one_batch(
        intake, [delivery(f"W{n:04d}", f"bk_{n}") for n in range(1, 11)], lambda i: None
    )
    assert all(isinstance(r, Reply) and r.body["outcome"] == "run" for r in results)
    assert intake.writer.bulk_batches == bulk + 1
    # A person the roster does not know by id may be known by a link or an email, which the
    # bulk path does not look up: that batch is stored one delivery at a time, with the
    # same outcomes.
    sends = [delivery("W0031", "bk_31"), delivery("W9999", "bk_unknown")]
    results = await in_one_batch(intake, sends, lambda i: None, later=1)
    assert intake.writer.bulk_batches == bulk + 1
    ran, unknown = results
    assert isinstance(ran, Reply) and ran.body["outcome"] == "run"
    assert isinstance(unknown, UnknownWorkerError)
    assert committed(db_path(intake), "bk_unknown") == [("W9999", "unmapped", None)]


async def test_a_delivery_that_fails_in_the_database_fails_alone_and_leaves_nothing(
    intake: HrIntake,
) -> None:
    path = db_path(intake)
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TRIGGER refuse_w0013 BEFORE INSERT ON runs WHEN NEW.worker_id = 'W0013' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    sends = [delivery(f"W{n:04d}", f"fa_{n}") for n in (11, 12, 13, 14)]
    results = await in_one_batch(intake, sends, lambda i: None)
    failed = results[2]
    assert isinstance(failed, Exception) and "refused by the test" in str(failed)
    assert committed(path, "fa_13") == []  # no inbox row, no run, no person link
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM runs WHERE worker_id = 'W0013'").fetchone() == (0,)
        assert db.execute(
            "SELECT count(*) FROM hr_person_links WHERE worker_id = 'W0013'"
        ).fetchone() == (0,)
    for i in (0, 1, 3):
        reply = results[i]
        assert isinstance(reply, Reply) and reply.status_code == 202
        assert committed(path, f"fa_{(11, 12, 13, 14)[i]}")[0][1] == "run"


async def test_redelivery_and_conflict_inside_one_batch(intake: HrIntake) -> None:
    first = delivery("W0021", "same_id")
    clash = delivery("W0022", "same_id")
    results = await in_one_batch(intake, [first, first, clash], lambda i: None)
    one, again, conflict = results
    assert isinstance(one, Reply) and isinstance(again, Reply)
    assert one.body["duplicate"] is False and again.body["duplicate"] is True
    assert again.body["run_id"] == one.body["run_id"]
    assert isinstance(conflict, ConflictingDeliveryError)
    outcomes = sorted(o for _, o, _ in committed(db_path(intake), "same_id"))
    assert outcomes == ["conflict", "run"]


class FailingCommit:
    """A store whose transactions never commit (the database went away mid-batch)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls: list[int] = []

    def batch(self, jobs: Sequence[Callable[[], Any]]) -> list[Any]:
        self.gate.wait(10)
        self.calls.append(len(jobs))
        for job in jobs:
            job()
        raise StoreError("database error: disk I/O error")


async def test_a_failed_commit_fails_every_caller_in_the_batch() -> None:
    store = FailingCommit()
    writer = GroupCommit(store)
    try:
        tasks = [asyncio.ensure_future(writer.run(lambda n=n: n)) for n in range(5)]
        await asyncio.sleep(0)  # every task has queued its job (run() puts before it waits)
        store.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        writer.close()
    assert all(isinstance(r, StoreError) for r in results), results
    assert sum(store.calls) == 5
