"""Escaping and directory time formats: the pure logic under the LDAP connectors."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ldap3.utils.dn import parse_dn

from connectors.ldap.values import (
    AD_NEVER,
    ad_bind_diagnosis,
    ad_interval_to_seconds,
    ad_password_value,
    datetime_to_filetime,
    dn_is_under,
    escape_dn_value,
    escape_filter_value,
    filetime_to_datetime,
    format_generalized_time,
    guid_filter_value,
    guid_from_bytes,
    is_attribute_name,
    normalize_dn,
    parse_generalized_time,
    random_password,
    seconds_to_ad_interval,
)


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("*", "\\2a"),
        ("*)(uid=*", "\\2a\\29\\28uid=\\2a"),
        ("a\\*b\x00", "a\\5c\\2ab\\00"),
        ("(x)", "\\28x\\29"),
        ("plain.name@example.org", "plain.name@example.org"),
        ("Zoë", "Zoë"),
    ],
)
def test_filter_escaping(raw: str, escaped: str) -> None:
    assert escape_filter_value(raw) == escaped


@given(st.text())
def test_filter_escaping_leaves_no_metacharacter_and_round_trips(value: str) -> None:
    escaped = escape_filter_value(value)
    assert not set(escaped) & set("*()\x00")
    # Every backslash now starts a two-digit hex escape.
    assert all(escaped[i + 1 : i + 3].isalnum() for i, c in enumerate(escaped) if c == "\\")
    assert _unescape(escaped) == value


def _unescape(escaped: str) -> str:
    """RFC 4515 unescaping, written independently (ldap3's unescape_filter_chars turns the
    escaped text ``\\5c00`` into NUL: it replaces sequentially)."""
    raw = escaped.encode("utf-8")
    return re.sub(rb"\\([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), raw).decode()


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("O,Brien", "O\\,Brien"),
        ('a+b="c"', 'a\\+b\\=\\"c\\"'),
        ("x\\y", "x\\\\y"),
        ("nul\x00byte", "nul\\00byte"),
        ("#lead", "\\#lead"),
        ("mid#hash", "mid\\#hash"),
        (" both ", "\\ both\\ "),
        ("*()", "*()"),
    ],
)
def test_dn_escaping(raw: str, escaped: str) -> None:
    assert escape_dn_value(raw) == escaped


@given(st.text(min_size=1).filter(lambda s: "\x00" not in s))
def test_dn_escaping_yields_one_rdn(value: str) -> None:
    parts = parse_dn(f"cn={escape_dn_value(value)},dc=example,dc=org")
    assert len(parts) == 3 and parts[0][0] == "cn"


def test_dn_escaping_refuses_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        escape_dn_value("")


def test_attribute_names() -> None:
    assert is_attribute_name("employeeID") and is_attribute_name("msDS-ResultantPSO")
    for bad in ("", "uid)(x", "1abc", "a b", "cn=x", "a*"):
        assert not is_attribute_name(bad)


def test_dn_comparison() -> None:
    assert normalize_dn("CN=VA Billing, OU=Groups,DC=Example,DC=org") == normalize_dn(
        "cn=va billing,ou=groups,dc=example,dc=org"
    )
    assert dn_is_under("CN=a,OU=Groups,DC=x", "ou=groups,dc=x")
    assert dn_is_under("OU=Groups,DC=x", "OU=Groups,DC=x")
    assert not dn_is_under("CN=a,OU=NotGroups,DC=x", "OU=Groups,DC=x")
    assert not dn_is_under("CN=Domain Admins,CN=Users,DC=x", "OU=Groups,DC=x")


def test_filetime() -> None:
    # 2026-11-25T10:00:00Z = (2026-11-25 - 1601-01-01) in 100 ns; a real Samba DC wrote
    # lastLogonTimestamp 134400749047807200 for a bind about 8.4 minutes later.
    moment = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    assert datetime_to_filetime(moment) == 134_400_744_000_000_000
    assert filetime_to_datetime(134_400_744_000_000_000) == moment
    assert filetime_to_datetime(116_444_736_000_000_000) == datetime(1970, 1, 1, tzinfo=UTC)
    assert filetime_to_datetime(0) is None  # never signed in
    assert filetime_to_datetime(2**63 - 1) is None  # "never" sentinel
    plus_two = timezone(timedelta(hours=2))
    assert datetime_to_filetime(datetime(2026, 11, 25, 12, 0, tzinfo=plus_two)) == (
        134_400_744_000_000_000
    )
    with pytest.raises(ValueError, match="naive"):
        datetime_to_filetime(datetime(2026, 1, 1))


@given(st.datetimes(min_value=datetime(1601, 1, 2), max_value=datetime(9000, 1, 1)))
def test_filetime_round_trip(naive: datetime) -> None:
    moment = naive.replace(tzinfo=UTC)
    value = datetime_to_filetime(moment)
    if value > 0:
        assert filetime_to_datetime(value) == moment


def test_ad_intervals() -> None:
    assert ad_interval_to_seconds(-18_000_000_000) == 1800  # Samba's default 30 minutes
    assert seconds_to_ad_interval(900) == -9_000_000_000
    assert ad_interval_to_seconds(AD_NEVER) is None
    assert ad_interval_to_seconds(0) == 0
    with pytest.raises(ValueError, match="negative"):
        seconds_to_ad_interval(-1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20261125100000Z", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),
        ("20261125100000.123456Z", datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)),
        ("20261125100000.0Z", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),  # AD whenCreated
        ("20261125120000+0200", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),
        ("2026112510Z", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),
        ("000001010000Z", None),  # ppolicy administrative lock
    ],
)
def test_generalized_time(text: str, expected: datetime | None) -> None:
    assert parse_generalized_time(text) == expected


def test_generalized_time_rejects_garbage_and_formats_utc() -> None:
    with pytest.raises(ValueError, match="GeneralizedTime"):
        parse_generalized_time("yesterday")
    moment = datetime(2026, 11, 25, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_generalized_time(moment) == "20261125100000Z"


def test_guid_byte_order() -> None:
    guid = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
    assert guid_filter_value(str(guid)) == (
        "\\67\\45\\23\\01\\ab\\89\\ef\\cd\\01\\23\\45\\67\\89\\ab\\cd\\ef"
    )
    assert guid_from_bytes(guid.bytes_le) == str(guid)
    with pytest.raises(ValueError):
        guid_filter_value("*")


def test_ad_bind_diagnosis() -> None:
    message = (
        "80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 533, v4563"
    )
    diagnosis = ad_bind_diagnosis(message)
    assert diagnosis is not None and diagnosis.code == "533" and "disabled" in diagnosis.reason
    assert ad_bind_diagnosis("invalid credentials") is None


def test_random_password_meets_ad_complexity() -> None:
    seen = set()
    for _ in range(50):
        password = random_password()
        seen.add(password)
        assert len(password) == 32
        assert any(c.isupper() for c in password) and any(c.islower() for c in password)
        assert any(c.isdigit() for c in password) and any(not c.isalnum() for c in password)
        assert '"' not in password
    assert len(seen) == 50
    with pytest.raises(ValueError):
        random_password(4)


def test_unicode_pwd_value() -> None:
    assert ad_password_value("Pa1!") == '"Pa1!"'.encode("utf-16-le")
