"""BambooHR: event-based and field-based webhooks in JSON and form posts, decided from the
employee as the API returns it (respx stands in for BambooHR, bodies as documented: see
tests/unit/hr/vendors.py for the pages)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import respx
from pydantic import SecretStr

from lifecycle.exceptions import PayloadError, SignatureError
from lifecycle.hr import Delivery, HrEvent, HrEventType, Ignored, Lookup, bamboohr, context_for
from lifecycle.hr import parse_delivery as parse
from lifecycle.hr.errors import VendorRecordMissingError, VendorUnavailableError
from lifecycle.settings import HrSettings, HrSourceSettings
from tests.unit.hr.vendors import (
    bamboo_employee,
    bamboo_entry,
    bamboo_event,
    bamboo_event_form,
    bamboo_fields,
    bamboo_fields_form,
    bamboo_headers,
)

pytestmark = pytest.mark.anyio

SECRET = "bamboo-test-secret"
API_KEY = "bamboo-api-key"
API = "https://clinic.bamboohr.com/api/v1/employees"
NOW = datetime.now(UTC).replace(microsecond=0)
STAMP = str(int(NOW.timestamp()))


@pytest.fixture
def hr(monkeypatch: pytest.MonkeyPatch) -> HrSettings:
    monkeypatch.setenv("TEST_BAMBOO_SECRET", SECRET)
    monkeypatch.setenv("TEST_BAMBOO_KEY", API_KEY)
    return HrSettings(
        sources={
            "bamboohr": HrSourceSettings(
                kind="bamboohr",
                secret=SecretStr("env:TEST_BAMBOO_SECRET"),
                api_key=SecretStr("env:TEST_BAMBOO_KEY"),
                subdomain="clinic",
                lookup_attempts=2,
            )
        }
    )


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


def deliver(
    hr: HrSettings, body: bytes, *, form: bool = False, stamp: str | None = None
) -> Delivery:
    stamp = stamp if stamp is not None else STAMP  # signed "now" is the test's NOW
    return parse(hr, "bamboohr", body, bamboo_headers(body, SECRET, stamp=stamp, form=form), NOW)


async def decided(hr: HrSettings, item: object, *, zone: str = "UTC") -> HrEvent | Ignored:
    assert isinstance(item, Lookup)
    ctx = context_for(hr, "bamboohr", NOW, zone=UTC if zone == "UTC" else ZoneInfo(zone))
    async with httpx.AsyncClient() as http:
        return await bamboohr.resolve(ctx, item, http)


def employee(route: respx.MockRouter, employee_id: str, **kwargs: object) -> respx.Route:
    return route.get(f"{API}/{employee_id}").mock(
        return_value=httpx.Response(200, json=bamboo_employee(employee_id, **kwargs))  # type: ignore[arg-type]
    )


async def test_bamboohr_termination(hr: HrSettings, api: respx.MockRouter) -> None:
    """Event-based JSON: the employee is read through the API, then decided."""
    route = employee(api, "67890")
    body = json.dumps(bamboo_event("67890")).encode()
    delivery = deliver(hr, body)
    event = await decided(hr, delivery.items[0])
    assert isinstance(event, HrEvent)
    assert event.type is HrEventType.TERMINATION
    assert event.effective_at == datetime(2026, 11, 30, tzinfo=UTC)
    assert event.email == "w0042@example.org"
    again = deliver(hr, body, stamp=str(int(NOW.timestamp()) + 60)).items[0]
    assert isinstance(again, Lookup)
    assert again.event_id == event.event_id  # a re-delivery maps to the same event id
    request = route.calls.last.request
    assert request.headers["authorization"].startswith("Basic ")
    assert request.headers["accept"] == "application/json"
    fields = request.url.params["fields"].split(",")
    assert {"employmentHistoryStatus", "terminationDate", "workEmail", "jobTitle"} <= set(fields)


async def test_form_post_termination_is_the_same_decision(
    hr: HrSettings, api: respx.MockRouter
) -> None:
    employee(api, "67890")
    delivery = deliver(hr, bamboo_event_form("67890"), form=True)
    event = await decided(hr, delivery.items[0])
    assert isinstance(event, HrEvent)
    assert event.type is HrEventType.TERMINATION
    assert event.worker_id == "67890"
    assert event.person_id == "67890"


async def test_date_only_termination_starts_at_midnight_in_the_organisations_zone(
    hr: HrSettings, api: respx.MockRouter
) -> None:
    employee(api, "67890")
    event = await decided(
        hr, deliver(hr, json.dumps(bamboo_event()).encode()).items[0], zone="America/Los_Angeles"
    )
    assert isinstance(event, HrEvent)
    assert event.effective_at == datetime(2026, 11, 30, 8, tzinfo=UTC)  # 00:00 PST


async def test_employee_number_is_the_worker_id_when_bamboohr_has_one(
    hr: HrSettings, api: respx.MockRouter
) -> None:
    employee(api, "67890", number="W0042")
    event = await decided(hr, deliver(hr, json.dumps(bamboo_event()).encode()).items[0])
    assert isinstance(event, HrEvent)
    assert (event.worker_id, event.aliases, event.person_id) == ("W0042", ("67890",), "67890")


async def test_status_that_is_not_terminated_is_ignored_with_the_reason(
    hr: HrSettings, api: respx.MockRouter
) -> None:
    employee(api, "67890", status="Full-Time", termination_date=None)
    item = await decided(hr, deliver(hr, json.dumps(bamboo_event()).encode()).items[0])
    assert isinstance(item, Ignored)
    assert "Full-Time" in item.reason


async def test_job_change_is_a_transfer_with_the_new_job_code(
    hr: HrSettings, api: respx.MockRouter
) -> None:
    employee(api, "67890", status="Full-Time", termination_date=None, job_title="VA-SCHED")
    body = json.dumps(bamboo_event(changed=("jobTitle",))).encode()
    event = await decided(hr, deliver(hr, body).items[0])
    assert isinstance(event, HrEvent)
    assert (event.type, event.job_code) == (HrEventType.TRANSFER, "VA-SCHED")


def test_a_field_that_matters_to_nothing_is_ignored_without_a_look_up(
    hr: HrSettings, api: respx.MockRouter
) -> None:
    body = json.dumps(bamboo_event(changed=("homePhone", "maritalStatus"))).encode()
    (item,) = deliver(hr, body).items
    assert isinstance(item, Ignored)
    assert "homePhone" in item.reason
    assert not api.calls


def test_deleted_is_a_termination_at_once(hr: HrSettings) -> None:
    body = json.dumps(bamboo_event("555", kind="employee.deleted")).encode()
    (event,) = deliver(hr, body).items
    assert isinstance(event, HrEvent)
    assert event.type is HrEventType.TERMINATION
    assert event.effective_at is None


async def test_bamboohr_created_is_a_hire(hr: HrSettings, api: respx.MockRouter) -> None:
    employee(api, "100", status="Full-Time", termination_date=None, email="n@example.org")
    body = json.dumps(bamboo_event("100", kind="employee.created")).encode()
    event = await decided(hr, deliver(hr, body).items[0])
    assert isinstance(event, HrEvent)
    assert event.type is HrEventType.HIRE
    assert event.email == "n@example.org"
    assert event.effective_at == datetime(2024, 3, 1, tzinfo=UTC)


def test_field_based_json_carries_several_employees_each_with_its_own_id(
    hr: HrSettings,
) -> None:
    body = json.dumps(
        bamboo_fields(
            bamboo_entry(
                "12345",
                fields={
                    "Employment Status": "Terminated",
                    "Termination Date": "2026-11-30",
                    "Work Email": "w0042@example.org",
                },
            ),
            bamboo_entry("12346", ("First Name",), {"First Name": "Bryony"}),
        )
    ).encode()
    first, second = deliver(hr, body).items
    assert isinstance(first, HrEvent)
    assert first.type is HrEventType.TERMINATION
    assert first.effective_at == datetime(2026, 11, 30, tzinfo=UTC)
    assert first.email == "w0042@example.org"
    assert isinstance(second, HrEvent)  # a name refreshes the roster
    assert second.type is HrEventType.UPDATE
    assert first.event_id != second.event_id
    assert deliver(hr, body).items[0].event_id == first.event_id  # stable across deliveries


def test_field_based_aliases_are_honoured(hr: HrSettings) -> None:
    hr.sources["bamboohr"].field_aliases = {"employment_status": "empStatus"}
    body = json.dumps(
        bamboo_fields(bamboo_entry("12345", ("empStatus",), {"empStatus": "Terminated"}))
    ).encode()
    (event,) = deliver(hr, body).items
    assert isinstance(event, HrEvent)
    assert event.type is HrEventType.TERMINATION


async def test_field_based_entry_without_the_status_value_is_looked_up(
    hr: HrSettings, api: respx.MockRouter
) -> None:
    employee(api, "12345")
    body = json.dumps(bamboo_fields(bamboo_entry("12345", fields={"First Name": "Ana"}))).encode()
    (item,) = deliver(hr, body).items
    assert isinstance(item, Lookup)
    assert item.termination_looking
    event = await decided(hr, item)
    assert isinstance(event, HrEvent)
    assert event.type is HrEventType.TERMINATION


def test_field_based_form_post(hr: HrSettings) -> None:
    body = bamboo_fields_form(
        "12345",
        ("Employment Status",),
        {"Employment Status": "Terminated", "Termination Date": "2026-11-30"},
    )
    (event,) = deliver(hr, body, form=True).items
    assert isinstance(event, HrEvent)
    assert (event.type, event.person_id) == (HrEventType.TERMINATION, "12345")


def test_field_based_deleted_action(hr: HrSettings) -> None:
    body = json.dumps(bamboo_fields(bamboo_entry("9", (), {}, action="Deleted"))).encode()
    (event,) = deliver(hr, body).items
    assert isinstance(event, HrEvent)
    assert event.type is HrEventType.TERMINATION


@pytest.mark.parametrize(
    "stamp",
    [
        lambda now: str(int(now.timestamp())),
        lambda now: now.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        lambda now: now.isoformat().replace("+00:00", "Z"),
    ],
    ids=["unix", "iso-basic-offset", "iso-z"],
)
def test_timestamp_header_in_each_documented_format(hr: HrSettings, stamp: object) -> None:
    body = json.dumps(bamboo_event("555", kind="employee.deleted")).encode()
    assert deliver(hr, body, stamp=stamp(NOW)).items  # type: ignore[operator]


def test_bamboohr_bad_signature_and_stale_timestamp(hr: HrSettings) -> None:
    payload = bamboo_event("42", kind="employee.deleted")
    body = json.dumps(payload).encode()
    headers = bamboo_headers(body, "wrong", stamp=STAMP)
    with pytest.raises(SignatureError, match="does not match"):
        parse(hr, "bamboohr", body, headers, NOW)
    headers = bamboo_headers(body, SECRET, stamp=str(int((NOW - timedelta(minutes=6)).timestamp())))
    with pytest.raises(SignatureError, match="300 s"):
        parse(hr, "bamboohr", body, headers, NOW)
    with pytest.raises(SignatureError, match="required"):
        parse(hr, "bamboohr", body, {}, NOW)


def test_replayed_delivery_outside_the_tolerance_is_refused(hr: HrSettings) -> None:
    body = json.dumps(bamboo_event("42", kind="employee.deleted")).encode()
    headers = bamboo_headers(body, SECRET, stamp=str(int(NOW.timestamp())))
    assert parse(hr, "bamboohr", body, headers, NOW).items
    with pytest.raises(SignatureError, match="replayed or stale"):
        parse(hr, "bamboohr", body, headers, NOW + timedelta(minutes=10))


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "employee.fired", "data": {"employeeId": "1"}}',
        b'{"type": "employee.updated", "data": {"employeeId": "../../admin"}}',
        b'{"type": "employee.updated"}',
        b'{"employees": "x"}',
        b'{"employees": []}',
        b"[1]",
    ],
)
def test_malformed_bodies_are_refused(hr: HrSettings, body: bytes) -> None:
    with pytest.raises(PayloadError):
        deliver(hr, body)


async def test_unreachable_api_is_retried_then_reported_unavailable(
    hr: HrSettings, api: respx.MockRouter
) -> None:
    route = api.get(f"{API}/67890").mock(side_effect=httpx.ConnectError("refused"))
    item = deliver(hr, json.dumps(bamboo_event()).encode()).items[0]
    with pytest.raises(VendorUnavailableError, match="ConnectError"):
        await decided(hr, item)
    assert route.call_count == 2  # lookup_attempts


async def test_a_503_then_success_is_retried_within_the_look_up(
    hr: HrSettings, api: respx.MockRouter
) -> None:
    api.get(f"{API}/67890").mock(
        side_effect=[
            httpx.Response(503, headers={"Retry-After": "0"}),
            httpx.Response(200, json=bamboo_employee("67890")),
        ]
    )
    event = await decided(hr, deliver(hr, json.dumps(bamboo_event()).encode()).items[0])
    assert isinstance(event, HrEvent)
    assert event.type is HrEventType.TERMINATION


async def test_unknown_employee_is_reported_missing(hr: HrSettings, api: respx.MockRouter) -> None:
    api.get(f"{API}/67890").mock(return_value=httpx.Response(404))
    with pytest.raises(VendorRecordMissingError):
        await decided(hr, deliver(hr, json.dumps(bamboo_event()).encode()).items[0])


def test_a_bamboohr_source_needs_its_api_settings() -> None:
    with pytest.raises(ValueError, match="api_key"):
        HrSourceSettings(kind="bamboohr", secret=SecretStr("env:X"))
    with pytest.raises(ValueError, match="https"):
        HrSourceSettings(
            kind="bamboohr",
            secret=SecretStr("env:X"),
            api_key=SecretStr("env:Y"),
            api_base_url="http://bamboo.example.org",
        )
    local = HrSourceSettings(
        kind="bamboohr",
        secret=SecretStr("env:X"),
        api_key=SecretStr("env:Y"),
        api_base_url="http://127.0.0.1:8081/",
    )
    assert local.api_url() == "http://127.0.0.1:8081"
