"""Seeding and probing the test directories directly with ldap3, bypassing the connector.

The contract says seeds must not go through the connector under test; the bind probes are how
the tests prove that a disabled or locked account really cannot sign in.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ldap3 import MODIFY_ADD, MODIFY_REPLACE, NONE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPEntryAlreadyExistsResult, LDAPException

from connectors.ldap.values import ad_password_value, escape_dn_value

USER_PASSWORD = "Us3r!Passw0rd-初"


@dataclass(frozen=True)
class BindOutcome:
    ok: bool
    result: int | None
    message: str


class DirectoryAdmin:
    """An administrator's ldap3 connection to one test server (AD or OpenLDAP)."""

    def __init__(self, kind: str, url: str, ca_file: Path, admin_dn: str, password: str) -> None:
        self.kind = kind
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(ca_file))
        self.server = Server(host, port=int(port), use_ssl=True, tls=tls, get_info=NONE)
        self.conn = self.connect(admin_dn, password)

    def connect(self, dn: str, password: str) -> Connection:
        return Connection(self.server, dn, password, auto_bind=True, raise_exceptions=True)

    def try_bind(self, dn: str, password: str) -> BindOutcome:
        """Bind as a user on a fresh connection: the real proof an account can or cannot sign in."""
        conn = Connection(self.server, dn, password, raise_exceptions=False)
        try:
            conn.open()
            ok = bool(conn.bind())
            result = conn.result or {}
            return BindOutcome(ok, result.get("result"), str(result.get("message", "")))
        finally:
            conn.unbind()

    def ensure(self, dn: str, object_class: list[str], attrs: dict[str, Any]) -> None:
        try:
            self.conn.add(dn, object_class, attrs)
        except LDAPEntryAlreadyExistsResult:
            return

    def add_group(self, dn: str, placeholder: str | None = None) -> None:
        cn = dn.split(",", 1)[0].split("=", 1)[1]
        if self.kind == "ad":
            self.ensure(dn, ["top", "group"], {"sAMAccountName": cn[:20]})
        else:
            self.ensure(dn, ["top", "groupOfNames"], {"cn": cn, "member": [placeholder]})

    def add_user(
        self,
        parent: str,
        worker_id: str,
        *,
        email: str | None = None,
        name: str | None = None,
        groups: list[str] | tuple[str, ...] = (),
        password: str = USER_PASSWORD,
    ) -> str:
        """Create an enabled account (employeeID / employeeNumber = worker_id) in ``groups``."""
        if self.kind == "ad":
            dn = f"CN={escape_dn_value(worker_id)},{parent}"
            attrs: dict[str, Any] = {
                "sAMAccountName": worker_id[:20],
                "employeeID": worker_id,
                "displayName": name or worker_id,
                "userAccountControl": "512",
                "unicodePwd": ad_password_value(password),
            }
            if email:
                attrs["mail"] = email
            self.conn.add(dn, ["top", "person", "organizationalPerson", "user"], attrs)
        else:
            dn = f"uid={escape_dn_value(worker_id)},{parent}"
            attrs = {
                "uid": worker_id,
                "cn": name or worker_id,
                "sn": worker_id,
                "employeeNumber": worker_id,
                "userPassword": password,
            }
            if email:
                attrs["mail"] = email
            self.conn.add(dn, ["top", "person", "organizationalPerson", "inetOrgPerson"], attrs)
        for group in groups:
            self.conn.modify(group, {"member": [(MODIFY_ADD, [dn])]})
        return dn

    def attributes(self, dn: str, names: list[str]) -> dict[str, list[bytes]]:
        self.conn.search(dn, "(objectClass=*)", "BASE", attributes=names)
        raw: dict[str, list[bytes]] = self.conn.response[0]["raw_attributes"]
        return {k.lower(): v for k, v in raw.items()}

    def replace(self, dn: str, attribute: str, value: str) -> None:
        self.conn.modify(dn, {attribute: [(MODIFY_REPLACE, [value])]})

    def close(self) -> None:
        try:
            self.conn.unbind()
        except LDAPException:
            return
