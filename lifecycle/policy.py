"""Policy conformance: MFA, lockout, session and inactivity settings of every system.

What a system should enforce is the ``[policy]`` defaults tightened by every playbook that names
that system (the strictest wins, since one tenant-wide setting has to serve every role in it).
``check`` compares that with what each system reports, control by control, naming where each
value came from; ``enforce`` remediates through the connectors as a ``policy`` run, so the change
and its read-back land in the evidence log like any other run.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from connectors.base import Capability, Connector, Control, PolicyBaseline, PolicyState
from lifecycle.engine import result_json
from lifecycle.exceptions import ConnectorError, LifecycleError, TransientConnectorError
from lifecycle.models import Run, RunKind, Step, StepStatus
from lifecycle.playbooks import (
    PlaybookLibrary,
    at_least_as_strict,
    baseline_value,
    stricter,
)
from lifecycle.settings import PolicySettings
from lifecycle.store import RunPlan

if TYPE_CHECKING:
    from connectors.base import Worker
    from lifecycle.engine import Engine

CONTROLS: tuple[Control, ...] = (
    Control.MFA,
    Control.LOCKOUT_THRESHOLD,
    Control.LOCKOUT_WINDOW_MINUTES,
    Control.LOCKOUT_DURATION_MINUTES,
    Control.SESSION_IDLE_MINUTES,
    Control.SESSION_MAX_HOURS,
    Control.INACTIVE_DISABLE_DAYS,
)
DEFAULT_SOURCE = "config [policy]"
NO_WORKER = "-"
"""``worker_id`` of runs that concern a system rather than a worker."""


@dataclass(frozen=True, slots=True)
class Expected:
    value: bool | int
    source: str


@dataclass(frozen=True, slots=True)
class Finding:
    system: str
    control: str
    expected: bool | int
    expected_source: str
    actual: bool | int | str | None
    actual_source: str | None
    compliant: bool | None
    """None: the system does not report this control (or could not be read)."""
    note: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyReport:
    findings: list[Finding]
    checked_at: datetime
    run_ids: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[Finding]:
        return [f for f in self.findings if f.compliant is False]

    def systems_out_of_policy(self) -> list[str]:
        return sorted({f.system for f in self.failing})

    def as_json(self) -> dict[str, Any]:
        return {
            "checked_at": self.checked_at.isoformat().replace("+00:00", "Z"),
            "compliant": not self.failing,
            "findings": [asdict(f) for f in self.findings],
            "run_ids": self.run_ids,
        }


def expectations(
    policy: PolicySettings, library: PlaybookLibrary, systems: Sequence[str]
) -> dict[str, dict[str, Expected]]:
    """Per system and control: the value to enforce and where it comes from."""
    base = policy.baseline()
    out: dict[str, dict[str, Expected]] = {}
    for system in systems:
        controls = {c.value: Expected(baseline_value(base, c), DEFAULT_SOURCE) for c in CONTROLS}
        for book in library.playbooks.values():
            if system not in book.playbook.systems:
                continue
            tightened = book.baseline_for(base, system)
            for c in CONTROLS:
                value = baseline_value(tightened, c)
                if stricter(c, value, controls[c].value) != controls[c].value:
                    controls[c] = Expected(value, f"playbook {book.name} ({book.sha256[:12]})")
        out[system] = controls
    return out


def baseline_of(expected: Mapping[str, Expected]) -> PolicyBaseline:
    values: dict[str, Any] = {c: e.value for c, e in expected.items() if c != Control.MFA}
    return PolicyBaseline(mfa_required=bool(expected[Control.MFA].value), **values)


def _compare(system: str, expected: Mapping[str, Expected], state: PolicyState) -> list[Finding]:
    reported = {s.control.value: s for s in state.settings}
    findings = []
    for control, want in expected.items():
        setting = reported.get(control)
        if setting is None or setting.value is None:
            findings.append(
                Finding(system, control, want.value, want.source, None, None, None, "not reported")
            )
            continue
        actual = setting.value
        ok = (
            at_least_as_strict(control, actual, want.value)
            if isinstance(actual, bool | int)
            else None
        )
        findings.append(
            Finding(system, control, want.value, want.source, actual, setting.source, ok)
        )
    return findings


async def check(
    connectors: Mapping[str, Connector],
    expected: Mapping[str, Mapping[str, Expected]],
    now: datetime,
) -> PolicyReport:
    """Read every system's policy at once and compare it with what it should be."""
    findings: list[Finding] = []

    async def one(name: str, connector: Connector) -> None:
        want = expected[name]
        note = None
        if Capability.READ_POLICY not in connector.capabilities:
            note = "this connector cannot read policy settings"
        else:
            try:
                state = await connector.read_policy()
            except ConnectorError as exc:
                note = f"could not read policy: {exc.message}"
            else:
                findings.extend(_compare(name, want, state))
                return
        findings.extend(
            Finding(name, c, e.value, e.source, None, None, None, note) for c, e in want.items()
        )

    async with anyio.create_task_group() as tg:
        for name, connector in connectors.items():
            if name in expected:
                tg.start_soon(one, name, connector)
    order = {c.value: i for i, c in enumerate(CONTROLS)}
    findings.sort(key=lambda f: (f.system, order.get(f.control, 99)))
    return PolicyReport(findings, now)


