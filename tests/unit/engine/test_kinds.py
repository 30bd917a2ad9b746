"""Adding a run kind is a plan model plus a spec entry: the executor runs it unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest

from connectors.base import Capability
from lifecycle.domain import Plan, StepAction, readback_of
from lifecycle.engine.actions import Action, ActionContext, Done
from lifecycle.engine.kinds import OnFailure, RunSpec, default_kinds
from tests.unit.engine.harness import Harness, memory_systems

pytestmark = pytest.mark.anyio


class AuditPlan(Plan):
    """A throwaway kind: read every named system's account back, change nothing."""

    kind: Literal["audit"] = "audit"
    targets: tuple[str, ...]

    def systems(self) -> tuple[str, ...]:
        return self.targets


class ReadBack(Action):
    name = StepAction.VERIFY
    capability = Capability.READ_STATE

    async def run(self, ctx: ActionContext) -> Done:
        assert ctx.account is not None
        account = ctx.account
        return Done(readback=readback_of(await ctx.call(lambda: ctx.connector.read_state(account))))


AUDIT = RunSpec("audit", AuditPlan, (ReadBack(),), on_failure=OnFailure.STOP)


async def test_a_kind_registered_beside_the_builtins_runs_on_the_one_executor(
    tmp_path: Path,
) -> None:
    systems = memory_systems()
    kinds = default_kinds().with_(AUDIT)
    h = Harness(tmp_path, systems, kinds=kinds)
    new = kinds.new_run(
        AuditPlan(targets=("idp", "phone")),
        worker_id="W0002",
        actor="admin:test",
        source="admin",
        source_event_id="audit-1",
        payload_sha256="0" * 64,
        reason="quarterly access review",
    )
    run = h.store.create_run(new, h.clock())
    assert run.plan == AuditPlan(targets=("idp", "phone"))  # stored and parsed back, typed
    detail = await h.execute(run.id)
    assert (detail.run.kind, detail.run.status) == ("audit", "verified")
    assert [(s.system, s.action, s.status) for s in detail.steps] == [
        ("idp", "verify", "done"),
        ("phone", "verify", "done"),
    ]
    assert all(s.readback and s.readback["enabled"] is True for s in detail.steps)
    assert systems["ehr"].calls["find_account"] == 0  # not in the plan
    assert sum(c.calls["disable"] for c in systems.values()) == 0  # nothing changed
    [(_, body)] = list(h.store.evidence_records())
    record = json.loads(body)
    assert record["kind"] == "audit"
    assert record["computed"]["sla_met"] is None  # no SLA declared for this kind
    assert detail.run.time_to_revoke_ms is None


def test_every_builtin_kind_has_a_spec_and_a_plan_model() -> None:
    kinds = default_kinds()
    for kind in ("offboard", "reverify", "onboard", "transfer", "policy", "disable"):
        spec = kinds[kind]
        assert spec.plan.model_fields["kind"].default == kind
        assert spec.verify is StepAction.VERIFY  # every chain ends in its read-back
