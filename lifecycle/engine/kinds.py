"""Run kinds as data: each kind is a plan model plus a ``RunSpec`` that says which actions
every system gets, in order, what a failure does to the rest of that system's chain, and how
the run is measured and recorded. The step runner reads the spec; it has no branch per kind.

Adding a kind is a plan model (``lifecycle.domain.plans.Plan``) and a spec registered with
``Kinds.with_``; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from lifecycle.domain import (
    DisablePlan,
    NewRun,
    NewStep,
    OffboardPlan,
    OnboardPlan,
    Plan,
    PlanCodec,
    PolicyPlan,
    RestorePlan,
    ReverifyPlan,
    RunKind,
    StepAction,
    SuspendPlan,
    TransferPlan,
    WorkerStatus,
)
from lifecycle.engine.actions import (
    DISABLE,
    ENABLE,
    REMOVE_ACCESS,
    REVOKE_SESSIONS,
    Action,
    AddEntitlements,
    ApplyPolicy,
    CreateAccount,
    Reenable,
    RemoveEntitlements,
    RestoreAccess,
    VerifyDisabled,
    VerifyEntitlements,
    VerifyPolicy,
    VerifyRestored,
)
from lifecycle.exceptions import ConfigError


class OnFailure(StrEnum):
    CONTINUE = "continue"
    """The system's later steps still run (a termination removes what it can)."""
    STOP = "stop"
    """The system's later steps depend on this one: recorded failed, ``not attempted``."""


@dataclass(frozen=True, slots=True)
class RunSpec:
    kind: str
    plan: type[Plan]
    actions: tuple[Action, ...]
    """Every system's chain, in order; the last is the read-back that proves the run."""
    on_failure: OnFailure = OnFailure.CONTINUE
    find_account: bool = True
    """False: the system itself is the subject (policy), no account is looked up."""
    creates_account: Callable[[Plan, str], bool] | None = None
    """Whether a system where the worker has no account still runs its chain (a joiner)."""
    sla: bool = False
    """Counts toward the termination SLA: time to revoke, ``sla_met``, terminations.csv."""
    worker_status: str | None = None
    """The roster status a finished run (with accounts) leaves the worker in."""
    noun: str | None = None
    """How alerts name the run (default: its kind)."""
    record_added: bool = False
    """Evidence lists what each action added as well as what it removed (a mover)."""
    reversal: bool = False
    """Undoes an earlier run: its record names that record (``reverses``), the approval and
    the findings for review."""

    @property
    def verify(self) -> StepAction:
        return self.actions[-1].name

    def action(self, name: str) -> Action:
        for action in self.actions:
            if action.name == name:
                return action
        raise ConfigError(f"run kind {self.kind!r} has no action {name!r}")

    def steps(self, plan: Plan) -> tuple[NewStep, ...]:
        """One step per (system, action), in the order the chain runs them."""
        known = plan.accounts()
        steps = []
        for system in plan.systems():
            account = known.get(system)
            for position, action in enumerate(self.actions):
                steps.append(
                    NewStep(
                        system,
                        action.name,
                        position,
                        account.account_id if account else None,
                        account.login if account else None,
                    )
                )
        return tuple(steps)

    def describe(self) -> str:
        return self.noun or self.kind


TERMINATION: tuple[Action, ...] = (DISABLE, REVOKE_SESSIONS, REMOVE_ACCESS, VerifyDisabled())
SUSPENSION: tuple[Action, ...] = (DISABLE, REVOKE_SESSIONS, VerifyDisabled())
RESTORE: tuple[Action, ...] = (ENABLE, RestoreAccess(), REVOKE_SESSIONS, VerifyRestored())


def _needs_account(plan: Plan, system: str) -> bool:
    return isinstance(plan, OnboardPlan | TransferPlan) and plan.target(system).account


def builtin_specs() -> tuple[RunSpec, ...]:
    provisioning = (CreateAccount(), RemoveEntitlements(), AddEntitlements(), VerifyEntitlements())
    # A hire may be a rehire: an existing disabled account is re-enabled (sessions revoked
    # first) before the current playbook's entitlements are applied. A transfer never enables.
    joiner = (CreateAccount(), Reenable(), *provisioning[1:])
    return (
        RunSpec(
            RunKind.OFFBOARD,
            OffboardPlan,
            TERMINATION,
            sla=True,
            worker_status=WorkerStatus.TERMINATED,
            noun="termination",
        ),
        # Re-verification repeats the termination chain: every action is idempotent, so an
        # account found enabled again is disabled again by the same code and proven by the
        # same read-back (DESIGN: verify; disable again if found enabled, and alert).
        RunSpec(RunKind.REVERIFY, ReverifyPlan, TERMINATION, noun="re-verification"),
        RunSpec(
            RunKind.ONBOARD,
            OnboardPlan,
            joiner,
            on_failure=OnFailure.STOP,
            creates_account=_needs_account,
            record_added=True,
        ),
        RunSpec(
            RunKind.TRANSFER,
            TransferPlan,
            provisioning,
            on_failure=OnFailure.STOP,
            creates_account=_needs_account,
            record_added=True,
        ),
        RunSpec(
            RunKind.POLICY,
            PolicyPlan,
            (ApplyPolicy(), VerifyPolicy()),
            on_failure=OnFailure.STOP,
            find_account=False,
        ),
        RunSpec(RunKind.DISABLE, DisablePlan, SUSPENSION),
        RunSpec(
            RunKind.SUSPEND,
            SuspendPlan,
            SUSPENSION,
            worker_status=WorkerStatus.SUSPENDED,
            noun="suspension",
        ),
        RunSpec(
            RunKind.RESTORE,
            RestorePlan,
            RESTORE,
            on_failure=OnFailure.STOP,
            worker_status=WorkerStatus.ACTIVE,
            record_added=True,
            reversal=True,
        ),
    )


@dataclass(frozen=True)
class Kinds:
    """The registry the executor picks a run's spec from, by the run's kind."""

    specs: Mapping[str, RunSpec] = field(default_factory=dict)

    @classmethod
    def of(cls, specs: Iterable[RunSpec]) -> Kinds:
        return cls({spec.kind: spec for spec in specs})

    def with_(self, *specs: RunSpec) -> Kinds:
        return Kinds({**self.specs, **{spec.kind: spec for spec in specs}})

    def __getitem__(self, kind: str) -> RunSpec:
        try:
            return self.specs[kind]
        except KeyError:
            raise ConfigError(f"no run kind {kind!r} is registered") from None

    @property
    def plans(self) -> PlanCodec:
        """The codec that reads every registered kind's plans (the store is given this)."""
        builtin = {k.value for k in RunKind}
        return PlanCodec(spec.plan for spec in self.specs.values() if spec.kind not in builtin)

    def new_run(
        self,
        plan: Plan,
        *,
        worker_id: str,
        actor: str,
        source: str,
        source_event_id: str,
        payload_sha256: str,
        reason: str | None = None,
        effective_at: datetime | None = None,
        lease_owner: str | None = None,
        lease_until: datetime | None = None,
    ) -> NewRun:
        """The run for ``plan`` with its steps (one per system and action of its kind)."""
        return NewRun(
            kind=plan.kind,
            worker_id=worker_id,
            plan=plan,
            steps=self[plan.kind].steps(plan),
            actor=actor,
            source=source,
            source_event_id=source_event_id,
            payload_sha256=payload_sha256,
            reason=reason,
            effective_at=effective_at,
            lease_owner=lease_owner,
            lease_until=lease_until,
        )


def default_kinds() -> Kinds:
    return Kinds.of(builtin_specs())
