"""HiBob: the Ping test, Bob-Signature (HMAC-SHA512, base64), lifecycle events."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from lifecycle.exceptions import SignatureError
from lifecycle.hr import HrEvent, HrEventType, Ignored, parse_delivery
from lifecycle.settings import HrSettings
from tests.unit.hr.conftest import HIBOB_SECRET
from tests.unit.hr.vendors import hibob_event, hibob_headers

NOW = datetime.now(UTC)


def parse(hr: HrSettings, payload: dict[str, object], secret: str = HIBOB_SECRET) -> object:
    body = json.dumps(payload).encode()
    (item,) = parse_delivery(hr, "hibob", body, hibob_headers(body, secret), NOW).items
    return item


@pytest.mark.parametrize("body", [b"Ping test", b'{"text":"Ping test"}'])
def test_ping_test_is_answered_and_stores_nothing(vendors: HrSettings, body: bytes) -> None:
    delivery = parse_delivery(vendors, "hibob", body, {}, NOW)
    assert delivery.handshake is not None
    assert delivery.handshake.status_code == 200
    assert delivery.items == ()


def test_employee_left_is_a_termination(vendors: HrSettings) -> None:
    event = parse(vendors, hibob_event())
    assert isinstance(event, HrEvent)
    assert event.type is HrEventType.TERMINATION
    assert event.worker_id == "3332883854254932743"
    assert event.occurred_at is not None
    assert event.occurred_at.tzinfo is not None


def test_deleted_keeps_the_email_for_mapping(vendors: HrSettings) -> None:
    event = parse(vendors, hibob_event("employee.deleted", email="w0042@example.org"))
    assert isinstance(event, HrEvent)
    assert (event.type, event.email) == (HrEventType.TERMINATION, "w0042@example.org")


def test_access_revoked_immediately_is_a_termination(vendors: HrSettings) -> None:
    event = parse(vendors, hibob_event("employee.access.revoked.immediately"))
    assert isinstance(event, HrEvent)
    assert event.type is HrEventType.TERMINATION


def test_joined_is_a_hire_and_a_work_table_change_is_ignored_with_the_reason(
    vendors: HrSettings,
) -> None:
    hire = parse(vendors, hibob_event("employee.joined"))
    assert isinstance(hire, HrEvent)
    assert hire.type is HrEventType.HIRE
    payload = hibob_event("table.entry.updated")
    payload["data"] = {"employeeId": "1", "tableId": "work", "effectiveDate": "2026-12-01"}
    move = parse(vendors, payload)
    assert isinstance(move, Ignored)
    assert "job code" in move.reason


def test_bad_signature_is_refused(vendors: HrSettings) -> None:
    with pytest.raises(SignatureError, match="Bob-Signature"):
        parse(vendors, hibob_event(), secret="wrong")
    body = json.dumps(hibob_event()).encode()
    with pytest.raises(SignatureError, match="required"):
        parse_delivery(vendors, "hibob", body, {}, NOW)


def test_replay_is_the_same_event(vendors: HrSettings) -> None:
    first, again = parse(vendors, hibob_event()), parse(vendors, hibob_event())
    assert isinstance(first, HrEvent) and isinstance(again, HrEvent)
    assert first.event_id == again.event_id
