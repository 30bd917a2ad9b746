"""What each step action calls on a connector, and how its result is read back and verified.

An action is a small object the step runner calls with an ``ActionContext``; it makes its
connector calls through ``ctx.call`` (the runner's timeout, retry and attempt counting) and
returns ``Done``. Raising ``ReadbackMismatchError`` (a transient error) from inside a call asks for
another attempt when a read-back does not yet show the intended state; a permanent connector
error fails the step.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from connectors import base
from connectors.base import Account, AccountState, Capability, Connector, DesiredAccess, Outcome
from lifecycle.domain import (
    Plan,
    PolicyPlan,
    RestorePlan,
    StepAction,
    StepResult,
    StepStatus,
    SystemTarget,
    readback_of,
)
from lifecycle.domain.plans import OnboardPlan, TransferPlan
from lifecycle.domain.policy import baseline_from, compare
from lifecycle.exceptions import PermanentConnectorError, ReadbackMismatchError

T = TypeVar("T")


class Call(Protocol):
    """One connector call under the runner's timeout, retries and attempt counting."""

    def __call__(self, call: Callable[[], Awaitable[T]]) -> Awaitable[T]: ...


@dataclass(frozen=True, slots=True)
class ActionContext:
    system: str
    connector: Connector
    worker: base.Worker
    plan: Plan
    account: Account | None
    call: Call
    results: Mapping[str, StepResult] = field(default_factory=dict)
    """What this system's earlier steps of the run reported, by action."""


@dataclass(frozen=True, slots=True)
class Done:
    """A step's outcome when it did not fail."""

    status: StepStatus = StepStatus.DONE
    result: StepResult | None = None
    readback: Mapping[str, Any] | None = None
    account: Account | None = None
    """An account the action created or adopted: linked to the worker, used by later steps."""


