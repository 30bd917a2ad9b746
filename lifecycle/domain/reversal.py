"""What a restore leaves for review: restored entitlements the worker's current playbook does not
grant (minimum necessary), and snapshot items a system could not put back (each with its
reason). Listed on the run and in its evidence record; computed from the run's plan and steps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lifecycle.domain.enums import StepAction, StepStatus
from lifecycle.domain.model import Step
from lifecycle.domain.plans import Plan, RestorePlan

NOT_GRANTED = "not_granted_by_playbook"
NOT_RESTORED = "not_restored"


@dataclass(frozen=True, slots=True)
class Finding:
    system: str
    entitlement: str
    kind: str
    """``not_granted_by_playbook`` or ``not_restored``."""
    detail: str

    def as_json(self) -> dict[str, str]:
        return {
            "system": self.system,
            "entitlement": self.entitlement,
            "kind": self.kind,
            "detail": self.detail,
        }


def findings(plan: Plan, steps: Sequence[Step]) -> list[Finding]:
    """The findings of a restore run (empty for every other kind)."""
    if not isinstance(plan, RestorePlan):
        return []
    playbook = plan.playbook.name if plan.playbook else None
    out: list[Finding] = []
    for step in sorted(steps, key=lambda s: (s.system, s.position)):
        if step.action != StepAction.RESTORE_ACCESS or step.status is not StepStatus.DONE:
            continue
        if step.result is None:
            continue
        for item in plan.not_granted(step.system, step.result.added):
            out.append(
                Finding(
                    step.system,
                    item,
                    NOT_GRANTED,
                    f"restored, but playbook {playbook} does not grant it: review"
                    if playbook
                    else "restored, but no current playbook is known for the worker: review",
                )
            )
        for skipped in step.result.skipped:
            item, _, reason = skipped.partition(": ")
            out.append(Finding(step.system, item, NOT_RESTORED, reason or "not restored"))
    return out
