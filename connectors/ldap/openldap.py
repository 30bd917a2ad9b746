"""OpenLDAP dialect (checked against Debian slapd 2.5 with the ppolicy overlay).

Accounts are named by entryUUID. Disabling is ppolicy's administrative lock
(``pwdAccountLockedTime: 000001010000Z``): binds fail until an administrator removes it, and
unlike deleting the entry it can be undone after a wrongful termination (``enable`` deletes
the attribute).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from ldap3 import MODIFY_DELETE, MODIFY_REPLACE

from connectors.base import Control, PolicyBaseline, PolicySetting, Worker
from connectors.ldap.dialect import (
    Connection,
    Dialect,
    DirectoryProblem,
    Entry,
    read_entry,
    search,
)
from connectors.ldap.values import (
    OPENLDAP_ADMIN_LOCK,
    escape_dn_value,
    parse_generalized_time,
)

_MFA_NOTE = "OpenLDAP has no MFA setting: enforce MFA at the federating identity provider"
_PPOLICY_ATTRS = ("pwdLockout", "pwdMaxFailure", "pwdFailureCountInterval", "pwdLockoutDuration")


def _minutes(seconds: int | None) -> int | None:
    return None if seconds is None else seconds // 60


class OpenLdapDialect(Dialect):
    kind = "openldap"
    label = "OpenLDAP"
    user_filter = "(objectClass=inetOrgPerson)"
    revoke_note = (
        "password reset (RFC 3062) to a random secret nobody keeps; LDAP has no sessions, "
        "so binds with the old password fail from now on"
    )

    def state_attributes(self) -> list[str]:
        attrs = [
            "entryUUID",
            "uid",
            "mail",
            "pwdAccountLockedTime",
            "createTimestamp",
            "pwdChangedTime",
            "pwdPolicySubentry",
            self.options.correlation,
        ]
        if self.options.sign_in_attribute:
            attrs.append(self.options.sign_in_attribute)
        return attrs

    def lookup(self, conn: Connection, account_id: str) -> Entry | None:
        canonical = uuid.UUID(account_id)  # ValueError for ids of the wrong shape
        found = search(
            conn, self.options.base_dn, f"(entryUUID={canonical})", self.state_attributes()
        )
        return found[0] if found else None

    def account_id(self, entry: Entry) -> str:
        value = entry.text("entryUUID")
        if not value:
            raise DirectoryProblem(f"{entry.dn} has no entryUUID")
        return value

    def login(self, entry: Entry) -> str | None:
        return entry.text("uid") or entry.text("mail")

    def enabled(self, entry: Entry) -> bool:
        return entry.text("pwdAccountLockedTime") != OPENLDAP_ADMIN_LOCK

    def _policy_of(self, entry: Entry) -> str:
        return entry.text("pwdPolicySubentry") or self.options.policy_dn

    def lock_effective(self, conn: Connection, entry: Entry) -> bool:
        # slapd only honours pwdAccountLockedTime when the account's policy has pwdLockout
        # TRUE; otherwise the "disabled" account binds as before (checked on slapd 2.5).
        policy = read_entry(conn, self._policy_of(entry), ["pwdLockout"])
        return policy is not None and (policy.text("pwdLockout") or "").upper() == "TRUE"

    def locked(self, entry: Entry) -> bool | None:
        value = entry.text("pwdAccountLockedTime")
        # Any other value is a lockout after failed binds (it lapses after pwdLockoutDuration).
        return value is not None and value != OPENLDAP_ADMIN_LOCK

    def last_sign_in(self, entry: Entry) -> datetime | None:
        attribute = self.options.sign_in_attribute
        value = entry.text(attribute) if attribute else None
        return parse_generalized_time(value) if value else None

    def created_at(self, entry: Entry) -> datetime | None:
        value = entry.text("createTimestamp")
        return parse_generalized_time(value) if value else None

    def sessions_valid_from(self, entry: Entry) -> datetime | None:
        value = entry.text("pwdChangedTime")
        return parse_generalized_time(value) if value else None

    def disable(self, conn: Connection, entry: Entry) -> bool:
        if not self.lock_effective(conn, entry):
            raise DirectoryProblem(
                f"ppolicy {self._policy_of(entry)} does not have pwdLockout TRUE, so slapd would "
                "ignore the administrative lock and the account would still sign in: set "
                "pwdLockout TRUE in that policy (apply_policy does) and load ppolicy with "
                "olcPPolicyUseLockout"
            )
        if entry.text("pwdAccountLockedTime") == OPENLDAP_ADMIN_LOCK:
            return False
        conn.modify(entry.dn, {"pwdAccountLockedTime": [(MODIFY_REPLACE, [OPENLDAP_ADMIN_LOCK])]})
        return True

    def enable(self, conn: Connection, entry: Entry) -> bool:
        # Only the administrative lock is ours to lift; a lockout after failed binds (any
        # other value) lapses on its own after pwdLockoutDuration.
        if entry.text("pwdAccountLockedTime") != OPENLDAP_ADMIN_LOCK:
            return False
        conn.modify(entry.dn, {"pwdAccountLockedTime": [(MODIFY_DELETE, [])]})
        return True

    def reset_password(
        self, conn: Connection, dn: str, password: str, *, disabled: bool = False
    ) -> None:
        # RFC 3062 Password Modify: the server hashes with its own scheme and ppolicy sees it.
        conn.extend.standard.modify_password(user=dn, new_password=password)
        if disabled:
            # ppolicy clears pwdAccountLockedTime on every password change, which would undo
            # the disable. The new password is already unknown to anyone, so the moment
            # between the two operations grants nothing; the lock goes straight back.
            conn.modify(dn, {"pwdAccountLockedTime": [(MODIFY_REPLACE, [OPENLDAP_ADMIN_LOCK])]})

    def new_account(
        self, worker: Worker, correlation_value: str, password: str
    ) -> tuple[str, dict[str, Any], bool]:
        name = worker.name or worker.worker_id
        dn = f"uid={escape_dn_value(worker.worker_id)},{self.options.accounts_ou}"
        attrs: dict[str, Any] = {
            "objectClass": ["top", "person", "organizationalPerson", "inetOrgPerson"],
            "uid": worker.worker_id,
            "cn": name,
            "sn": name.split()[-1] if name.split() else worker.worker_id,
            "displayName": name,
        }
        if worker.email:
            attrs["mail"] = worker.email
        attrs[self.options.correlation] = correlation_value
        return dn, attrs, True

    # ------------------------------------------------------------------ policy

    def _policy(self, conn: Connection) -> Entry | None:
        return read_entry(conn, self.options.policy_dn, _PPOLICY_ATTRS)

    def read_policy(self, conn: Connection) -> list[PolicySetting]:
        entry = self._policy(conn)
        if entry is None:
            raise DirectoryProblem(
                f"no ppolicy entry at {self.options.policy_dn}: set ppolicy_dn to the entry named "
                "by olcPPolicyDefault, or run apply_policy to create it"
            )
        where = f"ppolicy {entry.dn}"
        lockout = (entry.text("pwdLockout") or "FALSE").upper() == "TRUE"
        duration = entry.int("pwdLockoutDuration")
        return [
            PolicySetting(Control.MFA, None, _MFA_NOTE),
            PolicySetting(
                Control.LOCKOUT_THRESHOLD,
                (entry.int("pwdMaxFailure") or 0) if lockout else 0,
                f"{where} pwdMaxFailure (0: pwdLockout is off)",
            ),
            PolicySetting(
                Control.LOCKOUT_WINDOW_MINUTES,
                _minutes(entry.int("pwdFailureCountInterval") or 0),
                f"{where} pwdFailureCountInterval",
            ),
            PolicySetting(
                Control.LOCKOUT_DURATION_MINUTES,
                _minutes(duration) if duration else None,
                f"{where} pwdLockoutDuration (None: until an administrator unlocks)",
            ),
        ]

    def apply_policy(self, conn: Connection, baseline: PolicyBaseline) -> dict[str, str]:
        wanted = {
            "pwdLockout": "TRUE",
            "pwdMaxFailure": str(baseline.lockout_threshold),
            "pwdFailureCountInterval": str(baseline.lockout_window_minutes * 60),
            "pwdLockoutDuration": str(baseline.lockout_duration_minutes * 60),
        }
        entry = self._policy(conn)
        changed: dict[str, str] = {}
        if entry is None:
            conn.add(
                self.options.policy_dn,
                ["top", "organizationalRole", "pwdPolicy"],
                {"pwdAttribute": "userPassword", **wanted},
            )
            changed["ppolicy"] = f"created {self.options.policy_dn}"
        else:
            changes = {n: [(MODIFY_REPLACE, [v])] for n, v in wanted.items() if entry.text(n) != v}
            if changes:
                conn.modify(entry.dn, changes)
                changed.update({n: f"{entry.text(n)} -> {wanted[n]}" for n in changes})
        after = self._policy(conn)
        if after is None or any(after.text(n) != v for n, v in wanted.items()):
            raise DirectoryProblem(f"read-back of {self.options.policy_dn} differs")
        return changed
