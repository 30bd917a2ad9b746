"""The HR intake on an in-memory store: every authenticated event becomes a run, ignored (with
the reason), unmapped (alerted) or pending (retried from the store until it resolves), and
nothing is lost. respx stands in for BambooHR's API (bodies as documented, see
tests/unit/hr/vendors.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import respx
from pydantic import SecretStr

from lifecycle.alerts import AlertSink
from lifecycle.domain import InboxOutcome, RunKind, Worker
from lifecycle.exceptions import ConflictingDeliveryError, UnknownWorkerError
from lifecycle.services.intake import HrIntake
from lifecycle.settings import HrSettings, HrSourceSettings, ServiceSettings, Settings
from lifecycle.store.sql import SqlStore as Store
from tests.unit.hr.vendors import (
    bamboo_employee,
    bamboo_entry,
    bamboo_event,
    bamboo_fields,
    bamboo_headers,
    dumps,
    gusto_event,
    gusto_headers,
    standard_headers,
)

pytestmark = pytest.mark.anyio

WH_SECRET = "whsec_c2VjcmV0LWZvci10ZXN0cy1vbmx5"
BAMBOO_SECRET = "bamboo-private-key"
GUSTO_TOKEN = "6590f590-3dba-495e-9bea-c361e1e2efc0"
API = "https://clinic.bamboohr.com/api/v1/employees"
SYSTEMS = ["ehr", "idp"]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


class Wake:
    def __init__(self) -> None:
        self.count = 0
        self.dues: list[datetime | None] = []

    def __call__(self, due: datetime | None = None) -> None:
        self.count += 1
        self.dues.append(due)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
def store() -> Iterator[Store]:
    store = Store("sqlite://")
    store.create_schema()
    now = datetime.now(UTC)
    store.seed_workers(
        [
            Worker(worker_id=f"W{n:04d}", email=f"w{n:04d}@example.org", updated_at=now)
            for n in range(1, 60)
        ]
    )
    yield store
    store.dispose()


@pytest.fixture
async def parts(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[HrIntake, Clock, AlertSink, Wake]]:
    monkeypatch.setenv("T_BAMBOO_KEY", "api-key")
    clock, alerts, wake = Clock(), AlertSink(), Wake()
    settings = Settings(
        service=ServiceSettings(demo=True),
        hr=HrSettings(
            sources={
                "demo": HrSourceSettings(kind="standardwebhooks", secret=SecretStr(WH_SECRET)),
                "bamboohr": HrSourceSettings(
                    kind="bamboohr",
                    secret=SecretStr(BAMBOO_SECRET),
                    api_key=SecretStr("env:T_BAMBOO_KEY"),
                    subdomain="clinic",
                    lookup_attempts=1,
                    retry_initial_seconds=10,
                    retry_max_seconds=40,
                    escalate_after_seconds=60,
                ),
                "gusto": HrSourceSettings(
                    kind="gusto", secret=SecretStr(f"file:{tmp_path / 'gusto.token'}")
                ),
            }
        ),
    )
    http = httpx.AsyncClient()
    intake = HrIntake(
        settings=settings,
        store=store,
        alerts=alerts,
        http=http,
        connectors=SYSTEMS,
        playbooks=None,
        wake=wake,
        clock=clock,
    )
    yield intake, clock, alerts, wake
    await http.aclose()


def standard(
    worker: str, msg_id: str, now: datetime, kind: str = "worker.terminated"
) -> tuple[bytes, dict[str, str]]:
    body = dumps({"type": kind, "timestamp": now.isoformat(), "data": {"worker_id": worker}})
    return body, standard_headers(body, WH_SECRET, msg_id, now)


def bamboo(payload: dict[str, object], now: datetime) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, bamboo_headers(body, BAMBOO_SECRET, stamp=str(int(now.timestamp())))


async def test_termination_starts_a_run_and_a_redelivery_returns_it(
    parts: tuple[HrIntake, Clock, AlertSink, Wake], store: Store
) -> None:
    intake, clock, _, wake = parts
    reply = await intake.receive("demo", *standard("W0001", "msg_a", clock.now))
    assert reply.status_code == 202
    assert reply.body["outcome"] == "run"
    assert reply.body["run_id"]
    assert wake.count == 1
    again = await intake.receive("demo", *standard("W0001", "msg_a", clock.now))
    assert again.body["duplicate"] is True
    assert again.body["run_id"] == reply.body["run_id"]
    assert store.load_run(reply.body["run_id"]).run.kind == RunKind.OFFBOARD


async def test_a_future_dated_termination_wakes_the_executor_for_its_due_time(
    parts: tuple[HrIntake, Clock, AlertSink, Wake],
) -> None:
    intake, clock, _, wake = parts
    later = clock.now + timedelta(days=2)
    body = dumps(
        {
            "type": "worker.terminated",
            "timestamp": clock.now.isoformat(),
            "data": {"worker_id": "W0002", "effective_at": later.isoformat()},
        }
    )
    reply = await intake.receive("demo", body, standard_headers(body, WH_SECRET, "f", clock.now))
    assert reply.body["outcome"] == "run"
    await intake.receive("demo", *standard("W0003", "now", clock.now))
    assert wake.dues == [later, None]


async def test_termination_of_a_worker_not_in_the_roster_is_unmapped_and_alerted(
    parts: tuple[HrIntake, Clock, AlertSink, Wake], store: Store
) -> None:
    intake, clock, alerts, _ = parts
    with pytest.raises(UnknownWorkerError, match=r"W9876.*unmapped"):
        await intake.receive("demo", *standard("W9876", "msg_u", clock.now))
    assert [a.kind for a in alerts.sent] == ["unknown_worker_termination"]
    assert "W9876" in alerts.sent[0].message
    (row,) = store.list_inbox(outcome="unmapped")
    assert (row.worker_id, row.run_id) == ("W9876", None)
    with pytest.raises(UnknownWorkerError):
        await intake.receive("demo", *standard("W9876", "msg_u", clock.now))
    assert len(alerts.sent) == 1  # a re-delivery is not alerted twice


async def test_update_of_a_worker_not_in_the_roster_is_ignored_with_the_reason(
    parts: tuple[HrIntake, Clock, AlertSink, Wake],
) -> None:
    intake, clock, alerts, _ = parts
    reply = await intake.receive("demo", *standard("W9877", "m", clock.now, "worker.updated"))
    assert reply.body["outcome"] == "ignored"
    assert "not in the roster" in reply.body["detail"]
    assert alerts.sent == []


async def test_hire_without_provisioning_is_ignored_with_the_reason(
    parts: tuple[HrIntake, Clock, AlertSink, Wake], store: Store
) -> None:
    intake, clock, _, _ = parts
    reply = await intake.receive("demo", *standard("W0900", "h", clock.now, "worker.hired"))
    assert reply.body["outcome"] == "ignored"
    assert "provisioning" in reply.body["detail"]
    assert store.get_worker("W0900") is not None  # the roster learned of the hire


async def test_bamboohr_termination_maps_by_email_and_remembers_the_link(
    parts: tuple[HrIntake, Clock, AlertSink, Wake], api: respx.MockRouter, store: Store
) -> None:
    intake, clock, _, _ = parts
    api.get(f"{API}/67890").mock(
        return_value=httpx.Response(200, json=bamboo_employee("67890", email="W0042@Example.org"))
    )
    reply = await intake.receive("bamboohr", *bamboo(bamboo_event("67890"), clock.now))
    assert reply.body["outcome"] == "run"
    run = store.load_run(reply.body["run_id"]).run
    assert run.worker_id == "W0042"
    assert run.effective_at == datetime(2026, 11, 30, tzinfo=UTC)
    assert store.linked_worker("bamboohr", "67890") == "W0042"
    deleted = await intake.receive(
        "bamboohr", *bamboo(bamboo_event("67890", kind="employee.deleted"), clock.now)
    )
    assert deleted.body["outcome"] == "run"  # the record is gone; the link still maps it
    assert store.load_run(deleted.body["run_id"]).run.worker_id == "W0042"


async def test_field_based_delivery_stores_one_row_per_employee(
    parts: tuple[HrIntake, Clock, AlertSink, Wake], store: Store
) -> None:
    intake, clock, _, _ = parts
    payload = bamboo_fields(
        bamboo_entry(
            "1", fields={"Employment Status": "Terminated", "Work Email": "w0005@example.org"}
        ),
        bamboo_entry("2", ("Home Phone",), {"Home Phone": "555"}),
    )
    reply = await intake.receive("bamboohr", *bamboo(payload, clock.now))
    assert [e["outcome"] for e in reply.body["events"]] == ["run", "ignored"]
    assert "run_id" not in reply.body  # several events: only the list
    assert len(store.list_inbox(source="bamboohr")) == 2


async def test_bamboohr_unreachable_is_stored_retried_and_then_decided(
    parts: tuple[HrIntake, Clock, AlertSink, Wake], api: respx.MockRouter, store: Store
) -> None:
    intake, clock, alerts, wake = parts
    route = api.get(f"{API}/67890").mock(side_effect=httpx.ConnectError("down"))
    received = clock.now
    reply = await intake.receive("bamboohr", *bamboo(bamboo_event("67890"), clock.now))
    assert reply.status_code == 202
    assert reply.body["outcome"] == "pending"
    assert "ConnectError" in reply.body["detail"]
    inbox_id = reply.body["event_id"]
    assert alerts.sent == []  # transient: no alert yet

    assert await intake.resolve_due() == 0  # not due before its backoff
    clock.now += timedelta(seconds=15)
    assert await intake.resolve_due() == 1
    row = store.inbox_event(inbox_id)
    assert row is not None
    assert (row.outcome, row.attempts) == ("pending", 2)

    clock.now += timedelta(seconds=60)  # overdue: escalated once, still retried
    assert await intake.resolve_due() == 1
    assert [a.kind for a in alerts.sent] == ["hr_lookup_overdue"]
    clock.now += timedelta(seconds=60)
    await intake.resolve_due()
    assert len(alerts.sent) == 1

    route.mock(return_value=httpx.Response(200, json=bamboo_employee("67890")))
    clock.now += timedelta(seconds=60)
    assert await intake.resolve_due() == 1
    row = store.inbox_event(inbox_id)
    assert row is not None
    assert row.outcome == InboxOutcome.RUN
    assert row.received_at == received  # the same row, the original receipt time
    assert row.run_id is not None
    run = store.load_run(row.run_id).run
    assert (run.worker_id, run.received_at) == ("W0042", received)
    assert wake.count >= 1
    assert await intake.resolve_due() == 0


async def test_refused_api_key_is_stored_and_alerted_at_once(
    parts: tuple[HrIntake, Clock, AlertSink, Wake], api: respx.MockRouter
) -> None:
    intake, clock, alerts, _ = parts
    api.get(f"{API}/67890").mock(return_value=httpx.Response(401))
    reply = await intake.receive("bamboohr", *bamboo(bamboo_event("67890"), clock.now))
    assert reply.body["outcome"] == "pending"
    assert [a.kind for a in alerts.sent] == ["hr_lookup_refused"]
    assert "api-key" not in alerts.sent[0].message


async def test_unknown_bamboohr_employee_on_a_status_change_is_unmapped(
    parts: tuple[HrIntake, Clock, AlertSink, Wake], api: respx.MockRouter
) -> None:
    intake, clock, alerts, _ = parts
    api.get(f"{API}/67890").mock(return_value=httpx.Response(404))
    with pytest.raises(UnknownWorkerError, match="unmapped"):
        await intake.receive("bamboohr", *bamboo(bamboo_event("67890"), clock.now))
    assert [a.kind for a in alerts.sent] == ["unknown_worker_termination"]


async def test_gusto_verification_token_is_kept_once_in_the_secret_file(
    parts: tuple[HrIntake, Clock, AlertSink, Wake], tmp_path: Path, store: Store
) -> None:
    intake, _, alerts, _ = parts
    reply = await intake.receive("gusto", dumps({"verification_token": GUSTO_TOKEN}), {})
    assert reply.status_code == 200
    kept = tmp_path / "gusto.token"
    assert kept.read_text().strip() == GUSTO_TOKEN
    assert kept.stat().st_mode & 0o777 == 0o600
    assert alerts.sent[-1].kind == "hr_source_verification"
    assert GUSTO_TOKEN not in alerts.sent[-1].message
    await intake.receive("gusto", dumps({"verification_token": "forged"}), {})
    assert kept.read_text().strip() == GUSTO_TOKEN  # the first token stays
    assert "different" in alerts.sent[-1].message
    assert store.list_inbox(source="gusto") == []
    body = dumps(gusto_event(entity_uuid="W0007"))
    reply = await intake.receive("gusto", body, gusto_headers(body, GUSTO_TOKEN))
    assert reply.body["outcome"] == "run"


async def test_inbox_counts_by_source_and_outcome(
    parts: tuple[HrIntake, Clock, AlertSink, Wake], store: Store
) -> None:
    intake, clock, _, _ = parts
    await intake.receive("demo", *standard("W0010", "c1", clock.now))
    with pytest.raises(UnknownWorkerError):  # refused with 422, and kept
        await intake.receive("demo", *standard("W9999", "c2", clock.now))
    await intake.receive("demo", *standard("W0011", "c3", clock.now, "worker.updated"))
    assert store.inbox_counts() == {
        ("demo", "run"): 1,
        ("demo", "unmapped"): 1,
        ("demo", "ignored"): 1,
    }


async def test_a_reused_event_id_with_another_payload_is_a_conflict_for_every_row_kind(
    parts: tuple[HrIntake, Clock, AlertSink, Wake], store: Store, tmp_path: Path
) -> None:
    intake, clock, alerts, _ = parts
    await intake.receive("demo", *standard("W0020", "same-id", clock.now))
    with pytest.raises(ConflictingDeliveryError, match="payload differs"):
        await intake.receive("demo", *standard("W0021", "same-id", clock.now))
    assert [a.kind for a in alerts.sent] == ["hr_event_conflict"]
    assert "W0021" in alerts.sent[0].message
    assert store.list_runs(worker_id="W0021") == []

    (tmp_path / "gusto.token").write_text(GUSTO_TOKEN)
    ignored = dumps(gusto_event("payroll.paid", uuid="reused-uuid"))
    answer = await intake.receive("gusto", ignored, gusto_headers(ignored, GUSTO_TOKEN))
    assert answer.body["outcome"] == "ignored"
    clash = dumps(gusto_event(entity_uuid="W0022", uuid="reused-uuid"))
    with pytest.raises(ConflictingDeliveryError):
        await intake.receive("gusto", clash, gusto_headers(clash, GUSTO_TOKEN))
    with pytest.raises(ConflictingDeliveryError):  # again: refused again, alerted once
        await intake.receive("gusto", clash, gusto_headers(clash, GUSTO_TOKEN))
    assert [a.kind for a in alerts.sent].count("hr_event_conflict") == 2
    assert sorted(r.outcome or "" for r in store.list_inbox(source="gusto")) == [
        "conflict",
        "ignored",
    ]
    assert store.list_runs(worker_id="W0022") == []
