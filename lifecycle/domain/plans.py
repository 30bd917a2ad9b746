"""Typed plans: what a run is to achieve, fixed when the run is created so that a resumed run
does the same. One pydantic model per kind, told apart by ``kind`` (a discriminated union);
stored as JSON with the run and parsed in one place (``PlanCodec``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from lifecycle.exceptions import StoreError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class VersionRef(_Frozen):
    """A playbook or policy by name and the SHA-256 of its definition (named in evidence)."""

    name: str
    sha256: str


class AccountRef(_Frozen):
    account_id: str
    login: str | None = None


class Plan(_Frozen):
    """Base of every plan. ``systems()`` are the systems the run has steps in."""

    kind: str

    def systems(self) -> tuple[str, ...]:
        raise NotImplementedError

    @property
    def playbook(self) -> VersionRef | None:
        return None

    @property
    def previous_playbook(self) -> VersionRef | None:
        return None

    @property
    def policy(self) -> VersionRef | None:
        return None

    def accounts(self) -> Mapping[str, AccountRef]:
        """Systems whose account the plan already names (sweeps found it)."""
        return {}


class OffboardPlan(Plan):
    """A termination: every configured system, at once."""

    kind: Literal["offboard"] = "offboard"
    targets: tuple[str, ...]

    def systems(self) -> tuple[str, ...]:
        return self.targets


class ReverifyPlan(Plan):
    """A re-verification of termination ``of_run``, ``after_minutes`` after it finished."""

    kind: Literal["reverify"] = "reverify"
    targets: tuple[str, ...]
    of_run: str
    after_minutes: int

    def systems(self) -> tuple[str, ...]:
        return self.targets


class SystemTarget(_Frozen):
    """One system's part of a joiner/mover plan."""

    entitlements: tuple[str, ...]
    account: bool
    """Whether the new role needs an account here (False: only the old role had access)."""
    managed: tuple[str, ...]
    """Entitlements some playbook grants here; others (a site-wide group) are left alone."""

    @field_validator("entitlements", "managed")
    @classmethod
    def _sorted(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value)))  # one spelling of a plan: its JSON is stable

    def removals(self, held: frozenset[str]) -> frozenset[str]:
        return (held & frozenset(self.managed)) - frozenset(self.entitlements)

    def additions(self, held: frozenset[str]) -> frozenset[str]:
        return frozenset(self.entitlements) - held

    def problems(self, enabled: bool, held: frozenset[str]) -> list[str]:
        """Why a read-back does not match this target (empty: it does)."""
        problems = []
        if self.account and not enabled:
            problems.append(
                "the account is disabled: a playbook does not enable accounts (restore the "
                "worker, or rehire them with an HR hire, then apply the playbook)"
            )
        if missing := self.additions(held):
            problems.append(f"missing {', '.join(sorted(missing))}")
        if extra := self.removals(held):
            problems.append(f"still holds {', '.join(sorted(extra))}")
        return problems


class _ProvisionPlan(Plan):
    target_playbook: VersionRef = Field(alias="playbook")
    targets: dict[str, SystemTarget] = Field(alias="systems")

    def systems(self) -> tuple[str, ...]:
        return tuple(sorted(self.targets))

    @property
    def playbook(self) -> VersionRef | None:
        return self.target_playbook

    def target(self, system: str) -> SystemTarget:
        found = self.targets.get(system)
        return (
            found if found is not None else SystemTarget(entitlements=(), account=False, managed=())
        )


class OnboardPlan(_ProvisionPlan):
    """A joiner: accounts and entitlements of the role's playbook."""

    kind: Literal["onboard"] = "onboard"


class TransferPlan(_ProvisionPlan):
    """A mover: from the playbook the worker had to the new one (old access goes first)."""

    kind: Literal["transfer"] = "transfer"
    moved_from: VersionRef | None = Field(default=None, alias="from")

    @property
    def previous_playbook(self) -> VersionRef | None:
        return self.moved_from


class PolicyPlan(Plan):
    """Bring each system's MFA, lockout and session settings to its baseline."""

    kind: Literal["policy"] = "policy"
    enforced: VersionRef = Field(alias="policy")
    baselines: dict[str, dict[str, bool | int]]

    def systems(self) -> tuple[str, ...]:
        return tuple(sorted(self.baselines))

    @property
    def policy(self) -> VersionRef | None:
        return self.enforced


