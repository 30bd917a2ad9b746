"""An in-process fake system, for the demo, the unit tests and the benchmarks.

It keeps accounts, groups and a policy in memory (optionally mirrored to a JSON state file so that
it behaves like an external system across service restarts), and it can inject per-call latency
and failures (transient, permanent, hang) to exercise the engine. It implements the whole
contract, the undo of a termination (``enable``, ``restore_access``) included.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from connectors._config import ConnectorOptions, parse_options
from connectors.base import (
    Account,
    AccountState,
    ActionResult,
    Capability,
    Connector,
    ConnectorContext,
    Control,
    DesiredAccess,
    Outcome,
    PermanentConnectorError,
    PolicyBaseline,
    PolicySetting,
    PolicyState,
    SkippedItem,
    TransientConnectorError,
    Worker,
    action_result,
    restore_result,
    sha256_hex,
    utcnow,
)

FaultMode = Literal["transient", "permanent", "hang"]


class Fault(BaseModel):
    """Inject a failure into calls of ``op`` (``"*"`` for all) for ``worker`` (or everyone)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: str = "*"
    mode: FaultMode = "transient"
    worker: str | None = None
    times: int | None = None
    """How many calls fail; ``None`` means every call."""
    retry_after: float | None = None


class MemoryOptions(ConnectorOptions):
    kind: Literal["memory"] = "memory"
    latency_ms: float = Field(default=0.0, ge=0)
    seed_workers: int = Field(default=0, ge=0)
    seed_groups: list[str] = Field(default_factory=lambda: ["all-staff"])
    domain: str = "example.org"
    state_file: Path | None = None
    faults: list[Fault] = Field(default_factory=list)
    has_sessions: bool = True
    policy: dict[Control, bool | int] = Field(default_factory=dict)
    """The system's policy settings at first start (the rest as ``DEFAULT_POLICY``); a state
    file, once written, keeps what was applied since."""


@dataclass
class MemoryAccount:
    account_id: str
    worker_id: str
    login: str
    email: str
    enabled: bool = True
    locked: bool = False
    groups: set[str] = field(default_factory=set)
    mfa_registered: bool = True
    last_sign_in: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)
    sessions_valid_from: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "account_id": self.account_id,
            "worker_id": self.worker_id,
            "login": self.login,
            "email": self.email,
            "enabled": self.enabled,
            "locked": self.locked,
            "groups": sorted(self.groups),
            "mfa_registered": self.mfa_registered,
            "last_sign_in": self.last_sign_in.isoformat() if self.last_sign_in else None,
            "created_at": self.created_at.isoformat(),
            "sessions_valid_from": (
                self.sessions_valid_from.isoformat() if self.sessions_valid_from else None
            ),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MemoryAccount:
        def ts(key: str) -> datetime | None:
            value = data.get(key)
            return datetime.fromisoformat(value) if value else None

        return cls(
            account_id=data["account_id"],
            worker_id=data["worker_id"],
            login=data["login"],
            email=data["email"],
            enabled=data["enabled"],
            locked=data.get("locked", False),
            groups=set(data.get("groups", [])),
            mfa_registered=data.get("mfa_registered", True),
            last_sign_in=ts("last_sign_in"),
            created_at=ts("created_at") or utcnow(),
            sessions_valid_from=ts("sessions_valid_from"),
        )


DEFAULT_POLICY: dict[str, bool | int] = {
    Control.MFA: True,
    Control.LOCKOUT_THRESHOLD: 5,
    Control.LOCKOUT_WINDOW_MINUTES: 15,
    Control.LOCKOUT_DURATION_MINUTES: 30,
    Control.SESSION_IDLE_MINUTES: 15,
    Control.SESSION_MAX_HOURS: 12,
    Control.INACTIVE_DISABLE_DAYS: 90,
}


