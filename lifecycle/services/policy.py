"""Policy conformance: MFA, lockout, session and inactivity settings of every system.

What a system should enforce is the ``[policy]`` defaults tightened by every playbook that names
that system (the strictest wins, since one tenant-wide setting has to serve every role in it).
``check`` compares that with what each system reports, control by control, naming where each
value came from; ``enforce`` remediates through the connectors as a ``policy`` run executed by
the engine, so the change and its read-back land in the evidence log like any other run.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread

from connectors.base import Capability, Connector
from lifecycle.domain import PolicyPlan, VersionRef, iso_z, plan_digest
from lifecycle.domain.policy import CONTROLS, Finding, baseline_value, compare, stricter
from lifecycle.engine.executor import Executor
from lifecycle.exceptions import ConnectorError
from lifecycle.services.playbooks import PlaybookLibrary
from lifecycle.settings import PolicySettings
from lifecycle.store.ports import Runs

DEFAULT_SOURCE = "config [policy]"
NO_WORKER = "-"
"""``worker_id`` of runs that concern a system rather than a worker."""


@dataclass(frozen=True, slots=True)
class Expected:
    value: bool | int
    source: str


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
            "checked_at": iso_z(self.checked_at),
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
                findings.extend(
                    compare(name, {c: (e.value, e.source) for c, e in want.items()}, state)
                )
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
) -> PolicyPlan:
    return PolicyPlan(
        enforced=VersionRef(name="baseline", sha256=policy_version(expected)),
        baselines={s: {c: e.value for c, e in expected[s].items()} for s in systems},
    )


async def enforce(
    executor: Executor,
    runs: Runs,
    expected: Mapping[str, Mapping[str, Expected]],
    *,
    actor: str,
    dry_run: bool = False,
) -> PolicyReport:
    """Check, and bring every out-of-policy system to its baseline in one ``policy`` run."""
    now = executor.clock()
    report = await check(executor.connectors, expected, now)
    targets = [
        s
        for s in report.systems_out_of_policy()
        if Capability.APPLY_POLICY in executor.connectors[s].capabilities
    ]
    if dry_run or not targets:
        return report
    plan = enforcement_plan(expected, targets)
    key = f"enforce:{uuid.uuid4()}"
    new = executor.kinds.new_run(
        plan,
        worker_id=NO_WORKER,
        actor=actor,
        source="policy",
        source_event_id=key,
        payload_sha256=plan_digest("policy", key, plan),
        reason=f"policy out of baseline in {', '.join(targets)}",
        lease_owner=executor.owner,
        lease_until=now + executor.config.lease,
    )
    run = await anyio.to_thread.run_sync(runs.create_run, new, now)
    if run.lease is not None:
        await executor.execute_owned(run.lease)
    after = await check(executor.connectors, expected, executor.clock())
    return PolicyReport(after.findings, after.checked_at, [run.id])
