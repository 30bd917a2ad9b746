"""Joiners and movers: which playbook run an HR event or an admin asks for, and what it would
change (read-only dry run).

The run itself is executed by the engine (``onboard`` / ``transfer`` kinds): in each system the
playbook (or the worker's old playbook) names, concurrently with the others, create the account
if the new role needs one and there is none -> remove role entitlements the new role lacks ->
add the ones it needs -> read back and verify. Removal comes before addition (NIST PS-5: old
access goes when new access is granted), and both are recorded. Entitlements no playbook
manages (a site-wide group, say) are left alone. The desired state is the run's typed plan,
fixed when the run was created; the difference is computed against a fresh read at execution
time, so a resumed or repeated run converges instead of replaying stale deltas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import anyio

from connectors import base
from connectors.base import Connector
from lifecycle.domain import OnboardPlan, TransferPlan, Worker, WorkerStatus
from lifecycle.exceptions import ConfigError, ConnectorError, NotFoundError, StateConflictError
from lifecycle.services.playbooks import LoadedPlaybook, PlaybookLibrary, SystemDiff

ProvisionPlan = OnboardPlan | TransferPlan


@dataclass(frozen=True, slots=True)
class PlaybookPlan:
    """What applying a playbook to a worker means: from which role to which, as a plan."""

    worker: Worker
    target: LoadedPlaybook
    previous: LoadedPlaybook | None
    plan: ProvisionPlan


def admin_plan(
    library: PlaybookLibrary,
    name: str,
    worker: Worker | None,
    worker_id: str,
    current: str | None,
    configured: list[str],
) -> PlaybookPlan:
    """The run that applying playbook ``name`` would create (an admin's request).

    The worker moves from the playbook they were last provisioned with (``current``), else from
    the one their HR job code maps to; re-applying the same playbook converges them onto it.
    Raises NotFoundError for an unknown playbook or worker.
    """
    if name not in library.playbooks:
        raise NotFoundError(
            f"no playbook named {name!r} (known: {', '.join(sorted(library.playbooks)) or 'none'})"
        )
    if worker is None:
        raise NotFoundError(f"worker {worker_id!r} is not in the workforce roster")
    target = library.get(name)
    previous = library.playbooks.get(current or "") or library.for_job_code(worker.job_code)
    if previous is not None and previous.name == target.name:
        previous = None
    try:
        plan = library.plan(target, previous, configured)
    except ConfigError as exc:
        raise NotFoundError(exc.message) from exc
    return PlaybookPlan(worker, target, previous, plan)


def refuse_disabled(worker: Worker) -> None:
    """A playbook is never applied to a terminated or suspended worker: it would grant access
    to disabled accounts. Raises StateConflictError saying what to do instead."""
    if worker.status in (WorkerStatus.TERMINATED, WorkerStatus.SUSPENDED):
        raise StateConflictError(
            f"worker {worker.worker_id} is {worker.status}: their accounts are disabled and a "
            "playbook does not enable accounts; restore them (lifecycle restore) or rehire them "
            "(an HR hire) first. Nothing was changed."
        )


async def disabled_accounts(
    connectors: Mapping[str, Connector], worker: base.Worker, plan: ProvisionPlan
) -> list[str]:
    """The systems where the role needs an account and the worker's existing one is off
    (read-only; a system that cannot be read is left to the run)."""
    found: list[str] = []

    async def one(name: str) -> None:
        connector = connectors.get(name)
        if connector is None or not plan.target(name).account:
            return
        try:
            account = await connector.find_account(worker)
            if account is not None and not (await connector.read_state(account)).enabled:
                found.append(name)
        except ConnectorError:
            return

    async with anyio.create_task_group() as tg:
        for name in plan.systems():
            tg.start_soon(one, name)
    return sorted(found)


def hr_plan(
    library: PlaybookLibrary,
    worker: Worker,
    previous_job_code: str | None,
    current: str | None,
    transfer: bool,
    configured: list[str],
) -> ProvisionPlan | None:
    """The joiner/mover plan for a hire or transfer the HR system reported, or None.

    A hire is a joiner (old access, if any, is stripped by the remove step anyway); a transfer
    moves from the playbook the worker was last provisioned with, else from the one their
    previous job code maps to. An unmapped job code, or no change of role, plans nothing.
    """
    target = library.for_job_code(worker.job_code)
    if target is None:
        return None
    previous = None
    if transfer:
        previous = library.playbooks.get(current or "") or library.for_job_code(previous_job_code)
    if previous is not None and previous.name == target.name:
        return None
    return library.plan(target, previous, configured)


async def plan_diff(
    connectors: Mapping[str, Connector], worker: base.Worker, plan: ProvisionPlan
) -> list[SystemDiff]:
    """What executing ``plan`` would do in each system, read-only."""
    out: list[SystemDiff] = []

    async def one(name: str) -> None:
        target = plan.target(name)
        try:
            connector = connectors[name]
            account = await connector.find_account(worker)
            if account is None:
                out.append(
                    SystemDiff(
                        name,
                        None,
                        create=target.account,
                        add=tuple(target.entitlements) if target.account else (),
                        remove=(),
                        keep=(),
                    )
                )
                return
            held = (await connector.read_state(account)).entitlements
            out.append(
                SystemDiff(
                    name,
                    account.account_id,
                    create=False,
                    add=tuple(sorted(target.additions(held))),
                    remove=tuple(sorted(target.removals(held))),
                    keep=tuple(sorted(held - target.removals(held))),
                )
            )
        except ConnectorError as exc:
            out.append(SystemDiff(name, None, False, (), (), (), error=exc.message))

    async with anyio.create_task_group() as tg:
        for name in plan.systems():
            tg.start_soon(one, name)
    return sorted(out, key=lambda d: d.system)
