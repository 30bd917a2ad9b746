"""The connector contract: one async ABC that every target system implements.

The engine only ever talks to ``Connector``; no vendor library is imported outside the connector
modules, and this package imports nothing from ``lifecycle``. Every method translates vendor
errors into the tree below, raised ``from`` the vendor exception; no ``ldap3``, ``httpx`` or
``msal`` exception crosses a connector boundary::

    ConnectorError                    (carries connector name, account id and ``message``)
     ├── TransientConnectorError      (may succeed if retried; ``retry_after`` when the system
     │                                 said how long to wait)
     └── PermanentConnectorError      (retrying will not help until something is fixed)
          ├── UnsupportedOperationError  (the connector does not declare the capability)
          └── ConnectorConfigError       (invalid ``[connectors.<name>]`` options or a secret
                                          reference that cannot be resolved; from ``from_config``)

Each class's docstring is its default message. Connectors do not retry on their own: the
service's executor retries ``TransientConnectorError`` once, in one place, honouring
``retry_after``. A connector keeps only protocol-level handling and says so in its docstring.
"""

from __future__ import annotations

import abc
import hashlib
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from pydantic import SecretStr

# --------------------------------------------------------------------------- errors


class ConnectorError(Exception):
    """A connected system reported an error."""

    def __init__(
        self,
        message: str | None = None,
        *,
        connector: str = "?",
        account_id: str | None = None,
    ) -> None:
        self.connector = connector
        self.account_id = account_id
        self.message = self._where() + (message or (self.__class__.__doc__ or "").strip())
        super().__init__(self.message)

    def _where(self) -> str:
        """The prefix naming the connector (and account) in ``message``."""
        account = f" account {self.account_id}" if self.account_id else ""
        return f"[{self.connector}{account}] "


