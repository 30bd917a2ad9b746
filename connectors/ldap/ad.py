"""Active Directory dialect (checked against Samba AD DC).

Accounts are named by objectGUID and read with a base search on ``<GUID=...>``: that survives
renames and moves, and it is the only way AD returns constructed attributes such as
``msDS-User-Account-Control-Computed`` (lockout) and ``msDS-ResultantPSO``.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from ldap3 import MODIFY_REPLACE

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
    ad_interval_to_seconds,
    ad_password_value,
    escape_dn_value,
    escape_filter_value,
    filetime_to_datetime,
    guid_from_bytes,
    normalize_dn,
    parse_generalized_time,
    random_password,
    seconds_to_ad_interval,
)

ACCOUNTDISABLE = 0x2
NORMAL_ACCOUNT = 0x200
UF_LOCKOUT = 0x10  # in msDS-User-Account-Control-Computed
_SAM_FORBIDDEN = re.compile(r'["/\\\[\]:;|=,+*?<>@\x00-\x1f]')

_DOMAIN_LOCKOUT = ("lockoutThreshold", "lockOutObservationWindow", "lockoutDuration")
_PSO_LOCKOUT = ("msDS-LockoutThreshold", "msDS-LockoutObservationWindow", "msDS-LockoutDuration")
_PSO_ATTRS = (*_PSO_LOCKOUT, "msDS-PSOAppliesTo", "msDS-PasswordSettingsPrecedence")
_MFA_NOTE = "Active Directory has no MFA setting: enforce MFA at the federating identity provider"


def _minutes(seconds: int | None) -> int | None:
    return None if seconds is None else seconds // 60


class AdDialect(Dialect):
    kind = "ad"
    label = "Active Directory"
    user_filter = "(&(objectCategory=person)(objectClass=user))"
    revoke_note = (
        "password reset twice to random secrets nobody keeps (the previous password stays "
        "valid for a while after one reset); Kerberos tickets already issued live until they "
        "expire (default 10 h) but cannot be renewed for a disabled account"
    )

    def state_attributes(self) -> list[str]:
        attrs = [
            "objectGUID",
            "userAccountControl",
            "lockoutTime",
            "msDS-User-Account-Control-Computed",
            "userPrincipalName",
            "sAMAccountName",
            "whenCreated",
            "pwdLastSet",
            self.options.correlation,
        ]
        if self.options.sign_in_attribute:
            attrs.append(self.options.sign_in_attribute)
        return attrs

    def lookup(self, conn: Connection, account_id: str) -> Entry | None:
        canonical = uuid.UUID(account_id)  # ValueError for ids of the wrong shape
        return read_entry(conn, f"<GUID={canonical}>", self.state_attributes())

    def account_id(self, entry: Entry) -> str:
        raw = entry.raw("objectGUID")
        if raw is None or len(raw) != 16:
            raise DirectoryProblem(f"{entry.dn} has no readable objectGUID")
        return guid_from_bytes(raw)

    def login(self, entry: Entry) -> str | None:
        return entry.text("userPrincipalName") or entry.text("sAMAccountName")

    def enabled(self, entry: Entry) -> bool:
        uac = entry.int("userAccountControl")
        if uac is None:
            raise DirectoryProblem(f"{entry.dn} has no userAccountControl (not a user?)")
        return not uac & ACCOUNTDISABLE

    def locked(self, entry: Entry) -> bool | None:
        computed = entry.int("msDS-User-Account-Control-Computed")
        if computed is not None:
            return bool(computed & UF_LOCKOUT)
        lockout = entry.int("lockoutTime")  # constructed attribute absent on subtree searches
        return None if lockout is None else lockout > 0

    def last_sign_in(self, entry: Entry) -> datetime | None:
        attribute = self.options.sign_in_attribute
        value = entry.int(attribute) if attribute else None
        return filetime_to_datetime(value) if value is not None else None

    def created_at(self, entry: Entry) -> datetime | None:
        value = entry.text("whenCreated")
        return parse_generalized_time(value) if value else None

    def sessions_valid_from(self, entry: Entry) -> datetime | None:
        value = entry.int("pwdLastSet")
        return filetime_to_datetime(value) if value is not None else None

    def disable(self, conn: Connection, entry: Entry) -> bool:
        uac = entry.int("userAccountControl") or NORMAL_ACCOUNT
        if uac & ACCOUNTDISABLE:
            return False
        conn.modify(
            entry.dn, {"userAccountControl": [(MODIFY_REPLACE, [str(uac | ACCOUNTDISABLE)])]}
        )
        return True

    def enable(self, conn: Connection, entry: Entry) -> bool:
        uac = entry.int("userAccountControl") or NORMAL_ACCOUNT
        if not uac & ACCOUNTDISABLE:
            return False
        conn.modify(
            entry.dn, {"userAccountControl": [(MODIFY_REPLACE, [str(uac & ~ACCOUNTDISABLE)])]}
        )
        return True

    def reset_password(
        self, conn: Connection, dn: str, password: str, *, disabled: bool = False
    ) -> None:
        # Twice, with two different secrets: AD and Samba still accept the *previous* password
        # for a while after a reset (NTLM's OldPasswordAllowedPeriod; Samba's simple binds
        # too), so after one reset the worker's own password would keep working. After two,
        # the previous password is a random one that nobody ever knew.
        for secret in (random_password(), password):
            conn.modify(dn, {"unicodePwd": [(MODIFY_REPLACE, [ad_password_value(secret)])]})

    def new_account(
        self, worker: Worker, correlation_value: str, password: str
    ) -> tuple[str, dict[str, Any], bool]:
        sam = worker.worker_id
        if not 1 <= len(sam) <= 20 or _SAM_FORBIDDEN.search(sam):
            raise DirectoryProblem(
                "worker id cannot be an AD sAMAccountName (1-20 characters, none of "
                '"/\\[]:;|=,+*?<>@): map it to another correlation_field'
            )
        cn = f"{worker.name} ({worker.worker_id})" if worker.name else worker.worker_id
        dn = f"CN={escape_dn_value(cn[:64])},{self.options.accounts_ou}"
        attrs: dict[str, Any] = {
            "objectClass": ["top", "person", "organizationalPerson", "user"],
            "sAMAccountName": sam,
            "displayName": worker.name or worker.worker_id,
            "userAccountControl": str(NORMAL_ACCOUNT),
            "unicodePwd": ad_password_value(password),
            "pwdLastSet": "0",  # the worker sets their own password at first sign-in
        }
        if worker.upn:
            attrs["userPrincipalName"] = worker.upn
        if worker.email:
            attrs["mail"] = worker.email
        attrs[self.options.correlation] = correlation_value
        return dn, attrs, False

    # ------------------------------------------------------------------ policy

    @property
    def _pso_dn(self) -> str:
        container = f"CN=Password Settings Container,CN=System,{self.options.domain_dn}"
        return f"CN={escape_dn_value(self.options.pso_name)},{container}"

    def _domain(self, conn: Connection) -> Entry:
        attrs = [
            *_DOMAIN_LOCKOUT,
            "maxPwdAge",
            "minPwdAge",
            "minPwdLength",
            "pwdHistoryLength",
            "pwdProperties",
        ]
        entry = read_entry(conn, self.options.domain_dn, attrs)
        if entry is None or entry.int("lockoutThreshold") is None:
            raise DirectoryProblem(f"cannot read the domain policy on {self.options.domain_dn}")
        return entry

    def _resultant_member(self, conn: Connection) -> tuple[str, str | None] | None:
        """A member of the VA group and its msDS-ResultantPSO, to prove the PSO applies."""
        group = self.options.va_group_dn
        if not group:
            return None
        members = search(
            conn,
            self.options.base_dn,
            f"(&{self.user_filter}(memberOf={escape_filter_value(group)}))",
            ["1.1"],
        )
        if not members:
            return None
        entry = read_entry(conn, members[0].dn, ["msDS-ResultantPSO"])
        return members[0].dn, entry.text("msDS-ResultantPSO") if entry else None

    def read_policy(self, conn: Connection) -> list[PolicySetting]:
        domain = self._domain(conn)
        where = f"domain root {self.options.domain_dn}"
        settings = [
            PolicySetting(Control.MFA, None, _MFA_NOTE),
            PolicySetting(
                Control.LOCKOUT_THRESHOLD,
                domain.int("lockoutThreshold"),
                f"{where} lockoutThreshold",
            ),
            PolicySetting(
                Control.LOCKOUT_WINDOW_MINUTES,
                _minutes(ad_interval_to_seconds(domain.int("lockOutObservationWindow") or 0)),
                f"{where} lockOutObservationWindow",
            ),
            PolicySetting(
                Control.LOCKOUT_DURATION_MINUTES,
                _minutes(ad_interval_to_seconds(domain.int("lockoutDuration") or 0)),
                f"{where} lockoutDuration (None: until an administrator unlocks)",
            ),
        ]
        if not self.options.va_group_dn:
            return settings
        pso = read_entry(conn, self._pso_dn, _PSO_ATTRS)
        if pso is None or pso.int("msDS-LockoutThreshold") is None:
            return settings
        resultant = self._resultant_member(conn)
        if resultant is None:
            proof = "no member of the VA group to confirm msDS-ResultantPSO"
        elif resultant[1] and normalize_dn(resultant[1]) == normalize_dn(pso.dn):
            proof = f"msDS-ResultantPSO confirmed on {resultant[0]}"
        else:
            proof = f"NOT resultant on {resultant[0]} (msDS-ResultantPSO={resultant[1]})"
        where = f"fine-grained policy {pso.dn} ({proof})"
        # Listed after the domain values: for the VA group the PSO is the one in force.
        settings += [
            PolicySetting(
                Control.LOCKOUT_THRESHOLD,
                pso.int("msDS-LockoutThreshold"),
                f"{where} msDS-LockoutThreshold",
            ),
            PolicySetting(
                Control.LOCKOUT_WINDOW_MINUTES,
                _minutes(ad_interval_to_seconds(pso.int("msDS-LockoutObservationWindow") or 0)),
                f"{where} msDS-LockoutObservationWindow",
            ),
            PolicySetting(
                Control.LOCKOUT_DURATION_MINUTES,
                _minutes(ad_interval_to_seconds(pso.int("msDS-LockoutDuration") or 0)),
                f"{where} msDS-LockoutDuration",
            ),
        ]
        return settings

    def _lockout_values(self, baseline: PolicyBaseline) -> tuple[str, str, str]:
        return (
            str(baseline.lockout_threshold),
            str(seconds_to_ad_interval(baseline.lockout_window_minutes * 60)),
            str(seconds_to_ad_interval(baseline.lockout_duration_minutes * 60)),
        )

    def apply_policy(self, conn: Connection, baseline: PolicyBaseline) -> dict[str, str]:
        if baseline.lockout_duration_minutes < baseline.lockout_window_minutes:
            raise DirectoryProblem("AD requires lockout_duration_minutes >= lockout_window_minutes")
        wanted = self._lockout_values(baseline)
        changed: dict[str, str] = {}
        domain = self._domain(conn)
        if self.options.manage_domain_policy:
            changes = {
                name: [(MODIFY_REPLACE, [value])]
                for name, value in zip(_DOMAIN_LOCKOUT, wanted, strict=True)
                if domain.text(name) != value
            }
            if changes:
                conn.modify(self.options.domain_dn, changes)
                changed.update(
                    {f"domain {n}": f"{domain.text(n)} -> {v[0][1][0]}" for n, v in changes.items()}
                )
            after = self._domain(conn)
            if tuple(after.text(n) for n in _DOMAIN_LOCKOUT) != wanted:
                raise DirectoryProblem("read-back of the domain lockout policy differs")
        if self.options.va_group_dn:
            changed.update(self._apply_pso(conn, domain, wanted))
        return changed

    def _apply_pso(
        self, conn: Connection, domain: Entry, wanted: tuple[str, str, str]
    ) -> dict[str, str]:
        group = self.options.va_group_dn
        assert group is not None
        if read_entry(conn, group, ["1.1"]) is None:
            raise DirectoryProblem(f"va_group_dn {group} does not exist")
        pso = read_entry(conn, self._pso_dn, _PSO_ATTRS)
        values = dict(zip(_PSO_LOCKOUT, wanted, strict=True))
        values["msDS-PasswordSettingsPrecedence"] = str(self.options.pso_precedence)
        changed: dict[str, str] = {}
        if pso is None:
            complexity = (domain.int("pwdProperties") or 0) & 1
            conn.add(
                self._pso_dn,
                ["top", "msDS-PasswordSettings"],
                {
                    **values,
                    "msDS-PSOAppliesTo": [group],
                    # The PSO replaces the whole domain policy for its members: copy the
                    # password rules so that only lockout is tightened.
                    "msDS-MaximumPasswordAge": domain.text("maxPwdAge"),
                    "msDS-MinimumPasswordAge": domain.text("minPwdAge"),
                    "msDS-MinimumPasswordLength": domain.text("minPwdLength"),
                    "msDS-PasswordHistoryLength": domain.text("pwdHistoryLength"),
                    "msDS-PasswordComplexityEnabled": "TRUE" if complexity else "FALSE",
                    "msDS-PasswordReversibleEncryptionEnabled": "FALSE",
                },
            )
            changed["pso"] = f"created {self._pso_dn}"
        else:
            changes: dict[str, Any] = {
                n: [(MODIFY_REPLACE, [v])] for n, v in values.items() if pso.text(n) != v
            }
            applies = {normalize_dn(dn) for dn in pso.texts("msDS-PSOAppliesTo")}
            if normalize_dn(group) not in applies:
                changes["msDS-PSOAppliesTo"] = [
                    (MODIFY_REPLACE, [*pso.texts("msDS-PSOAppliesTo"), group])
                ]
            if changes:
                conn.modify(pso.dn, changes)
                changed.update(
                    {f"pso {n}": f"{pso.text(n)} -> {v}" for n, v in values.items() if n in changes}
                )
        after = read_entry(conn, self._pso_dn, _PSO_ATTRS)
        if after is None or any(after.text(n) != v for n, v in values.items()):
            raise DirectoryProblem(f"read-back of {self._pso_dn} differs from what was written")
        resultant = self._resultant_member(conn)
        if resultant is not None:
            if not resultant[1] or normalize_dn(resultant[1]) != normalize_dn(self._pso_dn):
                raise DirectoryProblem(
                    f"msDS-ResultantPSO of {resultant[0]} is {resultant[1]}, not {self._pso_dn}: "
                    "a PSO with a lower msDS-PasswordSettingsPrecedence wins; lower pso_precedence"
                )
            changed["resultant_pso"] = f"confirmed on {resultant[0]}"
        return changed