def policy_version(expected: Mapping[str, Mapping[str, Expected]]) -> str:
    """SHA-256 of the expected settings: names the policy version a run enforced."""
    body = {s: {c: e.value for c, e in v.items()} for s, v in expected.items()}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def enforcement_plan(
    expected: Mapping[str, Mapping[str, Expected]], systems: Sequence[str]
) -> RunPlan:
    body = {
        "policy": {"name": "baseline", "sha256": policy_version(expected)},
        "baselines": {s: {c: e.value for c, e in expected[s].items()} for s in systems},
    }
    return RunPlan(
        kind=RunKind.POLICY,
        steps=[(s, a, i) for s in systems for i, a in enumerate(("apply_policy", "verify"))],
        plan_json=json.dumps(body, sort_keys=True),
    )


async def enforce(
    engine: Engine,
    expected: Mapping[str, Mapping[str, Expected]],
    *,
    actor: str,
    dry_run: bool = False,
) -> PolicyReport:
    """Check, and bring every out-of-policy system to its baseline in one ``policy`` run."""
    now = engine.clock()
    report = await check(engine.connectors, expected, now)
    targets = [
        s
        for s in report.systems_out_of_policy()
        if Capability.APPLY_POLICY in engine.connectors[s].capabilities
    ]
    if dry_run or not targets:
        return report
    plan = enforcement_plan(expected, targets)
    run: Run = await anyio.to_thread.run_sync(
        lambda: engine.store.create_run(
            NO_WORKER,
            plan,
            reason=f"policy out of baseline in {', '.join(targets)}",
            actor=actor,
            now=now,
            source="policy",
            source_event_id=f"enforce:{uuid.uuid4()}",
            lease_owner=engine.owner,
            lease_until=now + engine.config.lease,
            require_worker=False,
        )
    )
    await engine.execute_owned(run.id)
    after = await check(engine.connectors, expected, engine.clock())
    return PolicyReport(after.findings, after.checked_at, [run.id])


# ---------------------------------------------------------------------- the engine's chain


async def policy_chain(
    engine: Engine, run: Run, worker: Worker, name: str, steps: list[Step]
) -> None:
    """apply_policy -> verify (read back) in one system, for a ``policy`` run."""
    del worker  # a policy run concerns a system, not a worker
    raw = json.loads(run.plan_json or "{}")["baselines"][name]
    expected = {c: Expected(v, "run plan") for c, v in raw.items()}
    started = await engine.chain_start(run, name, steps)
    if started is None:
        return
    system: Connector = started[0]

    async def read_back() -> PolicyState:
        state = await system.read_policy()
        bad = [f for f in _compare(name, expected, state) if f.compliant is False]
        if bad:
            raise TransientConnectorError(
                "read-back still out of policy: "
                + ", ".join(f"{f.control}={f.actual}" for f in bad),
                connector=name,
            )
        return state

    async def apply(step: Step) -> None:
        if step.action == "apply_policy":
            result = await engine._call(
                system, "apply_policy", step, lambda: system.apply_policy(baseline_of(expected))
            )
            step.result_json = result_json(result)
        else:
            state: PolicyState = await engine._call(system, "verify", step, read_back)
            step.readback_json = json.dumps(
                {s.control.value: s.value for s in state.settings}, sort_keys=True
            )

    for step in steps:
        if StepStatus(step.status).settled:
            continue
        step.started_at = engine.clock()
        try:
            await apply(step)
        except (LifecycleError, ConnectorError) as exc:
            step.finished_at = engine.clock()
            await engine._settle(step, StepStatus.FAILED, error=exc.message)
            await engine._escalate(run, name, step.action, exc)
            for rest in steps[steps.index(step) + 1 :]:
                await engine._settle(rest, StepStatus.FAILED, error="not attempted")
            return
        step.error = None
        step.finished_at = engine.clock()
        await engine._settle(step, StepStatus.DONE)


def is_policy_run(steps: Sequence[Step]) -> bool:
    return any(s.action == "apply_policy" for s in steps)
