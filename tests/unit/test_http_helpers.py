"""Shared HTTP connector helpers: path segments, OAuth options, Retry-After."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from pydantic import ValidationError

from connectors._http import OAuthOptions, path_segment
from connectors.base import PermanentConnectorError, parse_retry_after


@pytest.mark.parametrize("value", ["", ".", ".."])
def test_dot_segments_are_not_resource_ids(value: str) -> None:
    with pytest.raises(PermanentConnectorError, match="not a resource id") as info:
        path_segment(value, connector="ehr")
    assert info.value.connector == "ehr"


def test_ids_are_one_segment() -> None:
    assert path_segment("a/../b?x#y", connector="ehr") == "a%2F..%2Fb%3Fx%23y"


def test_token_url_must_be_https_except_on_loopback() -> None:
    with pytest.raises(ValidationError, match="token_url"):
        OAuthOptions(token_url="http://idp.example/token", client_id="c", client_secret="env:S")
    OAuthOptions(token_url="http://127.0.0.1:9/token", client_id="c", client_secret="env:S")
    OAuthOptions(token_url="https://idp.example/token", client_id="c", client_secret="env:S")


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("41") == 41
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    parsed = parse_retry_after(later)
    assert parsed is not None
    assert 100 < parsed <= 120
