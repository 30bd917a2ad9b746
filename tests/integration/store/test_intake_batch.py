"""The intake's batch path (``accept_hr_events``: one read and one write per table for many HR
events) stores exactly what the one-at-a-time path (``accept_hr_event`` per event) stores, on
both databases, including what an earlier event of the same batch changes for a later one: a
re-delivery, a conflicting payload, a roster change, a joiner run whose playbook a mover then
replaces, and an event whose decision fails (it leaves no trace)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.exc import IntegrityError

from lifecycle.domain import Intake, IntakeDecision, Worker
from lifecycle.engine.kinds import default_kinds
from lifecycle.exceptions import UnknownWorkerError
from lifecycle.hr.event import HrEvent, HrEventType
from lifecycle.services.hr_decisions import accept, acceptance
from lifecycle.store.sql import SqlStore
from tests.servers import drop_schema
from tests.unit.services.helpers import hr_event, library

pytestmark = pytest.mark.integration
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SYSTEMS = ["ehr", "idp", "phone"]
KINDS = default_kinds()
LIB = library()


def events() -> list[HrEvent]:
    term = hr_event("W0003", HrEventType.TERMINATION, None, "t-3")
    return [
        hr_event("W0100", HrEventType.HIRE, "VA-SCHED", "h-100", name="New Hire"),
        hr_event("W0002", HrEventType.HIRE, "VA-SCHED", "h-2"),
        hr_event("W0002", HrEventType.TRANSFER, "VA-BILL", "x-2"),  # mover after the joiner
        hr_event("W0001", HrEventType.TRANSFER, "VA-CALLBACK", "x-1"),  # no playbook yet
        term,
        term,  # a re-delivery inside the batch
        replace(term, payload_sha256="cd" * 32),  # same id, another payload: a conflict
        replace(term, payload_sha256="cd" * 32),  # that conflict delivered again
        hr_event("W0004", HrEventType.UPDATE, None, "u-4a", name="First Name"),
        hr_event("W0004", HrEventType.UPDATE, None, "u-4b", name="Second Name"),
        hr_event("W9999", HrEventType.TERMINATION, None, "t-9999"),  # not in the roster
        hr_event("W0005", HrEventType.TERMINATION, None, "t-5"),
    ]


def fresh(url: str) -> SqlStore:
    drop_schema(url)  # each test builds the same store twice on one URL
    store = SqlStore(url)
    store.create_schema()
    store.seed_workers(
        [Worker(worker_id=f"W{n:04d}", job_code="VA-SCHED", updated_at=NOW) for n in range(1, 6)]
    )
    # An earlier delivery: t-3 is a re-delivery from the very first event of the batch on.
    accept(store, KINDS, LIB, SYSTEMS, hr_event("W0003", HrEventType.TERMINATION, None, "t-3"), NOW)
    return store


def snapshot(store: SqlStore, results: list[Any]) -> dict[str, Any]:
    """What is stored, without the random ids (runs named by their inbox row's position)."""
    inbox = sorted(
        store.list_inbox(limit=500), key=lambda e: (e.received_at, e.source_event_id, e.outcome)
    )
    runs: dict[str | None, int] = {e.run_id: i for i, e in enumerate(inbox) if e.run_id}
    shown: list[object] = []
    for r in results:
        if isinstance(r, Intake):
            shown.append((r.outcome, r.duplicate, runs.get(r.run_id), r.detail is not None))
        else:
            shown.append(type(r).__name__)
    return {
        "results": shown,
        "inbox": [
            (e.source_event_id, e.worker_id, e.outcome, e.detail, runs.get(e.run_id)) for e in inbox
        ],
        "runs": [
            (
                (d := store.load_run(run_id)).run.kind,
                d.run.worker_id,
                d.run.status,
                d.run.playbook_name,
                len(d.steps),
            )
            for run_id in runs
            if run_id is not None
        ],
        "workers": sorted((w.worker_id, w.name, w.job_code, w.status) for w in store.workers()),
    }


def test_the_batch_path_stores_what_one_event_at_a_time_stores(store_url: str) -> None:
    one_by_one = fresh(store_url)
    results: list[Any] = []
    for event in events():
        try:
            results.append(accept(one_by_one, KINDS, LIB, SYSTEMS, event, NOW))
        except UnknownWorkerError as exc:
            results.append(exc)
    expected = snapshot(one_by_one, results)
    one_by_one.dispose()

    batched = fresh(store_url)
    items = [acceptance(KINDS, LIB, SYSTEMS, e, NOW) for e in events()]
    got = batched.together(lambda: batched.accept_hr_events(items))
    assert snapshot(batched, got) == expected
    batched.dispose()

    # The scenario is what it claims to be.
    shown = expected["results"]
    assert shown[4][:2] == ("run", True) and shown[5][:2] == ("run", True)
    assert shown[6][:2] == ("conflict", False) and shown[7][:2] == ("conflict", True)
    assert shown[10] == "UnknownWorkerError"
    runs = expected["runs"]
    assert ("transfer", "W0002", "pending", "billing-va") in [r[:4] for r in runs]
    assert ("W0004", "Second Name", "VA-SCHED", "active") in expected["workers"]


def test_a_failed_write_stores_nothing_of_the_batch(store_url: str) -> None:
    store = fresh(store_url)
    before = snapshot(store, [])
    items = [acceptance(KINDS, LIB, SYSTEMS, e, NOW) for e in events()]
    last = items[-1]

    def clashing(known: Worker | None, playbook: str | None) -> IntakeDecision:
        # A run under the event key of the run stored before: unique on (source, event id).
        decided = last.decide(known, playbook)
        assert decided.run is not None
        return replace(decided, run=replace(decided.run, source_event_id="t-3"))

    with pytest.raises(IntegrityError):
        store.together(
            lambda: store.accept_hr_events([*items[:-1], replace(last, decide=clashing)])
        )
    assert snapshot(store, []) == before
    store.dispose()


def test_a_batch_changes_workers_in_id_order(store_url: str) -> None:
    """Two replicas' batches that change the same workers must take the workers' row locks in
    the same order, or PostgreSQL may find them deadlocked: the batch writes them by id."""
    store = fresh(store_url)
    order = ["W0004", "W0001", "W0005", "W0002"]
    items = [
        acceptance(KINDS, LIB, SYSTEMS, hr_event(w, HrEventType.UPDATE, None, f"o-{w}"), NOW)
        for w in order
    ]
    written: list[list[str]] = []

    def seen(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE WORKERS"):
            rows = params if many else [params]
            written.append(
                [r[-1] if isinstance(r, tuple | list) else r["b_worker_id"] for r in rows]
            )

    sqlalchemy.event.listen(store.engine, "before_cursor_execute", seen)
    store.together(lambda: store.accept_hr_events(items))
    assert written == [sorted(order)]
    store.dispose()
