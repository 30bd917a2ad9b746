"""Rippling: a static bearer token (the weakest scheme), form-encoded events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lifecycle.exceptions import SignatureError
from lifecycle.hr import HrEvent, HrEventType, Ignored, parse_delivery
from lifecycle.settings import HrSettings
from tests.unit.hr.conftest import RIPPLING_TOKEN
from tests.unit.hr.vendors import rippling_event, rippling_headers

NOW = datetime.now(UTC)


def parse(hr: HrSettings, body: bytes, token: str = RIPPLING_TOKEN, now: datetime = NOW) -> object:
    (item,) = parse_delivery(hr, "rippling", body, rippling_headers(token), now).items
    return item


def test_employee_deleted_is_a_termination(vendors: HrSettings) -> None:
    event = parse(vendors, rippling_event())
    assert isinstance(event, HrEvent)
    assert (event.type, event.worker_id) == (HrEventType.TERMINATION, "W0042")


def test_hired_is_a_hire_and_updated_is_ignored(vendors: HrSettings) -> None:
    hire = parse(vendors, rippling_event("EmployeeHired"))
    assert isinstance(hire, HrEvent)
    assert hire.type is HrEventType.HIRE
    update = parse(vendors, rippling_event("EmployeeUpdated"))
    assert isinstance(update, Ignored)
    assert "no field values" in update.reason


def test_wrong_or_missing_token_is_refused(vendors: HrSettings) -> None:
    with pytest.raises(SignatureError, match="bearer token"):
        parse(vendors, rippling_event(), token="guess")
    with pytest.raises(SignatureError, match="required"):
        parse_delivery(vendors, "rippling", rippling_event(), {}, NOW)


def test_duplicate_the_same_day_is_the_same_event_a_later_day_is_not(
    vendors: HrSettings,
) -> None:
    first, again = parse(vendors, rippling_event()), parse(vendors, rippling_event())
    later = parse(vendors, rippling_event(), now=NOW + timedelta(days=1))
    assert isinstance(first, HrEvent) and isinstance(again, HrEvent)
    assert isinstance(later, HrEvent)
    assert first.event_id == again.event_id != later.event_id
