"""Pure value handling for the LDAP connectors: escaping, directory time formats, passwords.

Kept free of I/O so that the parts most likely to be subtly wrong (an unescaped ``*`` that turns
a lookup into "match everyone", a FILETIME off by the 1601 epoch) have fast unit tests.
"""

from __future__ import annotations

import re
import secrets
import string
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ldap3.utils.dn import parse_dn

#: 100-ns intervals between 1601-01-01 (the Windows FILETIME epoch) and 1970-01-01.
_FILETIME_EPOCH_OFFSET = 116_444_736_000_000_000
_HUNDRED_NS_PER_SECOND = 10_000_000
#: AD writes this for "never" (e.g. accountExpires, lockoutDuration "until an admin unlocks").
AD_NEVER = -(2**63)
_FILETIME_MAX = 2**63 - 1

#: The administrative lock value of ppolicy: binds fail until an administrator removes it.
OPENLDAP_ADMIN_LOCK = "000001010000Z"

_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")


def escape_filter_value(value: str) -> str:
    """Escape a value for an LDAP search filter (RFC 4515).

    ``\\``, ``*``, ``(``, ``)`` and NUL become ``\\5c``, ``\\2a``, ``\\28``, ``\\29``, ``\\00``,
    so a hostile employee id such as ``*`` or ``*)(uid=*`` can only match itself.
    """
    out = []
    for char in value:
        if char in "\\*()\x00":
            out.append(f"\\{ord(char):02x}")
        else:
            out.append(char)
    return "".join(out)


def escape_dn_value(value: str) -> str:
    """Escape an attribute value for use in an RDN (RFC 4514 section 2.4).

    Unlike ``ldap3.utils.dn.escape_rdn`` this writes NUL as ``\\00`` (ldap3 emits a backslash
    followed by a raw NUL byte, which servers reject or mis-parse). ``#`` is escaped wherever it
    stands: RFC 4514 requires it only in front, but ldap3's own DN parser rejects it anywhere.
    """
    if not value:
        raise ValueError("an RDN value cannot be empty")
    out = []
    for index, char in enumerate(value):
        if char == "\x00":
            out.append("\\00")
        elif char in '\\,+"<>;=#' or _edge_space(value, index):
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def _edge_space(value: str, index: int) -> bool:
    """A leading or trailing space must be escaped in an RDN value."""
    return value[index] == " " and index in (0, len(value) - 1)


def is_attribute_name(name: str) -> bool:
    """Attribute names go into filters unescaped (they cannot be escaped), so they are checked."""
    return bool(_ATTRIBUTE_NAME.match(name))


def normalize_dn(dn: str) -> str:
    """A comparison key for a DN: case-folded, whitespace around ``=`` and ``,`` removed.

    Raises ValueError for text that is not a DN.
    """
    parts = parse_dn(dn, escape=False, strip=True)
    return ",".join(f"{attr.casefold()}={value.casefold()}" for attr, value, _sep in parts)


def dn_is_under(dn: str, base: str) -> bool:
    """Whether ``dn`` is ``base`` or below it."""
    child, parent = normalize_dn(dn), normalize_dn(base)
    return child == parent or child.endswith("," + parent)


def filetime_to_datetime(value: int) -> datetime | None:
    """A Windows FILETIME (100-ns since 1601, e.g. ``lastLogonTimestamp``) as UTC.

    0 and the "never" sentinels mean the event has not happened, and give ``None``.
    """
    if value <= 0 or value >= _FILETIME_MAX:
        return None
    seconds, rest = divmod(value - _FILETIME_EPOCH_OFFSET, _HUNDRED_NS_PER_SECOND)
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=rest // 10)


