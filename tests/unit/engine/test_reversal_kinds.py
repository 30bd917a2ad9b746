"""The reversal kinds are data: their chains, failure policy, roster status and record options."""

from __future__ import annotations

from lifecycle.domain import (
    AccountRef,
    RestorePlan,
    RunStatus,
    StepAction,
    SuspendPlan,
    WorkerStatus,
)
from lifecycle.engine.kinds import OnFailure, default_kinds


def test_suspend_disables_and_revokes_and_keeps_access() -> None:
    spec = default_kinds()["suspend"]
    assert [a.name for a in spec.actions] == ["disable", "revoke_sessions", "verify"]
    assert StepAction.REMOVE_ACCESS not in [a.name for a in spec.actions]
    assert spec.on_failure is OnFailure.CONTINUE
    assert spec.worker_status == WorkerStatus.SUSPENDED
    assert not spec.sla  # only terminations count toward the SLA and terminations.csv


def test_restore_enables_restores_revokes_then_verifies_and_stops_a_system_on_failure() -> None:
    spec = default_kinds()["restore"]
    assert [a.name for a in spec.actions] == [
        "enable",
        "restore_access",
        "revoke_sessions",
        "verify",
    ]
    assert spec.on_failure is OnFailure.STOP
    assert spec.worker_status == WorkerStatus.ACTIVE
    assert spec.reversal and spec.record_added and not spec.sla


def test_a_rehire_reenables_in_the_joiner_chain_but_a_transfer_never_enables() -> None:
    kinds = default_kinds()
    assert [a.name for a in kinds["onboard"].actions] == [
        "create_account",
        "enable",
        "remove_entitlements",
        "add_entitlements",
        "verify",
    ]
    assert "enable" not in [a.name for a in kinds["transfer"].actions]


def test_a_restore_plan_steps_name_the_reversed_runs_accounts_and_round_trip() -> None:
    kinds = default_kinds()
    plan = RestorePlan(
        reverses="run-1",
        reverses_kind="offboard",
        reverses_seq=7,
        targets={
            "idp": AccountRef(account_id="a-1", login="w1"),
            "ehr": AccountRef(account_id="e-1"),
        },
        snapshot={"idp": ("g1", "g2")},
        grants={"idp": ("g1",)},
    )
    steps = kinds["restore"].steps(plan)
    assert {(s.system, s.account_id) for s in steps} == {("ehr", "e-1"), ("idp", "a-1")}
    assert len(steps) == 8
    assert kinds.plans.loads(kinds.plans.dumps(plan)) == plan
    assert plan.not_granted("idp", ["g1", "g2"]) == ("g2",)
    assert plan.not_granted("ehr", ["x"]) == ("x",)
    assert kinds.plans.loads(kinds.plans.dumps(SuspendPlan(targets=("idp",)))) == SuspendPlan(
        targets=("idp",)
    )


def test_awaiting_approval_is_not_finished_and_cancelled_is() -> None:
    assert not RunStatus.AWAITING_APPROVAL.finished
    assert RunStatus.CANCELLED.finished