class MemoryConnector(Connector):
    """A complete fake system held in memory (optionally persisted to ``state_file``)."""

    kind = "memory"
    capabilities = frozenset(Capability)

    def __init__(
        self,
        name: str,
        *,
        latency_ms: float = 0.0,
        faults: Sequence[Fault] = (),
        state_file: Path | None = None,
        has_sessions: bool = True,
        domain: str = "example.org",
    ) -> None:
        super().__init__(name)
        self.latency = latency_ms / 1000.0
        self.faults = list(faults)
        self.state_file = state_file
        self.has_sessions = has_sessions
        self.domain = domain
        self.accounts: dict[str, MemoryAccount] = {}
        self.groups: set[str] = set()
        self.policy: dict[str, bool | int] = dict(DEFAULT_POLICY)
        self.calls: Counter[str] = Counter()
        """Calls made, keyed ``"<op>"`` and ``"<op>:<worker_id>"``; persisted with the state."""
        self._fault_hits: Counter[int] = Counter()
        self._by_worker: dict[str, str] = {}
        self._loaded = False

    # ----------------------------------------------------------------- construction & seeding

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], context: ConnectorContext) -> Self:
        opts = parse_options(MemoryOptions, name, options)
        state_file = None if opts.state_file is None else context.path(opts.state_file)
        connector = cls(
            name,
            latency_ms=opts.latency_ms,
            faults=opts.faults,
            state_file=state_file,
            has_sessions=opts.has_sessions,
            domain=opts.domain,
        )
        if not connector.load():
            connector.policy.update(
                {control.value: value for control, value in opts.policy.items()}
            )
            connector.seed(opts.seed_workers, opts.seed_groups)
            connector.save()
        return connector

    def seed(self, workers: int, groups: Sequence[str]) -> None:
        """Create ``W0001``..``W<n>``, each enabled and in up to two of ``groups``."""
        self.groups.update(groups)
        ordered = sorted(groups)
        for n in range(1, workers + 1):
            worker_id = f"W{n:04d}"
            picked = {ordered[(n + k) % len(ordered)] for k in range(2)} if ordered else set()
            self.add_account(worker_id, groups=picked)

    def add_account(
        self,
        worker_id: str,
        *,
        email: str | None = None,
        groups: set[str] | None = None,
        enabled: bool = True,
        last_sign_in: datetime | None = None,
    ) -> MemoryAccount:
        """Put an account straight into the system (a test or seed back door)."""
        account_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.name}/{worker_id}"))
        login = f"{worker_id.lower()}@{self.domain}"
        account = MemoryAccount(
            account_id=account_id,
            worker_id=worker_id,
            login=login,
            email=email or login,
            enabled=enabled,
            groups=set(groups or ()),
            last_sign_in=last_sign_in,
        )
        self.groups.update(account.groups)
        self.accounts[account_id] = account
        return account

    def load(self) -> bool:
        if self.state_file is None or not self.state_file.exists():
            return False
        data = json.loads(self.state_file.read_text(encoding="utf-8"))
        self.accounts = {a["account_id"]: MemoryAccount.from_json(a) for a in data["accounts"]}
        self.groups = set(data.get("groups", []))
        self.policy.update(data.get("policy", {}))
        self.calls = Counter(data.get("calls", {}))
        return True

    def save(self) -> None:
        """Write the state atomically (temp file + rename), so a kill -9 never leaves half."""
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "accounts": [a.to_json() for a in self.accounts.values()],
            "groups": sorted(self.groups),
            "policy": self.policy,
            "calls": dict(self.calls),
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.state_file)

    # ----------------------------------------------------------------- the fake's behaviour

    async def _call(self, op: str, worker_id: str | None = None) -> None:
        """Count the call, wait the injected latency, then raise any matching fault."""
        self.calls[op] += 1
        if worker_id:
            self.calls[f"{op}:{worker_id}"] += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        for index, fault in enumerate(self.faults):
            if fault.op not in ("*", op) or (fault.worker and fault.worker != worker_id):
                continue
            if fault.times is not None and self._fault_hits[index] >= fault.times:
                continue
            self._fault_hits[index] += 1
            message = f"injected {fault.mode} fault in {op}"
            if fault.mode == "hang":
                await asyncio.Event().wait()
            if fault.mode == "permanent":
                raise PermanentConnectorError(message, connector=self.name, account_id=worker_id)
            raise TransientConnectorError(
                message, connector=self.name, account_id=worker_id, retry_after=fault.retry_after
            )

    def _get(self, account: Account) -> MemoryAccount:
        try:
            return self.accounts[account.account_id]
        except KeyError:
            raise PermanentConnectorError(
                "account no longer exists", connector=self.name, account_id=account.account_id
            ) from None

    def _account(self, acct: MemoryAccount) -> Account:
        return Account(self.name, acct.account_id, login=acct.login, worker_id=acct.worker_id)

    def _state(self, acct: MemoryAccount) -> AccountState:
        return AccountState(
            account=self._account(acct),
            enabled=acct.enabled,
            read_at=utcnow(),
            locked=acct.locked,
            entitlements=frozenset(acct.groups),
            mfa_registered=acct.mfa_registered,
            last_sign_in=acct.last_sign_in,
            sign_in_tracked=True,
            created_at=acct.created_at,
            sessions_valid_from=acct.sessions_valid_from,
        )

    @staticmethod
    def _digest(payload: Mapping[str, Any]) -> str:
        return sha256_hex(json.dumps(payload, sort_keys=True, default=str).encode())

    # ----------------------------------------------------------------- the contract

    async def find_account(self, worker: Worker) -> Account | None:
        await self._call("find_account", worker.worker_id)
        # A worker-id index keeps big fakes (benchmarks) cheap; tests may edit ``accounts``
        # directly, so a hit is re-checked and a miss falls back to the scan.
        hit = self.accounts.get(self._by_worker.get(worker.worker_id, ""))
        if hit is not None and hit.worker_id == worker.worker_id:
            return self._account(hit)
        email = (worker.email or "").casefold()
        self._by_worker = {a.worker_id: a.account_id for a in self.accounts.values()}
        for acct in self.accounts.values():
            if acct.worker_id == worker.worker_id or (email and acct.email.casefold() == email):
                return self._account(acct)
        return None

    async def read_state(self, account: Account) -> AccountState:
        await self._call("read_state", account.worker_id)
        return self._state(self._get(account))

    async def disable(self, account: Account) -> ActionResult:
        return await self._switch(account, enabled=False)

    async def enable(self, account: Account) -> ActionResult:
        return await self._switch(account, enabled=True)

    async def _switch(self, account: Account, *, enabled: bool) -> ActionResult:
        action = "enable" if enabled else "disable"
        started = utcnow()
        await self._call(action, account.worker_id)
        acct = self._get(account)
        outcome = Outcome.ALREADY if acct.enabled is enabled else Outcome.DONE
        acct.enabled = enabled
        self.save()
        return action_result(
            action,
            account,
            started,
            outcome,
            vendor_request_id=str(uuid.uuid4()),
            response_sha256=self._digest({"id": acct.account_id, "enabled": enabled}),
        )

    async def revoke_sessions(self, account: Account) -> ActionResult:
        started = utcnow()
        await self._call("revoke_sessions", account.worker_id)
        acct = self._get(account)
        if not self.has_sessions:
            return action_result("revoke_sessions", account, started, Outcome.NOT_APPLICABLE)
        acct.sessions_valid_from = utcnow()
        self.save()
        return action_result(
            "revoke_sessions",
            account,
            started,
            Outcome.DONE,
            vendor_request_id=str(uuid.uuid4()),
            response_sha256=self._digest({"value": True}),
        )

    async def remove_access(self, account: Account) -> ActionResult:
        started = utcnow()
        await self._call("remove_access", account.worker_id)
        acct = self._get(account)
        removed = tuple(sorted(acct.groups))
        acct.groups.clear()
        self.save()
        return action_result(
            "remove_access",
            account,
            started,
            Outcome.DONE if removed else Outcome.ALREADY,
            removed=removed,
            response_sha256=self._digest({"removed": removed}),
        )

    async def restore_access(self, account: Account, snapshot: Sequence[str]) -> ActionResult:
        started = utcnow()
        await self._call("restore_access", account.worker_id)
        acct = self._get(account)
        gone = [
            SkippedItem(g, "the group no longer exists") for g in snapshot if g not in self.groups
        ]
        back = {g for g in snapshot if g in self.groups} - acct.groups
        acct.groups |= back
        self.save()
        return restore_result(
            account,
            started,
            snapshot,
            acct.groups,
            gone,
            changed=bool(back),
            response_sha256=self._digest({"restored": sorted(back)}),
        )

    async def apply_entitlements(self, account: Account, desired: DesiredAccess) -> ActionResult:
        started = utcnow()
        await self._call("apply_entitlements", account.worker_id)
        acct = self._get(account)
        removed = tuple(sorted(acct.groups - desired.entitlements))
        added = tuple(sorted(desired.entitlements - acct.groups))
        acct.groups -= set(removed)
        acct.groups |= set(added)
        self.groups |= set(added)
        self.save()
        outcome = Outcome.DONE if (removed or added) else Outcome.ALREADY
        return action_result(
            "apply_entitlements", account, started, outcome, removed=removed, added=added
        )

    async def create_account(self, worker: Worker, desired: DesiredAccess) -> Account:
        await self._call("create_account", worker.worker_id)
        if await self._find_quiet(worker) is not None:
            raise PermanentConnectorError(
                "an account for this worker already exists",
                connector=self.name,
                account_id=worker.worker_id,
            )
        acct = self.add_account(
            worker.worker_id, email=worker.email, groups=set(desired.entitlements)
        )
        self.save()
        return self._account(acct)

    async def _find_quiet(self, worker: Worker) -> MemoryAccount | None:
        for acct in self.accounts.values():
            if acct.worker_id == worker.worker_id:
                return acct
        return None

    async def list_accounts(self) -> AsyncIterator[AccountState]:
        await self._call("list_accounts")
        for acct in list(self.accounts.values()):
            yield self._state(acct)

    async def read_policy(self) -> PolicyState:
        await self._call("read_policy")
        settings = tuple(
            PolicySetting(Control(key), value, source=f"memory:{self.name}.policy.{key}")
            for key, value in sorted(self.policy.items())
        )
        return PolicyState(system=self.name, settings=settings, read_at=utcnow())

    async def apply_policy(self, baseline: PolicyBaseline) -> ActionResult:
        started = utcnow()
        await self._call("apply_policy")
        wanted: dict[str, bool | int] = {
            Control.MFA: baseline.mfa_required,
            Control.LOCKOUT_THRESHOLD: baseline.lockout_threshold,
            Control.LOCKOUT_WINDOW_MINUTES: baseline.lockout_window_minutes,
            Control.LOCKOUT_DURATION_MINUTES: baseline.lockout_duration_minutes,
            Control.SESSION_IDLE_MINUTES: baseline.session_idle_minutes,
            Control.SESSION_MAX_HOURS: baseline.session_max_hours,
            Control.INACTIVE_DISABLE_DAYS: baseline.inactive_disable_days,
        }
        changed = {
            k: f"{self.policy.get(k)} -> {v}" for k, v in wanted.items() if self.policy.get(k) != v
        }
        self.policy.update(wanted)
        self.save()
        policy_account = Account(self.name, "policy")
        return action_result(
            "apply_policy",
            policy_account,
            started,
            Outcome.DONE if changed else Outcome.ALREADY,
            detail=changed,
        )