class TransientConnectorError(ConnectorError):
    """The connected system is temporarily unavailable; the call may succeed if retried."""

    def __init__(
        self,
        message: str | None = None,
        *,
        connector: str = "?",
        account_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        """Seconds the system asked us to wait (``Retry-After``), or ``None``."""
        super().__init__(message, connector=connector, account_id=account_id)


class PermanentConnectorError(ConnectorError):
    """The connected system refused the call; retrying will not help until something is fixed."""


class UnsupportedOperationError(PermanentConnectorError):
    """This connector does not support the operation."""


class ConnectorConfigError(PermanentConnectorError):
    """The connector's configuration is invalid."""

    def _where(self) -> str:
        # Config messages name the table themselves ("[connectors.<name>] option: problem").
        return ""


def utcnow() -> datetime:
    """Timezone-aware now; every timestamp in the service is UTC."""
    return datetime.now(UTC)


def sha256_hex(data: bytes) -> str:
    """SHA-256 of a raw vendor response body: evidence keeps the hash, never the body."""
    return hashlib.sha256(data).hexdigest()


class Capability(StrEnum):
    FIND_ACCOUNT = "find_account"
    READ_STATE = "read_state"
    DISABLE = "disable"
    ENABLE = "enable"
    REVOKE_SESSIONS = "revoke_sessions"
    REMOVE_ACCESS = "remove_access"
    RESTORE_ACCESS = "restore_access"
    APPLY_ENTITLEMENTS = "apply_entitlements"
    CREATE_ACCOUNT = "create_account"
    LIST_ACCOUNTS = "list_accounts"
    READ_POLICY = "read_policy"
    APPLY_POLICY = "apply_policy"


#: What a termination needs: every connector declares at least these.
OFFBOARDING = frozenset(
    {
        Capability.FIND_ACCOUNT,
        Capability.READ_STATE,
        Capability.DISABLE,
        Capability.REVOKE_SESSIONS,
        Capability.REMOVE_ACCESS,
    }
)
#: What undoing a termination needs (suspend/restore, a wrongful termination, a rehire).
REVERSAL = frozenset({Capability.ENABLE, Capability.RESTORE_ACCESS})


class Outcome(StrEnum):
    DONE = "done"
    """The system changed as requested."""
    ALREADY = "already"
    """The account was already in the requested state; nothing was changed."""
    PARTIAL = "partial"
    """Done, but some items were skipped (see ``ActionResult.skipped``)."""
    NOT_APPLICABLE = "not_applicable"
    """The system has no such concept (for example no sessions to revoke)."""


class Control(StrEnum):
    """Policy controls, named as in ``[policy]`` of the configuration."""

    MFA = "mfa"
    LOCKOUT_THRESHOLD = "lockout_threshold"
    LOCKOUT_WINDOW_MINUTES = "lockout_window_minutes"
    LOCKOUT_DURATION_MINUTES = "lockout_duration_minutes"
    SESSION_IDLE_MINUTES = "session_idle_minutes"
    SESSION_MAX_HOURS = "session_max_hours"
    INACTIVE_DISABLE_DAYS = "inactive_disable_days"


@dataclass(frozen=True, slots=True)
class Worker:
    """A member of the workforce, as the HR roster knows them."""

    worker_id: str
    email: str | None = None
    name: str | None = None
    upn: str | None = None
    engagement: str | None = None  # "employee" | "contractor"
    vendor: str | None = None
    job_code: str | None = None


@dataclass(frozen=True, slots=True)
class Account:
    """One account of a worker in one system."""

    system: str
    """Connector name (the key under ``[connectors]``)."""
    account_id: str
    """The system's stable identifier: objectGUID or DN, SCIM id, extension id."""
    login: str | None = None
    worker_id: str | None = None


@dataclass(frozen=True, slots=True)
class AccountState:
    """What a read-back of the system says about an account, at ``read_at``."""

    account: Account
    enabled: bool
    read_at: datetime
    locked: bool | None = None
    entitlements: frozenset[str] = frozenset()
    mfa_registered: bool | None = None
    last_sign_in: datetime | None = None
    """Last successful sign-in; ``None`` with ``sign_in_tracked`` means never signed in."""
    sign_in_tracked: bool = False
    """Whether the system reports sign-ins at all (else ``last_sign_in`` means unknown)."""
    created_at: datetime | None = None
    sessions_valid_from: datetime | None = None


@dataclass(frozen=True, slots=True)
class SkippedItem:
    item: str
    reason: str


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome of one change made in one system."""

    action: str
    account_id: str
    started_at: datetime
    finished_at: datetime
    outcome: Outcome
    vendor_request_id: str | None = None
    response_sha256: str | None = None
    removed: tuple[str, ...] = ()
    """What was taken away: from ``remove_access``, the snapshot ``restore_access`` takes."""
    added: tuple[str, ...] = ()
    """What was given: from ``restore_access``, every snapshot item held after the call."""
    skipped: tuple[SkippedItem, ...] = ()
    """What could not be removed (or restored), each with the reason."""
    detail: Mapping[str, str] = field(default_factory=dict)
    """Short non-sensitive notes, e.g. ``{"effective": "pending"}``; never secrets or bodies."""


@dataclass(frozen=True, slots=True)
class DesiredAccess:
    """Joiner/mover target: the entitlements (groups, roles, licences) an account should hold."""

    entitlements: frozenset[str] = frozenset()
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PolicyBaseline:
    """The settings a system should enforce (defaults: ../shared/reference/compliance.md)."""

    mfa_required: bool = True
    lockout_threshold: int = 5
    lockout_window_minutes: int = 15
    lockout_duration_minutes: int = 30
    session_idle_minutes: int = 15
    session_max_hours: int = 12
    inactive_disable_days: int = 90


@dataclass(frozen=True, slots=True)
class PolicySetting:
    control: Control
    value: bool | int | str | None
    source: str
    """Where the value was read, e.g. ``"domain root lockoutThreshold"``."""


@dataclass(frozen=True, slots=True)
class PolicyState:
    system: str
    settings: tuple[PolicySetting, ...]
    read_at: datetime


def resolve_secret(
    ref: str | SecretStr, *, what: str, allow_inline: bool = False, connector: str = "?"
) -> SecretStr:
    """Resolve a secret reference, ``env:NAME`` or ``file:/path``, to its value.

    Inline values are accepted only with ``allow_inline`` (demo mode). Raises
    ConnectorConfigError when the variable or file is missing or empty, or an inline value is
    refused; the message names ``what`` and the reference, never the value.
    """
    raw = ref.get_secret_value() if isinstance(ref, SecretStr) else ref

    def refused(problem: str) -> ConnectorConfigError:
        return ConnectorConfigError(f"{what}: {problem}", connector=connector)

    if raw.startswith("env:"):
        name = raw[4:]
        value = os.environ.get(name)
        if not value:
            raise refused(f"environment variable {name} is not set or empty")
        return SecretStr(value)
    if raw.startswith("file:"):
        path = Path(raw[5:])
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise refused(f"cannot read secret file {path}: {exc.strerror}") from exc
        if not value:
            raise refused(f"secret file {path} is empty")
        return SecretStr(value)
    if not allow_inline:
        raise refused("inline secrets are refused outside demo mode; use env:NAME or file:PATH")
    if not raw:
        raise refused("empty secret")
    return SecretStr(raw)


@dataclass(frozen=True, slots=True)
class ConnectorContext:
    """What the service hands every connector it builds."""

    allow_inline_secrets: bool = False
    """True only in demo mode: inline secrets in the configuration are accepted."""
    base_dir: Path = field(default_factory=Path.cwd)
    """Directory that relative paths in connector options are resolved against."""

    def secret(self, connector: str, option: str, ref: str | SecretStr) -> SecretStr:
        """The value of secret option ``option`` of ``[connectors.<connector>]``.

        Resolved while the connector is built, so a missing secret fails the configuration
        and not the first termination. Raises ConnectorConfigError.
        """
        return resolve_secret(
            ref,
            what=f"[connectors.{connector}] {option}",
            allow_inline=self.allow_inline_secrets,
            connector=connector,
        )

    def path(self, value: Path) -> Path:
        """``value`` resolved against ``base_dir`` when it is relative."""
        return value if value.is_absolute() else self.base_dir / value


def change_outcome(changed: bool, skipped: bool) -> Outcome:
    """``PARTIAL`` when items were skipped, else ``DONE`` or (nothing to change) ``ALREADY``."""
    if skipped:
        return Outcome.PARTIAL
    return Outcome.DONE if changed else Outcome.ALREADY


def restore_result(
    account: Account,
    started_at: datetime,
    snapshot: Sequence[str],
    held: frozenset[str] | set[str],
    skipped: Sequence[SkippedItem],
    *,
    changed: bool,
    **fields: Any,
) -> ActionResult:
    """The ``restore_access`` result: ``added`` is every snapshot item in ``held`` (the read
    back after the changes), ``skipped`` the given reasons plus, for any other item, that the
    read-back does not show it."""
    reasons = {s.item: s for s in skipped}
    added = tuple(sorted(item for item in set(snapshot) if item in held and item not in reasons))
    missing = sorted(set(snapshot) - set(added) - set(reasons))
    every_skip = tuple(
        sorted(
            [*reasons.values(), *(SkippedItem(i, "not held when read back") for i in missing)],
            key=lambda s: s.item,
        )
    )
    return action_result(
        "restore_access",
        account,
        started_at,
        change_outcome(changed, bool(every_skip)),
        added=added,
        skipped=every_skip,
        **fields,
    )


def action_result(
    action: str,
    account: Account,
    started_at: datetime,
    outcome: Outcome,
    **fields: Any,
) -> ActionResult:
    """Build an ``ActionResult`` finished now."""
    return ActionResult(
        action=action,
        account_id=account.account_id,
        started_at=started_at,
        finished_at=utcnow(),
        outcome=outcome,
        **fields,
    )


class Connector(abc.ABC):
    """One target system (identity provider, EHR, phone system).

    Connectors are async context managers: ``async with connector: ...`` releases clients and
    connection pools on exit. All methods are safe to call concurrently for different accounts.
    """

    kind: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    @abc.abstractmethod
    def from_config(cls, name: str, options: Mapping[str, Any], context: ConnectorContext) -> Self:
        """Build the connector from its ``[connectors.<name>]`` table.

        Raises ConnectorConfigError (naming the option) when the options are invalid or a secret
        reference cannot be resolved.
        """

    @abc.abstractmethod
    async def find_account(self, worker: Worker) -> Account | None:
        """Correlate a worker to this system's account; ``None`` when there is none.

        Every worker attribute placed into a vendor query is escaped for that query language.
        Raises TransientConnectorError / PermanentConnectorError.
        """

    @abc.abstractmethod
    async def read_state(self, account: Account) -> AccountState:
        """Read the account back from the system (never inferred from earlier calls).

        Raises PermanentConnectorError when the account no longer exists.
        """

    @abc.abstractmethod
    async def disable(self, account: Account) -> ActionResult:
        """Turn the account off (never delete it). Idempotent: ``ALREADY`` if already off."""

    async def enable(self, account: Account) -> ActionResult:
        """Turn the account back on: the undo of ``disable``, and nothing else (credentials,
        sessions and entitlements are left as they are). Idempotent: ``ALREADY`` if already on.

        Raises UnsupportedOperationError unless ``Capability.ENABLE`` is declared;
        PermanentConnectorError when the account no longer exists or the system keeps it off;
        TransientConnectorError when the system may answer later.
        """
        raise UnsupportedOperationError(connector=self.name, account_id=account.account_id)

    async def revoke_sessions(self, account: Account) -> ActionResult:
        """End sessions and refresh tokens, or reset credentials so cached ones stop working.

        Raises UnsupportedOperationError unless ``Capability.REVOKE_SESSIONS`` is declared.
        """
        raise UnsupportedOperationError(connector=self.name, account_id=account.account_id)

    async def remove_access(self, account: Account) -> ActionResult:
        """Drop groups, roles, licences, devices, forwarding; ``removed`` lists what went.

        Items the system will not let us remove (dynamic groups, group-assigned licences) are
        reported in ``skipped`` with the reason, and the outcome is ``PARTIAL``.
        """
        raise UnsupportedOperationError(connector=self.name, account_id=account.account_id)

    async def restore_access(self, account: Account, snapshot: Sequence[str]) -> ActionResult:
        """Put back what ``remove_access`` took: ``snapshot`` is its ``ActionResult.removed``.

        Every snapshot item ends in exactly one of ``added`` (the account holds it after the
        call: put back now, or already back) or ``skipped`` with the reason it cannot be put
        back (the group no longer exists, the licence is no longer subscribed, the system has
        no API for it, a credential only the worker can register). Nothing outside the
        snapshot is granted. Outcome: ``PARTIAL`` when anything was skipped, else ``DONE``, or
        ``ALREADY`` when nothing had to change (a retried call).

        Raises UnsupportedOperationError unless ``Capability.RESTORE_ACCESS`` is declared;
        PermanentConnectorError when the account no longer exists; TransientConnectorError when
        the system may answer later (items already put back are found held on the next call).
        """
        raise UnsupportedOperationError(connector=self.name, account_id=account.account_id)

    async def apply_entitlements(self, account: Account, desired: DesiredAccess) -> ActionResult:
        """Joiner/mover: make the account's entitlements equal ``desired``.

        Removes first, then adds; ``removed`` and ``added`` record both.
        """
        raise UnsupportedOperationError(connector=self.name, account_id=account.account_id)

    async def create_account(self, worker: Worker, desired: DesiredAccess) -> Account:
        """Joiner: create an enabled account for the worker holding ``desired``."""
        raise UnsupportedOperationError(connector=self.name, account_id=worker.worker_id)

    def list_accounts(self) -> AsyncIterator[AccountState]:
        """Every account in scope, with last sign-in, for reconciliation and inactivity sweeps."""
        raise UnsupportedOperationError(connector=self.name)

    async def read_policy(self) -> PolicyState:
        """The system's MFA, lockout and session settings, each with where it was read."""
        raise UnsupportedOperationError(connector=self.name)

    async def apply_policy(self, baseline: PolicyBaseline) -> ActionResult:
        """Bring the system's settings to ``baseline``; ``detail`` says what changed."""
        raise UnsupportedOperationError(connector=self.name)

    async def aclose(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release clients and pools. Safe to call twice."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header (delta-seconds or HTTP date) as seconds, or ``None``: what
    ``TransientConnectorError.retry_after`` carries (public: HR clients parse it too)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - utcnow()).total_seconds(), 0.0)
