"""Deel: x-deel-signature over "POST" + body, the body's delivery time, contract.terminated."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lifecycle.exceptions import PayloadError, SignatureError
from lifecycle.hr import HrEvent, HrEventType, Ignored, parse_delivery
from lifecycle.settings import HrSettings
from tests.unit.hr.conftest import DEEL_KEY
from tests.unit.hr.vendors import deel_headers, deel_terminated

NOW = datetime.now(UTC).replace(microsecond=0)


def parse(hr: HrSettings, payload: dict[str, object], *, key: str = DEEL_KEY) -> list[object]:
    body = json.dumps(payload).encode()
    return list(parse_delivery(hr, "deel", body, deel_headers(body, key), NOW).items)


def test_contract_terminated_is_a_contractor_termination_at_the_completion_date(
    vendors: HrSettings,
) -> None:
    (event,) = parse(vendors, deel_terminated(sent=NOW))
    assert isinstance(event, HrEvent)
    assert event.type is HrEventType.TERMINATION
    assert event.worker_id == "W0042"
    assert event.email == "w0042@example.org"
    assert event.engagement == "contractor"
    assert event.effective_at == datetime(2026, 11, 30, tzinfo=UTC)
    assert event.event_id == "-A3hBP_Bhn48yZWj9FHhpiAV5aM0"
    assert "3w4zdd9" in (event.reason or "")


def test_redelivery_with_a_new_timestamp_is_the_same_event(vendors: HrSettings) -> None:
    (first,) = parse(vendors, deel_terminated(sent=NOW))
    (again,) = parse(vendors, deel_terminated(sent=NOW + timedelta(seconds=30)))
    assert isinstance(first, HrEvent) and isinstance(again, HrEvent)
    assert (again.event_id, again.payload_sha256) == (first.event_id, first.payload_sha256)


def test_without_external_id_the_email_names_the_worker(vendors: HrSettings) -> None:
    (event,) = parse(vendors, deel_terminated(external_id=None, sent=NOW))
    assert isinstance(event, HrEvent)
    assert event.email == "w0042@example.org"


def test_other_events_are_ignored_with_the_reason(vendors: HrSettings) -> None:
    payload = deel_terminated(sent=NOW)
    payload["data"]["meta"]["event_type"] = "invoice.created"  # type: ignore[index]
    (item,) = parse(vendors, payload)
    assert isinstance(item, Ignored)
    assert "contract.terminated" in item.reason


def test_bad_signature_is_refused(vendors: HrSettings) -> None:
    with pytest.raises(SignatureError, match="x-deel-signature"):
        parse(vendors, deel_terminated(sent=NOW), key="another-key")
    body = json.dumps(deel_terminated(sent=NOW)).encode()
    with pytest.raises(SignatureError, match="required"):
        parse_delivery(vendors, "deel", body, {}, NOW)


def test_replay_outside_the_tolerance_is_refused(vendors: HrSettings) -> None:
    with pytest.raises(SignatureError, match="300 s"):
        parse(vendors, deel_terminated(sent=NOW - timedelta(minutes=6)))
    vendors.sources["deel"].tolerance_seconds = 900
    assert parse(vendors, deel_terminated(sent=NOW - timedelta(minutes=6)))


def test_a_resource_list_gives_one_event_each(vendors: HrSettings) -> None:
    payload = deel_terminated(sent=NOW)
    one = payload["data"]["resource"]  # type: ignore[index]
    payload["data"]["resource"] = [one, {**one, "external_id": "W0043"}]  # type: ignore[index]
    first, second = parse(vendors, payload)
    assert isinstance(first, HrEvent) and isinstance(second, HrEvent)
    assert (first.worker_id, second.worker_id) == ("W0042", "W0043")
    assert first.event_id != second.event_id


def test_malformed_body_is_refused(vendors: HrSettings) -> None:
    with pytest.raises(PayloadError):
        parse(vendors, {"data": {"resource": {}}, "timestamp": NOW.isoformat()})