class DisablePlan(Plan):
    """Disable accounts a sweep found (dormant, or belonging to no active worker)."""

    kind: Literal["disable"] = "disable"
    enforced: VersionRef = Field(alias="policy")
    targets: dict[str, AccountRef] = Field(alias="accounts")
    why: dict[str, dict[str, str | int | bool]] = Field(default_factory=dict)
    """Per system, what the sweep saw (idle days and limit, or the orphan reason)."""

    def systems(self) -> tuple[str, ...]:
        return tuple(sorted(self.targets))

    @property
    def policy(self) -> VersionRef | None:
        return self.enforced

    def accounts(self) -> Mapping[str, AccountRef]:
        return self.targets


class SuspendPlan(Plan):
    """An incident suspension: every configured system, at once; access is kept."""

    kind: Literal["suspend"] = "suspend"
    targets: tuple[str, ...]

    def systems(self) -> tuple[str, ...]:
        return self.targets


class RestorePlan(Plan):
    """The undo of a termination or a suspension (run ``reverses``): in each system where that
    run found the worker's account, enable it and put back exactly what it removed.

    ``grants`` is what the worker's current playbook grants per system when the restore was
    requested (None: no playbook is known); a restored entitlement outside it is a finding for
    review (minimum necessary), never silently dropped."""

    kind: Literal["restore"] = "restore"
    reverses: str
    """The run this restore undoes."""
    reverses_kind: str
    reverses_seq: int | None = None
    """The evidence seq of that run's record (named by this run's record)."""
    targets: dict[str, AccountRef] = Field(alias="accounts")
    snapshot: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Per system, exactly what the reversed run removed (its ``remove_access`` result)."""
    grants: dict[str, tuple[str, ...]] | None = None
    current: VersionRef | None = Field(default=None, alias="playbook")

    def systems(self) -> tuple[str, ...]:
        return tuple(sorted(self.targets))

    def accounts(self) -> Mapping[str, AccountRef]:
        return self.targets

    @property
    def playbook(self) -> VersionRef | None:
        return self.current

    def not_granted(self, system: str, restored: Iterable[str]) -> tuple[str, ...]:
        """The restored entitlements the current playbook does not grant in ``system``."""
        granted = frozenset((self.grants or {}).get(system, ()))
        return tuple(sorted(set(restored) - granted))


BuiltinPlan = Annotated[
    OffboardPlan
    | ReverifyPlan
    | OnboardPlan
    | TransferPlan
    | PolicyPlan
    | DisablePlan
    | SuspendPlan
    | RestorePlan,
    Field(discriminator="kind"),
]
"""Every built-in plan: validating against this picks the model by ``kind``."""

_BUILTIN: TypeAdapter[BuiltinPlan] = TypeAdapter(BuiltinPlan)


class PlanCodec:
    """Plans to and from their stored JSON: the built-in union, plus the models of kinds
    registered beside it (``engine.kinds.Kinds``)."""

    def __init__(self, extra: Iterable[type[Plan]] = ()) -> None:
        self._extra: dict[str, type[Plan]] = {}
        for model in extra:
            kind = model.model_fields["kind"].default
            if not isinstance(kind, str):
                raise TypeError(f"{model.__name__}.kind needs a literal default")
            self._extra[kind] = model

    def dumps(self, plan: Plan) -> str:
        return plan.model_dump_json(by_alias=True)

    def loads(self, text: str) -> Plan:
        try:
            data: Any = json.loads(text)
            model = self._extra.get(str(data.get("kind"))) if isinstance(data, dict) else None
            if model is not None:
                return model.model_validate(data)
            plan: Plan = _BUILTIN.validate_python(data)
        except (ValueError, ValidationError) as exc:
            raise StoreError(f"a stored plan does not parse: {exc}") from exc
        return plan


def plan_digest(source: str, key: str, plan: Plan) -> str:
    """The ``payload_sha256`` of a run no HR payload started: its trigger and plan, hashed."""
    body = f"{source}:{key}:{plan.model_dump_json(by_alias=True)}"
    return hashlib.sha256(body.encode()).hexdigest()