class Action(abc.ABC):
    name: StepAction
    capability: Capability | None = None
    """A connector without it records the step ``not_applicable`` (None: always attempted)."""
    needs_account: bool = True

    @abc.abstractmethod
    async def run(self, ctx: ActionContext) -> Done:
        """Do the action; raises ConnectorError (or anything a connector bug raises)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _account(ctx: ActionContext) -> Account:
    if ctx.account is None:
        raise PermanentConnectorError("the worker has no account here", connector=ctx.system)
    return ctx.account


def changed(result: base.ActionResult) -> Done:
    status = (
        StepStatus.NOT_APPLICABLE if result.outcome is Outcome.NOT_APPLICABLE else StepStatus.DONE
    )
    return Done(status, StepResult.of(result))


# ---------------------------------------------------------------------- turning access off


class Change(Action):
    """One connector call that changes the account (``disable``, ``revoke_sessions``,
    ``remove_access``): the step action names the connector method, as the ABC does."""

    def __init__(self, name: StepAction, capability: Capability) -> None:
        self.name, self.capability = name, capability

    async def run(self, ctx: ActionContext) -> Done:
        account = _account(ctx)
        method: Callable[[Account], Awaitable[base.ActionResult]] = getattr(
            ctx.connector, self.name.value
        )
        return changed(await ctx.call(lambda: method(account)))

    def __repr__(self) -> str:
        return f"Change({self.name.value})"


DISABLE = Change(StepAction.DISABLE, Capability.DISABLE)
ENABLE = Change(StepAction.ENABLE, Capability.ENABLE)
REVOKE_SESSIONS = Change(StepAction.REVOKE_SESSIONS, Capability.REVOKE_SESSIONS)
REMOVE_ACCESS = Change(StepAction.REMOVE_ACCESS, Capability.REMOVE_ACCESS)


class VerifyDisabled(Action):
    """Read the account back until it shows disabled."""

    name = StepAction.VERIFY
    capability = Capability.READ_STATE

    async def run(self, ctx: ActionContext) -> Done:
        account = _account(ctx)

        async def read() -> AccountState:
            state = await ctx.connector.read_state(account)
            if state.enabled:
                raise ReadbackMismatchError(
                    "read-back still shows the account enabled",
                    connector=ctx.system,
                    account_id=account.account_id,
                )
            return state

        return Done(readback=readback_of(await ctx.call(read)))


# ---------------------------------------------------------------------- giving access back


def _restore_plan(ctx: ActionContext) -> RestorePlan:
    if not isinstance(ctx.plan, RestorePlan):
        raise TypeError(f"{ctx.plan.kind} plans carry no snapshot")
    return ctx.plan


class RestoreAccess(Action):
    """Put back exactly the snapshot the reversed run removed here (nothing to put back after
    a suspension: not applicable)."""

    name = StepAction.RESTORE_ACCESS
    capability = Capability.RESTORE_ACCESS

    async def run(self, ctx: ActionContext) -> Done:
        account = _account(ctx)
        snapshot = _restore_plan(ctx).snapshot.get(ctx.system, ())
        if not snapshot:
            return Done(StepStatus.NOT_APPLICABLE)
        return changed(await ctx.call(lambda: ctx.connector.restore_access(account, snapshot)))


class VerifyRestored(Action):
    """Read the account back until it shows enabled and holding every snapshot item, except
    those the system reported it cannot put back (each listed with its reason)."""

    name = StepAction.VERIFY
    capability = Capability.READ_STATE

    async def run(self, ctx: ActionContext) -> Done:
        account = _account(ctx)
        restored = ctx.results.get(StepAction.RESTORE_ACCESS)
        cannot = {s.partition(": ")[0] for s in restored.skipped} if restored else set()
        expected = frozenset(_restore_plan(ctx).snapshot.get(ctx.system, ())) - cannot

        async def read() -> AccountState:
            state = await ctx.connector.read_state(account)
            problems = [] if state.enabled else ["the account is still disabled"]
            if missing := expected - state.entitlements:
                problems.append(f"missing {', '.join(sorted(missing))}")
            if problems:
                raise ReadbackMismatchError(
                    "read-back does not show the restore: " + "; ".join(problems),
                    connector=ctx.system,
                    account_id=account.account_id,
                )
            return state

        return Done(readback=readback_of(await ctx.call(read)))


class Reenable(Action):
    """A rehire: an existing account the new role needs, found disabled, has its sessions
    revoked (stale tokens and passwords from the old engagement stop working) and is enabled;
    its entitlements then come from the current playbook, never the old snapshot. Not
    applicable to an account that is on (a joiner, or a hire of an active worker)."""

    name = StepAction.ENABLE
    capability = Capability.ENABLE
    needs_account = False

    async def run(self, ctx: ActionContext) -> Done:
        account = ctx.account
        if account is None or not _target(ctx).account:
            return Done(StepStatus.NOT_APPLICABLE)
        state = await ctx.call(lambda: ctx.connector.read_state(account))
        if state.enabled:
            return Done(StepStatus.NOT_APPLICABLE)
        detail: dict[str, str] = {}
        if Capability.REVOKE_SESSIONS in ctx.connector.capabilities:
            revoked = await ctx.call(lambda: ctx.connector.revoke_sessions(account))
            detail["revoke_sessions"] = revoked.outcome.value
        result = await ctx.call(lambda: ctx.connector.enable(account))
        return Done(result=replace(StepResult.of(result), detail={**result.detail, **detail}))


# ---------------------------------------------------------------------- joiner / mover


def _target(ctx: ActionContext) -> SystemTarget:
    if not isinstance(ctx.plan, OnboardPlan | TransferPlan):
        raise TypeError(f"{ctx.plan.kind} plans have no playbook target")
    return ctx.plan.target(ctx.system)


class CreateAccount(Action):
    """Create the account the new role needs, if there is none (else not applicable)."""

    name = StepAction.CREATE_ACCOUNT
    needs_account = False

    async def run(self, ctx: ActionContext) -> Done:
        target = _target(ctx)
        if ctx.account is not None or not target.account:
            return Done(StepStatus.NOT_APPLICABLE)
        started = base.utcnow()
        desired = DesiredAccess(frozenset(target.entitlements))
        try:
            account = await ctx.call(lambda: ctx.connector.create_account(ctx.worker, desired))
            outcome = Outcome.DONE
        except PermanentConnectorError:
            # A retried create whose first attempt did land reports "exists": adopt that one.
            found = await ctx.connector.find_account(ctx.worker)
            if found is None:
                raise
            account, outcome = found, Outcome.ALREADY
        result = base.action_result(
            "create_account", account, started, outcome, added=tuple(target.entitlements)
        )
        return Done(result=StepResult.of(result), account=account)


class _Entitlements(Action):
    async def run(self, ctx: ActionContext) -> Done:
        account = _account(ctx)
        target = _target(ctx)
        state = await ctx.call(lambda: ctx.connector.read_state(account))
        wanted = DesiredAccess(self.desired(target, state.entitlements))
        result = await ctx.call(lambda: ctx.connector.apply_entitlements(account, wanted))
        return Done(result=StepResult.of(result))

    @abc.abstractmethod
    def desired(self, target: SystemTarget, held: frozenset[str]) -> frozenset[str]: ...


class RemoveEntitlements(_Entitlements):
    """Old role's entitlements go first (NIST PS-5), computed against a fresh read."""

    name = StepAction.REMOVE_ENTITLEMENTS

    def desired(self, target: SystemTarget, held: frozenset[str]) -> frozenset[str]:
        return held - target.removals(held)


