"""A run's progress on both databases: prepared statements (``store/sql/prepared.py``) store
exactly what SQLAlchemy's own execution of the same statement stores, progress and links read
back whole, and a run's end writes the steps its last chain left with it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from lifecycle.domain import Lease, Link, StepError, StepResult, StepStatus, Worker
from lifecycle.store.ports import Finish, LinkProgress, StepProgress
from lifecycle.store.sql import SqlStore, mapping
from lifecycle.store.sql.runs import STEP_UPDATE, STEPS
from tests.integration.store.test_store import NOW, accept, termination

pytestmark = pytest.mark.integration


@pytest.fixture
def store(new_store: SqlStore) -> SqlStore:
    new_store.seed_workers([Worker(worker_id="W0001", updated_at=NOW)])
    return new_store


RESULT = StepResult(
    action="disable",
    account_id="a-1",
    started_at="2026-11-25T10:00:00+00:00",
    finished_at="2026-11-25T10:00:01+00:00",
    outcome="done",
    vendor_request_id="req-1",
    response_sha256="0" * 64,
    removed=("g1", "g2"),
    skipped=("g3: not ours",),
    detail={"k": "v"},
)


def test_result_json_is_step_result_dumps() -> None:
    assert mapping.result_json(RESULT) == RESULT.dumps()
    assert (
        mapping.result_json(StepResult("a", "b", "c", "d", "e"))
        == StepResult("a", "b", "c", "d", "e").dumps()
    )


@pytest.mark.parametrize(
    "at",
    [
        NOW,
        NOW.replace(microsecond=123456),
        datetime(2026, 11, 25, 12, 30, 5, 7, tzinfo=timezone(timedelta(hours=2))),
        datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC),
    ],
)
def test_a_prepared_step_update_stores_what_sqlalchemy_stores(
    store: SqlStore, at: datetime
) -> None:
    run_id = accept(store, termination("W0001", "evt-1")).run_id
    assert run_id is not None
    first, second = store.load_run(run_id).steps[:2]
    changes = {
        "status": StepStatus.FAILED,
        "attempts": 3,
        "account_id": "a-1",
        "account_login": "jdoe",
        "started_at": at,
        "finished_at": at + timedelta(microseconds=1),
        "error": StepError("no", "PermanentConnectorError", "permanent"),
        "result": RESULT,
        "readback": {"enabled": False, "entitlements_left": []},
        "next_attempt_at": None,
        "first_failed_at": at,
    }
    with store.session() as s:
        conn = s.connection()
        conn.execute(STEP_UPDATE, [mapping.step_progress(replace(first, **changes))])
        store.prepared(STEP_UPDATE).executemany(
            conn, [mapping.step_progress(replace(second, **changes))]
        )
    with store.session() as s:
        raw = {
            row.id: row._mapping
            for row in s.connection().exec_driver_sql(
                f"SELECT * FROM steps WHERE id IN ({first.id}, {second.id})"
            )
        }
        typed = {
            row.id: row._mapping
            for row in s.connection().execute(
                select(STEPS).where(STEPS.c.id.in_([first.id, second.id]))
            )
        }
    ignore = {"id", "action", "position"}
    assert {k: v for k, v in raw[first.id].items() if k not in ignore} == {
        k: v for k, v in raw[second.id].items() if k not in ignore
    }
    assert typed[second.id]["started_at"] == at
    loaded = {s.id: s for s in store.load_run(run_id).steps}
    assert (
        replace(loaded[second.id], id=first.id, action=first.action, position=first.position)
        == (loaded[first.id])
    )


def test_progress_and_links_read_back_after_save_progress(store: SqlStore) -> None:
    run_id = accept(store, termination("W0001", "evt-2")).run_id
    [lease] = store.claim_runs("r1", NOW, timedelta(seconds=30), 10)
    assert lease.run_id == run_id
    step = store.load_run(run_id).steps[0]
    done = replace(
        step,
        status=StepStatus.DONE,
        attempts=1,
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=1),
        result=RESULT,
    )
    link = Link("W0001", step.system, "a-1", "jdoe", NOW)
    assert store.save_progress([StepProgress(lease, done), LinkProgress(lease, link)]) == set()
    detail = store.load_run(run_id)
    assert detail.steps[0] == done
    assert detail.links[step.system] == link
    moved = replace(link, account_id="a-2", linked_at=NOW + timedelta(seconds=2))
    assert store.save_progress([LinkProgress(lease, moved)]) == set()
    assert store.load_run(run_id).links[step.system] == moved


def _finish(store: SqlStore, lease: Lease, progress: list[StepProgress]) -> dict[str, int]:
    def build(seq: int) -> tuple[str, bytes, bytes]:
        return f"rec-{lease.run_id}", f"record {seq}".encode(), seq.to_bytes(32, "big")

    item = Finish(lease, "W0001", "verified", NOW, 1, build, None, progress)  # type: ignore[arg-type]
    return store.finish_runs([item], NOW)


def test_the_last_steps_are_written_with_the_runs_end(store: SqlStore) -> None:
    run_id = accept(store, termination("W0001", "evt-end")).run_id
    [lease] = store.claim_runs("r1", NOW, timedelta(seconds=30), 10)
    step = store.load_run(run_id).steps[-1]
    done = replace(step, status=StepStatus.DONE, attempts=1, finished_at=NOW, result=RESULT)
    assert _finish(store, lease, [StepProgress(lease, done)]) == {run_id: 0}
    detail = store.load_run(run_id)
    assert detail.run.status == "verified"
    assert detail.steps[-1] == done


def test_a_taken_over_run_gets_neither_its_steps_nor_its_end(store: SqlStore) -> None:
    run_id = accept(store, termination("W0001", "evt-lost")).run_id
    lease = timedelta(seconds=30)
    [stale] = store.claim_runs("r1", NOW, lease, 10)
    [fresh] = store.claim_runs("r2", NOW + timedelta(seconds=31), lease, 10)
    assert fresh.run_id == run_id
    step = store.load_run(run_id).steps[-1]
    done = replace(step, status=StepStatus.DONE, attempts=1, finished_at=NOW)
    assert _finish(store, stale, [StepProgress(stale, done)]) == {}
    detail = store.load_run(run_id)
    assert detail.run.status == "running"
    assert detail.steps[-1] == step
    assert store.leaf_hashes() == []
