"""What differs between Active Directory and OpenLDAP, behind one small interface.

Every method here is synchronous and runs in a worker thread with a pooled ``ldap3.Connection``
of its own (see ``connectors.ldap.pool``); ``connectors.ldap.connector`` does the async part, the
error translation and the evidence. Values are read from ``raw_attributes`` so that results do
not depend on whether ldap3 loaded the server schema.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from ldap3 import BASE, SUBTREE

from connectors.base import PolicyBaseline, PolicySetting, Worker
from connectors.ldap.options import LdapOptions
from connectors.ldap.values import escape_filter_value

Connection = Any


class DirectoryProblem(Exception):
    """The directory is not set up as the connector needs (missing policy entry, bad value).

    The connector turns it into a PermanentConnectorError naming itself.
    """


@dataclass(frozen=True, slots=True)
class Entry:
    dn: str
    attrs: dict[str, list[bytes]]
    """Attribute name (lower case) -> raw values."""

    def raw(self, name: str) -> bytes | None:
        values = self.attrs.get(name.lower())
        return values[0] if values else None

    def text(self, name: str) -> str | None:
        value = self.raw(name)
        return value.decode("utf-8", errors="replace") if value is not None else None

    def int(self, name: str) -> int | None:
        value = self.text(name)
        return int(value) if value not in (None, "") else None

    def texts(self, name: str) -> list[str]:
        return [v.decode("utf-8", errors="replace") for v in self.attrs.get(name.lower(), [])]


def _entries(response: Sequence[dict[str, Any]] | None) -> list[Entry]:
    out = []
    for item in response or ():
        if item.get("type") != "searchResEntry":
            continue  # AD answers domain-wide searches with referrals too
        raw = item.get("raw_attributes") or {}
        out.append(Entry(item["dn"], {k.lower(): list(v) for k, v in raw.items()}))
    return out


def search(
    conn: Connection,
    base: str,
    ldap_filter: str,
    attributes: Sequence[str],
    *,
    scope: str = SUBTREE,
    paged: bool = False,
) -> list[Entry]:
    """Search; ``paged`` walks the simple paged results control for large result sets."""
    if paged:
        response = conn.extend.standard.paged_search(
            base, ldap_filter, scope, attributes=list(attributes), paged_size=500, generator=False
        )
        return _entries(response)
    conn.search(base, ldap_filter, scope, attributes=list(attributes))
    return _entries(conn.response)


def read_entry(conn: Connection, dn: str, attributes: Sequence[str]) -> Entry | None:
    """Base-scope read of one entry; ``None`` when it does not exist."""
    from ldap3.core.exceptions import LDAPNoSuchObjectResult

    try:
        found = search(conn, dn, "(objectClass=*)", attributes, scope=BASE)
    except LDAPNoSuchObjectResult:
        return None
    return found[0] if found else None


def groups_of(conn: Connection, base: str, member_dn: str) -> list[str]:
    """DNs of the groups under ``base`` whose ``member`` holds ``member_dn``."""
    found = search(conn, base, f"(member={escape_filter_value(member_dn)})", ["1.1"])
    return sorted(entry.dn for entry in found)


class Dialect(abc.ABC):
    """One directory flavour."""

    kind: ClassVar[str]
    label: ClassVar[str]
    user_filter: ClassVar[str]
    """Filter selecting person accounts (no computers, no groups)."""
    revoke_note: ClassVar[str]
    """What a password reset does and does not end, for the evidence."""

    def __init__(self, options: LdapOptions) -> None:
        self.options = options

    # ------------------------------------------------------------------ identity

    @abc.abstractmethod
    def state_attributes(self) -> list[str]:
        """Attributes to read for find_account, read_state and list_accounts."""

    @abc.abstractmethod
    def lookup(self, conn: Connection, account_id: str) -> Entry | None:
        """The account's entry by its stable id; raises ValueError for an id of the wrong
        shape, returns ``None`` when no such entry exists."""

    @abc.abstractmethod
    def account_id(self, entry: Entry) -> str: ...

    @abc.abstractmethod
    def login(self, entry: Entry) -> str | None: ...

    # ------------------------------------------------------------------ state

    @abc.abstractmethod
    def enabled(self, entry: Entry) -> bool: ...

    def lock_effective(self, conn: Connection, entry: Entry) -> bool:
        """Whether the disable mark on ``entry`` really stops binds (checked on read-back)."""
        return True

    @abc.abstractmethod
    def locked(self, entry: Entry) -> bool | None: ...

    @abc.abstractmethod
    def last_sign_in(self, entry: Entry) -> datetime | None: ...

    @abc.abstractmethod
    def created_at(self, entry: Entry) -> datetime | None: ...

    @abc.abstractmethod
    def sessions_valid_from(self, entry: Entry) -> datetime | None:
        """When credentials were last reset (what a revocation moves forward)."""

    # ------------------------------------------------------------------ changes

    @abc.abstractmethod
    def disable(self, conn: Connection, entry: Entry) -> bool:
        """Turn the account off; ``False`` when it already was."""

    @abc.abstractmethod
    def enable(self, conn: Connection, entry: Entry) -> bool:
        """Undo ``disable``; ``False`` when the account was not disabled that way."""

    @abc.abstractmethod
    def reset_password(
        self, conn: Connection, dn: str, password: str, *, disabled: bool = False
    ) -> None:
        """Set a new password; ``disabled`` says the account is off and must stay off."""

    @abc.abstractmethod
    def new_account(
        self, worker: Worker, correlation_value: str, password: str
    ) -> tuple[str, dict[str, Any], bool]:
        """DN and attributes of a new enabled account; the flag says whether the password
        still has to be set after the add (it cannot be part of the add itself)."""

    # ------------------------------------------------------------------ policy

    @abc.abstractmethod
    def read_policy(self, conn: Connection) -> list[PolicySetting]: ...

    @abc.abstractmethod
    def apply_policy(self, conn: Connection, baseline: PolicyBaseline) -> dict[str, str]:
        """Make the directory enforce ``baseline``, read it back, and say what changed.

        Raises DirectoryProblem when the read-back differs from what was written.
        """