class AddEntitlements(_Entitlements):
    name = StepAction.ADD_ENTITLEMENTS

    def desired(self, target: SystemTarget, held: frozenset[str]) -> frozenset[str]:
        return held | frozenset(target.entitlements)


class VerifyEntitlements(Action):
    """Read the account back until it matches the playbook."""

    name = StepAction.VERIFY

    async def run(self, ctx: ActionContext) -> Done:
        account = _account(ctx)
        target = _target(ctx)

        async def read() -> AccountState:
            state = await ctx.connector.read_state(account)
            if problems := target.problems(state.enabled, state.entitlements):
                raise ReadbackMismatchError(
                    "read-back does not match the playbook: " + "; ".join(problems),
                    connector=ctx.system,
                    account_id=account.account_id,
                )
            return state

        return Done(readback=readback_of(await ctx.call(read)))


# ---------------------------------------------------------------------- policy


def _baseline(ctx: ActionContext) -> dict[str, bool | int]:
    if not isinstance(ctx.plan, PolicyPlan):
        raise TypeError(f"{ctx.plan.kind} plans carry no policy baseline")
    return ctx.plan.baselines[ctx.system]


class ApplyPolicy(Action):
    name = StepAction.APPLY_POLICY
    needs_account = False

    async def run(self, ctx: ActionContext) -> Done:
        baseline = baseline_from(_baseline(ctx))
        result = await ctx.call(lambda: ctx.connector.apply_policy(baseline))
        return Done(result=StepResult.of(result))


class VerifyPolicy(Action):
    """Read the system's settings back until every control is at least as strict."""

    name = StepAction.VERIFY
    needs_account = False

    async def run(self, ctx: ActionContext) -> Done:
        expected = {c: (v, "run plan") for c, v in _baseline(ctx).items()}

        async def read() -> base.PolicyState:
            state = await ctx.connector.read_policy()
            bad = [f for f in compare(ctx.system, expected, state) if f.compliant is False]
            if bad:
                raise ReadbackMismatchError(
                    "read-back still out of policy: "
                    + ", ".join(f"{f.control}={f.actual}" for f in bad),
                    connector=ctx.system,
                )
            return state

        state = await ctx.call(read)
        return Done(readback={s.control.value: s.value for s in state.settings})
