"""Active Directory and OpenLDAP, through ldap3: one connector class, two dialects.

The ``kind`` of the ``[connectors.<name>]`` table picks the dialect (``connectors.ldap.ad`` or
``connectors.ldap.openldap``); everything that is the same for both lives here: the bounded
connection pool in worker threads, escaping, error translation and the evidence of each change::

    [connectors.ad]
    kind = "ad"
    url = "ldaps://dc1.example.org:636"
    bind_dn = "CN=svc-lifecycle,OU=Service,DC=example,DC=org"
    bind_password = "env:AD_BIND_PASSWORD"
    base_dn = "DC=example,DC=org"
    user_ou = "OU=Virtual Assistants,DC=example,DC=org"
    group_ou = "OU=VA Groups,DC=example,DC=org"
    va_group_dn = "CN=Virtual Assistants,OU=VA Groups,DC=example,DC=org"
    ca_file = "/etc/ssl/certs/example-root-ca.pem"

    [connectors.ldap]
    kind = "openldap"
    url = "ldaps://ldap.example.org:636"
    bind_dn = "cn=lifecycle,ou=services,dc=example,dc=org"
    bind_password = "file:/run/secrets/ldap_bind_password"
    base_dn = "dc=example,dc=org"
    group_ou = "ou=groups,dc=example,dc=org"
    ppolicy_dn = "cn=default,ou=policies,dc=example,dc=org"
    ca_file = "/etc/ssl/certs/example-root-ca.pem"

A termination is ``disable`` (userAccountControl bit 0x2, or ppolicy's administrative lock),
``revoke_sessions`` (the password is reset to a random secret nobody keeps, so cached
credentials stop working), ``remove_access`` (every group membership, listed in the result so
that a wrongful termination can be undone) and ``read_state`` (a fresh read from the server).
The undo is ``enable`` (the disable mark lifted, nothing else) and ``restore_access`` (the
account added back to each group of the snapshot that still exists).

Retries: none here. Every call runs once; a transient failure (busy, unavailable, timeout,
dropped socket) is raised as ``TransientConnectorError`` for the service's executor to retry.
What stays is protocol-level: a pooled connection the server has already closed is replaced
before use (``connectors.ldap.pool``), and on OpenLDAP a password reset of a disabled account
puts the administrative lock straight back, remembered across the executor's attempts
(ppolicy clears the lock on every password change).
"""

from __future__ import annotations

import json
import logging
import math
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Self, TypeVar

from ldap3 import MODIFY_ADD, MODIFY_DELETE, NONE, Connection, Server, Tls
from ldap3.core.exceptions import (
    LDAPException,
    LDAPOperationResult,
)
from pydantic import SecretStr

from connectors._config import parse_options
from connectors.base import (
    Account,
    AccountState,
    ActionResult,
    Capability,
    Connector,
    ConnectorConfigError,
    ConnectorContext,
    ConnectorError,
    DesiredAccess,
    Outcome,
    PermanentConnectorError,
    PolicyBaseline,
    PolicyState,
    SkippedItem,
    TransientConnectorError,
    Worker,
    action_result,
    change_outcome,
    restore_result,
    sha256_hex,
    utcnow,
)
from connectors.ldap.ad import AdDialect
from connectors.ldap.dialect import Dialect, DirectoryProblem, Entry, groups_of, search
from connectors.ldap.errors import TRANSIENT_CODES, translate_error
from connectors.ldap.openldap import OpenLdapDialect
from connectors.ldap.options import LdapOptions
from connectors.ldap.pool import ConnectionPool, PoolStats
from connectors.ldap.values import (
    dn_is_under,
    escape_filter_value,
    normalize_dn,
    random_password,
)

T = TypeVar("T")
log = logging.getLogger("connectors.ldap")

#: How long (and for how many accounts) the start of a termination keeps its queue priority.
_PRIORITY_MEMORY_SECONDS = 600.0
_PRIORITY_MEMORY_ENTRIES = 10_000


