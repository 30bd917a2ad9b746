"""What every adapter shares: PHP-style form bodies, vendor time formats, date-only dates in
the organisation's time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from lifecycle.exceptions import MalformedBodyError, PayloadError
from lifecycle.hr.common import Context, as_list, form_fields, json_object, parse_instant, start_of
from lifecycle.settings import HrSourceSettings

CTX = Context(
    "s",
    HrSourceSettings(kind="deel", secret=SecretStr("env:X")),
    datetime(2026, 12, 1, 12, tzinfo=UTC),
    zone=ZoneInfo("America/New_York"),
)


def test_form_keys_nest_like_php() -> None:
    body = (
        b"type=employee.updated&data[employeeId]=1"
        b"&data[changedFields][0]=a&data[changedFields][1]=b"
    )
    fields = form_fields(body, "x")
    assert fields["data"]["employeeId"] == "1"
    assert as_list(fields["data"]["changedFields"]) == ["a", "b"]


@pytest.mark.parametrize("body", [b"a[b=1", b"a]b[=1", b"a=1&a[b]=2", b"[x]=1"])
def test_malformed_form_keys_are_refused(body: bytes) -> None:
    with pytest.raises(PayloadError):
        form_fields(body, "x")


def test_non_utf8_and_deep_json_are_malformed_bodies() -> None:
    with pytest.raises(MalformedBodyError):
        form_fields(b"a=\xff", "x")
    with pytest.raises(MalformedBodyError):
        json_object(b"[" * 100_000 + b"]" * 100_000, "x")


@pytest.mark.parametrize(
    "value",
    [
        1764590400,
        "1764590400",
        "2025-12-01T12:00:00Z",
        "2025-12-01T12:00:00+0000",
        "2025-12-01T12:00:00",
    ],
)
def test_instants_in_vendor_formats(value: object) -> None:
    assert parse_instant(value, "t") == datetime(2025, 12, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("value", [True, "", "soon", "9" * 80, None])
def test_not_an_instant(value: object) -> None:
    with pytest.raises(PayloadError):
        parse_instant(value, "t")


def test_a_date_only_value_is_midnight_in_the_organisations_zone() -> None:
    assert start_of("2026-11-30", CTX, "d") == datetime(2026, 11, 30, 5, tzinfo=UTC)
    assert start_of("0000-00-00", CTX, "d") is None
    assert start_of("2026-11-30T17:00:00Z", CTX, "d") == datetime(2026, 11, 30, 17, tzinfo=UTC)
    with pytest.raises(PayloadError):
        start_of("2026-13-01", CTX, "d")
