"""Gusto: the verification-token handshake, X-Gusto-Signature, effective-dated events."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from lifecycle.exceptions import SignatureError
from lifecycle.hr import HrEvent, HrEventType, Ignored, parse_delivery
from lifecycle.settings import HrSettings
from tests.unit.hr.conftest import GUSTO_TOKEN
from tests.unit.hr.vendors import gusto_event, gusto_headers

NOW = datetime.now(UTC)


def parse(hr: HrSettings, payload: dict[str, object], token: str = GUSTO_TOKEN) -> object:
    body = json.dumps(payload).encode()
    (item,) = parse_delivery(hr, "gusto", body, gusto_headers(body, token), NOW).items
    return item


def test_verification_token_handshake_is_answered_and_carries_the_token(
    vendors: HrSettings,
) -> None:
    body = json.dumps({"verification_token": GUSTO_TOKEN}).encode()
    delivery = parse_delivery(vendors, "gusto", body, {}, NOW)
    assert delivery.items == ()
    assert delivery.handshake is not None
    assert delivery.handshake.status_code == 200
    assert delivery.handshake.token is not None
    assert delivery.handshake.token.get_secret_value() == GUSTO_TOKEN
    assert GUSTO_TOKEN not in delivery.handshake.note


def test_termination_effective_is_a_termination_at_once(vendors: HrSettings) -> None:
    event = parse(vendors, gusto_event())
    assert isinstance(event, HrEvent)
    assert event.type is HrEventType.TERMINATION
    assert event.worker_id == "bcfc9744-0ab3-4ef3-ab0d-e728255d659c"
    assert event.event_id == "03ffbf0c-48a9-4f1c-932a-546413a26ad1"
    assert event.effective_at is None


def test_contractor_deactivation_effective_is_a_termination(vendors: HrSettings) -> None:
    event = parse(
        vendors, gusto_event("contractor.deactivation_effective", entity_type="Contractor")
    )
    assert isinstance(event, HrEvent)
    assert (event.type, event.engagement) == (HrEventType.TERMINATION, "contractor")


def test_recorded_termination_waits_for_the_effective_event(vendors: HrSettings) -> None:
    item = parse(vendors, gusto_event("employee.terminated"))
    assert isinstance(item, Ignored)
    assert item.type is HrEventType.TERMINATION
    assert "effective" in item.reason
    vendors.sources["gusto"].effective_events_only = False
    event = parse(vendors, gusto_event("employee.terminated"))
    assert isinstance(event, HrEvent)
    assert event.type is HrEventType.TERMINATION


def test_hire_and_job_change(vendors: HrSettings) -> None:
    hire = parse(vendors, gusto_event("employee.created"))
    assert isinstance(hire, HrEvent)
    assert hire.type is HrEventType.HIRE
    job = parse(
        vendors,
        gusto_event("employee_job_compensation.updated", entity_type="EmployeeJobCompensation"),
    )
    assert isinstance(job, Ignored)
    assert "job code" in job.reason


def test_bad_signature_is_refused(vendors: HrSettings) -> None:
    with pytest.raises(SignatureError, match="X-Gusto-Signature"):
        parse(vendors, gusto_event(), token="not-the-token")
    body = json.dumps(gusto_event()).encode()
    with pytest.raises(SignatureError, match="required"):
        parse_delivery(vendors, "gusto", body, {}, NOW)


def test_replay_is_the_same_event(vendors: HrSettings) -> None:
    first, again = parse(vendors, gusto_event()), parse(vendors, gusto_event())
    assert isinstance(first, HrEvent) and isinstance(again, HrEvent)
    assert (first.event_id, first.payload_sha256) == (again.event_id, again.payload_sha256)