def _refusal(exc: LDAPOperationResult) -> str:
    """Why the directory would not change a membership, for ``SkippedItem.reason``."""
    return {
        65: "the group must keep at least one member (groupOfNames)",
        50: "bind_dn lacks the right to change this group",
        53: "the directory will not change this membership",
    }.get(exc.result, f"{exc.description} ({exc.result})")


class LdapConnector(Connector):
    """Active Directory (kind ``ad``) or OpenLDAP (kind ``openldap``) via ldap3."""

    kind = "ldap"
    capabilities = frozenset(Capability)

    def __init__(self, name: str, options: LdapOptions, bind_password: SecretStr) -> None:
        super().__init__(name)
        self.options = options
        self.dialect: Dialect = (
            AdDialect(options) if options.kind == "ad" else OpenLdapDialect(options)
        )
        self._password = bind_password
        self._server = Server(
            options.host,
            port=options.port,
            use_ssl=options.use_ssl,
            tls=self._tls(),
            get_info=NONE,
            connect_timeout=options.timeout_seconds,
        )
        self._pool = ConnectionPool(self._connect, options.pool_size, options.max_idle_seconds)
        self._began: OrderedDict[str, float] = OrderedDict()
        self._relock: set[str] = set()
        """Accounts whose password was reset while disabled and whose lock is not yet known
        to be back (see ``revoke_sessions``)."""

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], context: ConnectorContext) -> Self:
        opts = parse_options(LdapOptions, name, options)
        if opts.ca_file is not None:
            ca_file = context.path(opts.ca_file)
            if not ca_file.is_file():
                raise ConnectorConfigError(
                    f"[connectors.{name}]: ca_file {ca_file} does not exist", connector=name
                )
            opts = opts.model_copy(update={"ca_file": ca_file})
        return cls(name, opts, context.secret(name, "bind_password", opts.bind_password))

    def _tls(self) -> Tls:
        opts = self.options
        return Tls(
            validate=ssl.CERT_REQUIRED if opts.tls_verify else ssl.CERT_NONE,
            ca_certs_file=str(opts.ca_file) if opts.ca_file else None,
            valid_names=[opts.tls_server_name] if opts.tls_server_name else None,
            version=ssl.PROTOCOL_TLS_CLIENT,
        )

    def _connect(self) -> Connection:
        """Open and bind one connection (runs in a worker thread)."""
        conn = Connection(
            self._server,
            user=self.options.bind_dn,
            password=self._password.get_secret_value(),
            raise_exceptions=True,
            # ldap3 packs this into SO_RCVTIMEO as whole seconds
            receive_timeout=max(1, math.ceil(self.options.timeout_seconds)),
            auto_referrals=False,
            read_only=False,
        )
        try:
            conn.open()
            if self.options.start_tls:
                conn.start_tls()
            conn.bind()
        except BaseException:
            # ldap3 leaves the socket of a failed open behind; close it rather than leak an fd.
            sock = getattr(conn, "socket", None)
            if sock is not None:
                sock.close()
            try:
                conn.unbind()
            except (LDAPException, OSError):
                log.debug(
                    "unbind after a failed connect failed too", extra={"connector": self.name}
                )
            raise
        return conn

    # ----------------------------------------------------------------- plumbing

    def _priority(self, key: str | None) -> float:
        """When the work on ``key`` (an account or worker id) began, for the pool's queue.

        Calls for a termination that started earlier go first, so that under a burst the
        earliest terminations complete first instead of all finishing together at the end.
        """
        now = time.monotonic()
        if key is None:
            return now
        began = self._began.get(key)
        if began is None or now - began > _PRIORITY_MEMORY_SECONDS:
            began = self._began[key] = now
            while len(self._began) > _PRIORITY_MEMORY_ENTRIES:
                self._began.popitem(last=False)
        return began

    async def _run(
        self, what: str, call: Callable[[Any], T], *, account_id: str | None = None
    ) -> T:
        """Run ``call(conn)`` once in a worker thread; translate every vendor error."""
        try:
            return await self._pool.run(call, self._priority(account_id))
        except DirectoryProblem as exc:
            raise PermanentConnectorError(
                f"{self.dialect.label}: {exc}", connector=self.name, account_id=account_id
            ) from exc
        except LDAPException as exc:
            raise self._translate(exc, what, account_id) from exc
        except (OSError, ssl.SSLError) as exc:
            raise TransientConnectorError(
                f"{self.dialect.label} at {self.options.url}: {what} failed: {exc}",
                connector=self.name,
                account_id=account_id,
            ) from exc
        except ConnectorError:
            raise
        except Exception as exc:  # ldap3 lets a few non-LDAP exceptions through
            raise PermanentConnectorError(
                f"{self.dialect.label} at {self.options.url}: {what} failed: "
                f"{type(exc).__name__}: {exc}",
                connector=self.name,
                account_id=account_id,
            ) from exc

    def _translate(
        self, exc: LDAPException, what: str, account_id: str | None
    ) -> TransientConnectorError | PermanentConnectorError:
        return translate_error(
            exc,
            what,
            connector=self.name,
            account_id=account_id,
            label=self.dialect.label,
            url=self.options.url,
            bind_dn=self.options.bind_dn,
        )

    def _entry(self, conn: Any, account: Account) -> Entry:
        """The account's entry, or a PermanentConnectorError when it is gone."""
        try:
            entry = self.dialect.lookup(conn, account.account_id)
        except ValueError:
            raise DirectoryProblem(
                f"{account.account_id!r} is not an account id of this directory"
            ) from None
        if entry is None:
            raise DirectoryProblem(f"account {account.account_id} no longer exists")
        return entry

    def _account(self, entry: Entry, worker_id: str | None = None) -> Account:
        return Account(
            self.name,
            self.dialect.account_id(entry),
            login=self.dialect.login(entry),
            worker_id=worker_id or entry.text(self.options.correlation),
        )

    def _state(self, entry: Entry, groups: list[str], worker_id: str | None = None) -> AccountState:
        tracked = self.options.sign_in_attribute is not None
        return AccountState(
            account=self._account(entry, worker_id),
            enabled=self.dialect.enabled(entry),
            read_at=utcnow(),
            locked=self.dialect.locked(entry),
            entitlements=frozenset(groups),
            last_sign_in=self.dialect.last_sign_in(entry) if tracked else None,
            sign_in_tracked=tracked,
            created_at=self.dialect.created_at(entry),
            sessions_valid_from=self.dialect.sessions_valid_from(entry),
        )

    @staticmethod
    def _digest(conn: Any) -> str:
        """SHA-256 of the server's last answer (result code, matched DN, diagnostic text)."""
        result = conn.result if isinstance(conn.result, dict) else {}
        body = {k: result.get(k) for k in ("result", "description", "dn", "message", "type")}
        return sha256_hex(json.dumps(body, sort_keys=True, default=str).encode())

    def _correlation_value(self, worker: Worker) -> str | None:
        field = self.options.correlation_field
        return {"worker_id": worker.worker_id, "email": worker.email, "upn": worker.upn}[field]

    # ----------------------------------------------------------------- the contract

    async def find_account(self, worker: Worker) -> Account | None:
        value = self._correlation_value(worker)
        if not value:
            return None
        attribute = self.options.correlation
        ldap_filter = f"(&{self.dialect.user_filter}({attribute}={escape_filter_value(value)}))"

        def call(conn: Any) -> list[Entry]:
            return search(conn, self.options.base_dn, ldap_filter, self.dialect.state_attributes())

        found = await self._run("find the account", call, account_id=worker.worker_id)
        if len(found) > 1:
            raise PermanentConnectorError(
                f"{self.dialect.label}: {len(found)} accounts share {attribute}; make it unique",
                connector=self.name,
                account_id=worker.worker_id,
            )
        if not found:
            return None
        account = self._account(found[0], worker.worker_id)
        self._began.setdefault(account.account_id, self._priority(worker.worker_id))
        return account

    async def read_state(self, account: Account) -> AccountState:
        def call(conn: Any) -> AccountState:
            entry = self._entry(conn, account)
            groups = groups_of(conn, self.options.membership_base, entry.dn)
            state = self._state(entry, groups, account.worker_id)
            if not state.enabled and not self.dialect.lock_effective(conn, entry):
                # Marked disabled, but the directory ignores the mark: report the truth.
                return replace(state, enabled=True)
            return state

        return await self._run("read the account", call, account_id=account.account_id)

    async def disable(self, account: Account) -> ActionResult:
        return await self._switch(account, enable=False)

    async def enable(self, account: Account) -> ActionResult:
        # The account is on again: a later password reset must not put a lock back.
        self._relock.discard(account.account_id)
        return await self._switch(account, enable=True)

    async def _switch(self, account: Account, *, enable: bool) -> ActionResult:
        """The dialect's disable mark (userAccountControl 0x2, or ppolicy's lock) on or off."""
        action = "enable" if enable else "disable"
        started = utcnow()

        def call(conn: Any) -> ActionResult:
            entry = self._entry(conn, account)
            switch = self.dialect.enable if enable else self.dialect.disable
            changed = switch(conn, entry)
            return action_result(
                action,
                account,
                started,
                Outcome.DONE if changed else Outcome.ALREADY,
                response_sha256=self._digest(conn) if changed else None,
            )

        return await self._run(f"{action} the account", call, account_id=account.account_id)

    async def revoke_sessions(self, account: Account) -> ActionResult:
        started = utcnow()
        key = account.account_id

        def call(conn: Any) -> ActionResult:
            entry = self._entry(conn, account)
            # On OpenLDAP a password change clears the lock. Whether the account was disabled
            # is remembered until the lock is known to be back, so that the executor's next
            # attempt after a reset whose re-lock failed does not see "enabled" and leave a
            # terminated account unlocked.
            disabled = key in self._relock or not self.dialect.enabled(entry)
            if disabled:
                self._relock.add(key)
            self.dialect.reset_password(conn, entry.dn, random_password(), disabled=disabled)
            self._relock.discard(key)
            return action_result(
                "revoke_sessions",
                account,
                started,
                Outcome.DONE,
                response_sha256=self._digest(conn),
                detail={"method": "password reset", "effect": self.dialect.revoke_note},
            )

        return await self._run("reset the password", call, account_id=account.account_id)

    async def remove_access(self, account: Account) -> ActionResult:
        started = utcnow()

        def call(conn: Any) -> ActionResult:
            entry = self._entry(conn, account)
            removed, skipped = self._remove_from(
                conn, entry.dn, groups_of(conn, self.options.membership_base, entry.dn)
            )
            outcome = change_outcome(bool(removed), bool(skipped))
            return action_result(
                "remove_access",
                account,
                started,
                outcome,
                removed=tuple(removed),
                skipped=tuple(skipped),
                response_sha256=sha256_hex(json.dumps(removed).encode()),
            )

        return await self._run("remove group memberships", call, account_id=account.account_id)

    async def restore_access(self, account: Account, snapshot: Sequence[str]) -> ActionResult:
        """Add the account back to every group of the snapshot that still exists; groups that
        are gone, outside the directory or refusing the change are reported, not fatal."""
        started = utcnow()

        def call(conn: Any) -> ActionResult:
            entry = self._entry(conn, account)
            held = {
                normalize_dn(g) for g in groups_of(conn, self.options.membership_base, entry.dn)
            }
            skipped: list[SkippedItem] = []
            changed = False
            for group in sorted(set(snapshot)):
                key = self._group_key(group)
                if key is None:
                    skipped.append(
                        SkippedItem(group, f"not a group under {self.options.membership_base}")
                    )
                elif key not in held:
                    try:
                        changed = self._add_to(conn, entry.dn, group) or changed
                    except DirectoryProblem:
                        skipped.append(SkippedItem(group, "the group no longer exists"))
                    except LDAPOperationResult as exc:
                        if exc.result in TRANSIENT_CODES:
                            raise
                        skipped.append(SkippedItem(group, _refusal(exc)))
            after = {
                normalize_dn(g) for g in groups_of(conn, self.options.membership_base, entry.dn)
            }
            return restore_result(
                account,
                started,
                snapshot,
                {g for g in snapshot if self._group_key(g) in after},
                skipped,
                changed=changed,
                response_sha256=self._digest(conn) if changed else None,
            )

        return await self._run("restore group memberships", call, account_id=account.account_id)

    def _memberships(self, conn: Any, member_dn: str) -> set[str]:
        """Normalised DNs of the groups holding ``member_dn`` (read from the server)."""
        return {normalize_dn(g) for g in groups_of(conn, self.options.membership_base, member_dn)}

    def _group_key(self, group: str) -> str | None:
        """The normalised DN of a group under the membership base, else ``None``."""
        try:
            if dn_is_under(group, self.options.membership_base):
                return normalize_dn(group)
        except Exception:  # ldap3 raises assorted types for text that is not a DN
            return None
        return None

    def _remove_from(
        self, conn: Any, member_dn: str, groups: list[str]
    ) -> tuple[list[str], list[SkippedItem]]:
        """Delete ``member_dn`` from each group; groups that refuse are reported, not fatal."""
        removed: list[str] = []
        skipped: list[SkippedItem] = []
        for group in groups:
            try:
                conn.modify(group, {"member": [(MODIFY_DELETE, [member_dn])]})
            except LDAPOperationResult as exc:
                if exc.result == 16:  # noSuchAttribute: someone removed it meanwhile
                    continue
                if exc.result in TRANSIENT_CODES:
                    raise
                skipped.append(SkippedItem(group, _refusal(exc)))
                continue
            removed.append(group)
        return removed, skipped

    async def apply_entitlements(self, account: Account, desired: DesiredAccess) -> ActionResult:
        started = utcnow()
        outside = [g for g in desired.entitlements if not self._under_group_ou(g)]
        if outside:
            raise PermanentConnectorError(
                f"{self.dialect.label}: groups outside group_ou {self.options.groups_ou} "
                f"cannot be granted: {', '.join(sorted(outside))}",
                connector=self.name,
                account_id=account.account_id,
            )

        def call(conn: Any) -> ActionResult:
            entry = self._entry(conn, account)
            current = {
                normalize_dn(g): g for g in groups_of(conn, self.options.membership_base, entry.dn)
            }
            wanted = {normalize_dn(g): g for g in desired.entitlements}
            drop = [current[k] for k in sorted(current.keys() - wanted.keys())]
            removed, skipped = self._remove_from(conn, entry.dn, drop)
            missing = [wanted[k] for k in sorted(wanted.keys() - current.keys())]
            added = [group for group in missing if self._add_to(conn, entry.dn, group)]
            outcome = change_outcome(bool(removed or added), bool(skipped))
            return action_result(
                "apply_entitlements",
                account,
                started,
                outcome,
                removed=tuple(removed),
                added=tuple(added),
                skipped=tuple(skipped),
            )

        return await self._run("change group memberships", call, account_id=account.account_id)

    @staticmethod
    def _add_to(conn: Any, member_dn: str, group: str) -> bool:
        """Add ``member_dn`` to ``group``; ``False`` if it was already there (a retried step)."""
        try:
            conn.modify(group, {"member": [(MODIFY_ADD, [member_dn])]})
        except LDAPOperationResult as exc:
            if exc.result in (20, 68):  # attributeOrValueExists (slapd), entryAlreadyExists (AD)
                return False
            if exc.result == 32:
                raise DirectoryProblem(
                    f"group {group} does not exist: fix the playbook or create the group"
                ) from exc
            raise
        return True

    def _under_group_ou(self, group: str) -> bool:
        try:
            return dn_is_under(group, self.options.groups_ou)
        except Exception:  # ldap3 raises assorted types for text that is not a DN
            return False

    async def create_account(self, worker: Worker, desired: DesiredAccess) -> Account:
        value = self._correlation_value(worker)
        if not value:
            raise PermanentConnectorError(
                f"worker has no {self.options.correlation_field} to store in "
                f"{self.options.correlation}",
                connector=self.name,
                account_id=worker.worker_id,
            )
        if await self.find_account(worker) is not None:
            raise PermanentConnectorError(
                "an account for this worker already exists",
                connector=self.name,
                account_id=worker.worker_id,
            )

        def call(conn: Any) -> Entry:
            password = random_password()
            dn, attrs, set_after = self.dialect.new_account(worker, value, password)
            object_class = attrs.pop("objectClass")
            conn.add(dn, object_class, attrs)
            if set_after:
                self.dialect.reset_password(conn, dn, password)
            found = search(
                conn,
                self.options.base_dn,
                f"(&{self.dialect.user_filter}"
                f"({self.options.correlation}={escape_filter_value(value)}))",
                self.dialect.state_attributes(),
            )
            if len(found) != 1:
                raise DirectoryProblem(f"created {dn} but could not read it back")
            return found[0]

        entry = await self._run("create the account", call, account_id=worker.worker_id)
        account = self._account(entry, worker.worker_id)
        if desired.entitlements:
            await self.apply_entitlements(account, desired)
        return account

    async def list_accounts(self) -> AsyncIterator[AccountState]:
        """Every person account under base_dn with its groups and last sign-in.

        Two paged searches (groups, then users) instead of one group search per account.
        ``enabled`` here is the disable mark as stored; ``read_state`` also checks that the
        directory honours it (OpenLDAP ppolicy with pwdLockout FALSE does not).
        """

        def call(conn: Any) -> tuple[list[Entry], dict[str, list[str]]]:
            members: dict[str, list[str]] = {}
            for group in search(
                conn, self.options.membership_base, "(member=*)", ["member"], paged=True
            ):
                for member in group.texts("member"):
                    members.setdefault(normalize_dn(member), []).append(group.dn)
            users = search(
                conn,
                self.options.base_dn,
                self.dialect.user_filter,
                self.dialect.state_attributes(),
                paged=True,
            )
            return users, members

        users, members = await self._run("list accounts", call)
        for entry in users:
            try:
                state = self._state(entry, sorted(members.get(normalize_dn(entry.dn), [])))
            except DirectoryProblem as exc:
                log.warning("skipping an entry", extra={"connector": self.name, "error": str(exc)})
                continue
            yield state

    async def read_policy(self) -> PolicyState:
        settings = await self._run("read the policy", self.dialect.read_policy)
        return PolicyState(system=self.name, settings=tuple(settings), read_at=utcnow())

    async def apply_policy(self, baseline: PolicyBaseline) -> ActionResult:
        started = utcnow()

        def call(conn: Any) -> dict[str, str]:
            return self.dialect.apply_policy(conn, baseline)

        changed = await self._run("apply the policy", call)
        return action_result(
            "apply_policy",
            Account(self.name, "policy"),
            started,
            Outcome.DONE if any(k != "resultant_pso" for k in changed) else Outcome.ALREADY,
            detail=changed,
        )

    def pool_stats(self) -> PoolStats:
        """Open and peak connections, for the benchmark and the bounded-pool test."""
        return self._pool.stats()

    async def aclose(self) -> None:
        await self._pool.aclose()