def datetime_to_filetime(moment: datetime) -> int:
    """The FILETIME of an aware datetime, for filters such as ``(lastLogonTimestamp<=N)``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every timestamp must carry its timezone")
    delta = moment.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    ticks = (delta.days * 86_400 + delta.seconds) * _HUNDRED_NS_PER_SECOND
    return _FILETIME_EPOCH_OFFSET + ticks + delta.microseconds * 10


def ad_interval_to_seconds(value: int) -> int | None:
    """An AD duration (``lockoutDuration``: negative 100-ns count) in whole seconds.

    ``None`` for the "forever" sentinel; AD stores durations negated, so the sign is dropped.
    """
    if value == AD_NEVER:
        return None
    return abs(value) // _HUNDRED_NS_PER_SECOND


def seconds_to_ad_interval(seconds: int) -> int:
    """Seconds as an AD duration value (negative 100-ns count), as the domain root stores it."""
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return -seconds * _HUNDRED_NS_PER_SECOND


def parse_generalized_time(value: str) -> datetime | None:
    """An LDAP GeneralizedTime (``20261125100000Z``, ``20261125100000.123456Z``) as UTC.

    ppolicy's administrative lock ``000001010000Z`` is not a moment and gives ``None``.
    Offsets such as ``+0200`` are honoured; a value without zone is taken as UTC.
    """
    text = value.strip()
    if text == OPENLDAP_ADMIN_LOCK:
        return None
    match = re.fullmatch(
        r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})?(\d{2})?(?:[.,](\d+))?(Z|[+-]\d{2}(?:\d{2})?)?", text
    )
    if not match:
        raise ValueError(f"not a GeneralizedTime: {value!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    moment = datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute or 0),
        int(second or 0),
        micro,
        tzinfo=UTC,
    )
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5] or 0))
        moment -= sign * offset
    return moment


def format_generalized_time(moment: datetime) -> str:
    """An aware datetime as GeneralizedTime in UTC (``YYYYMMDDHHMMSSZ``)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every timestamp must carry its timezone")
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


def guid_filter_value(account_id: str) -> str:
    """An objectGUID (as its canonical UUID string) escaped byte by byte for a filter.

    AD stores the GUID little-endian in its first three fields (``uuid.bytes_le``).
    Raises ValueError when ``account_id`` is not a UUID.
    """
    raw = uuid.UUID(account_id).bytes_le
    return "".join(f"\\{byte:02x}" for byte in raw)


def guid_from_bytes(raw: bytes) -> str:
    """objectGUID as returned on the wire (16 bytes, little-endian fields) -> UUID string."""
    return str(uuid.UUID(bytes_le=raw))


_AD_BIND_REASONS = {
    "525": "the account does not exist",
    "52e": "wrong password",
    "530": "sign-in not permitted at this time",
    "531": "sign-in not permitted from this workstation",
    "532": "the password has expired",
    "533": "the account is disabled",
    "701": "the account has expired",
    "773": "the password must be changed",
    "775": "the account is locked out",
}


@dataclass(frozen=True, slots=True)
class BindDiagnosis:
    code: str
    reason: str


def ad_bind_diagnosis(message: str | None) -> BindDiagnosis | None:
    """The ``data NNN`` sub-code of an AD bind error (``... data 533, v1db1``), explained."""
    match = re.search(r"\bdata ([0-9a-fA-F]{3,8})\b", message or "")
    if not match:
        return None
    code = match.group(1).lower()
    return BindDiagnosis(code, _AD_BIND_REASONS.get(code, "see Microsoft's LDAP bind error list"))


def random_password(length: int = 32) -> str:
    """A random secret that satisfies AD complexity (all four character classes).

    Used to revoke: nobody, not even this service, keeps it.
    """
    if length < 8:
        raise ValueError("a revocation password must be at least 8 characters")
    classes = (string.ascii_uppercase, string.ascii_lowercase, string.digits, "!#%+-.:=?@_~")
    chars = [secrets.choice(group) for group in classes]
    pool = "".join(classes)
    chars += [secrets.choice(pool) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def ad_password_value(password: str) -> bytes:
    """The ``unicodePwd`` value AD expects: the quoted password in UTF-16-LE."""
    return f'"{password}"'.encode("utf-16-le")
