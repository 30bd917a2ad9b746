"""Joiner/mover chains: the engine's steps for ``onboard`` and ``transfer`` runs.

In each system the playbook (or the worker's old playbook) names, concurrently with the others:
create the account if the new role needs one and there is none -> remove role entitlements the
new role lacks -> add the ones it needs -> read back and verify. Removal comes before addition
(NIST PS-5: old access goes when new access is granted), and both are recorded. Entitlements no
playbook manages (a site-wide group, say) are left alone. The desired state comes from the run's
``plan_json``, fixed when the run was created; the difference is computed against a fresh read
at execution time, so a resumed or repeated run converges instead of replaying stale deltas.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from connectors.base import (
    Account,
    AccountState,
    Connector,
    DesiredAccess,
    Outcome,
    Worker,
    action_result,
)
from lifecycle.engine import readback_of, result_json
from lifecycle.exceptions import (
    ConnectorError,
    LifecycleError,
    PermanentConnectorError,
    TransientConnectorError,
)
from lifecycle.models import Run, Step, StepStatus
from lifecycle.playbooks import SystemDiff
from lifecycle.store import RunPlan

if TYPE_CHECKING:
    from lifecycle.engine import Engine


@dataclass(frozen=True, slots=True)
class SystemTarget:
    """One system's part of a joiner/mover plan."""

    entitlements: frozenset[str]
    account: bool
    """Whether the new role needs an account here (False: only the old role had access)."""
    managed: frozenset[str]

    @classmethod
    def of(cls, plan_json: str | None, system: str) -> SystemTarget:
        data = json.loads(plan_json or "{}").get("systems", {}).get(system)
        if data is None:
            return cls(frozenset(), False, frozenset())
        return cls(frozenset(data["entitlements"]), data["account"], frozenset(data["managed"]))

    def removals(self, held: frozenset[str]) -> frozenset[str]:
        return (held & self.managed) - self.entitlements

    def additions(self, held: frozenset[str]) -> frozenset[str]:
        return self.entitlements - held


def _problems(target: SystemTarget, state: AccountState) -> list[str]:
    held = state.entitlements
    problems = []
    if target.account and not state.enabled:
        problems.append(
            "the account is disabled (a rehire? the connector contract has no enable "
            "operation: enable it in the system, then apply the playbook again)"
        )
    if missing := target.additions(held):
        problems.append(f"missing {', '.join(sorted(missing))}")
    if extra := target.removals(held):
        problems.append(f"still holds {', '.join(sorted(extra))}")
    return problems


async def provision_chain(
    engine: Engine, run: Run, worker: Worker, name: str, steps: list[Step]
) -> None:
    """Execute (or resume) one system's joiner/mover chain, persisting every step."""
    started = await engine.chain_start(run, name, steps)
    if started is None:
        return
    connector, pending = started
    target = SystemTarget.of(run.plan_json, name)
    async with engine.limiters[name]:
        resolved, account = await _resolve(engine, run, worker, connector, steps)
        if not resolved:
            return
        if account is None and not target.account:
            for step in pending:
                step.started_at = step.finished_at = engine.clock()
                await engine._settle(step, StepStatus.NO_ACCOUNT)
            return
        chain = _Chain(engine, run, worker, connector, target, steps, account)
        for step in pending:
            if not await chain.step(step):
                # Later steps depend on this one: record them as not done, not as skipped.
                for rest in pending[pending.index(step) + 1 :]:
                    await engine._settle(
                        rest, StepStatus.FAILED, error=f"not attempted: {step.action} failed"
                    )
                return


async def _resolve(
    engine: Engine, run: Run, worker: Worker, connector: Connector, steps: list[Step]
) -> tuple[bool, Account | None]:
    """(resolved, the worker's account or None); not resolved: lookup failed, steps settled."""
    known = next((s for s in steps if s.account_id), None)
    if known is not None and known.account_id:
        return True, Account(
            connector.name, known.account_id, known.account_login, worker.worker_id
        )
    try:
        account: Account | None = await engine._call(
            connector, "find_account", None, lambda: connector.find_account(worker)
        )
    except ConnectorError as exc:
        for step in steps:
            await engine._settle(step, StepStatus.FAILED, error=f"find_account: {exc.message}")
        await engine._escalate(run, connector.name, "find_account", exc)
        return False, None
    if account is not None:
        await _link(engine, worker, account, steps)
    return True, account


async def _link(engine: Engine, worker: Worker, account: Account, steps: list[Step]) -> None:
    await engine.link(worker, account)
    for step in steps:
        step.account_id, step.account_login = account.account_id, account.login


class _Chain:
    def __init__(
        self,
        engine: Engine,
        run: Run,
        worker: Worker,
        connector: Connector,
        target: SystemTarget,
        steps: list[Step],
        account: Account | None,
    ) -> None:
        self.engine, self.run, self.worker = engine, run, worker
        self.connector, self.target, self.steps, self.account = connector, target, steps, account

    async def step(self, step: Step) -> bool:
        """Run one step; False when it failed (the chain stops)."""
        engine = self.engine
        step.started_at = engine.clock()
        actions: Mapping[str, Callable[[Step], Awaitable[StepStatus]]] = {
            "create_account": self._create,
            "remove_entitlements": self._remove,
            "add_entitlements": self._add,
            "verify": self._verify,
        }
        try:
            status = await actions[step.action](step)
            step.error = None
        except (LifecycleError, ConnectorError) as exc:
            step.finished_at = engine.clock()
            prefix = (
                f"gave up after {step.attempts} attempts: "
                if isinstance(exc, TransientConnectorError)
                else ""
            )
            await engine._settle(step, StepStatus.FAILED, error=prefix + exc.message)
            await engine._escalate(self.run, self.connector.name, step.action, exc)
            return False
        except Exception as exc:  # a connector bug must not lose the run
            step.finished_at = engine.clock()
            await engine._settle(
                step, StepStatus.FAILED, error=f"unexpected {type(exc).__name__} in connector"
            )
            await engine._escalate(self.run, self.connector.name, step.action, exc)
            return False
        step.finished_at = engine.clock()
        await engine._settle(step, status)
        return True

    def _need_account(self) -> Account:
        if self.account is None:
            raise PermanentConnectorError(
                "the worker has no account here", connector=self.connector.name
            )
        return self.account

    async def _read(self, step: Step) -> AccountState:
        account = self._need_account()
        state: AccountState = await self.engine._call(
            self.connector, step.action, step, lambda: self.connector.read_state(account)
        )
        return state

    async def _create(self, step: Step) -> StepStatus:
        if self.account is not None or not self.target.account:
            return StepStatus.NOT_APPLICABLE
        started = self.engine.clock()
        desired = DesiredAccess(self.target.entitlements)
        try:
            account: Account = await self.engine._call(
                self.connector,
                "create_account",
                step,
                lambda: self.connector.create_account(self.worker, desired),
            )
            outcome = Outcome.DONE
        except PermanentConnectorError:
            # A retried create whose first attempt did land reports "exists": adopt that one.
            found = await self.connector.find_account(self.worker)
            if found is None:
                raise
            account, outcome = found, Outcome.ALREADY
        self.account = account
        await _link(self.engine, self.worker, account, self.steps)
        step.result_json = result_json(
            action_result(
                "create_account",
                account,
                started,
                outcome,
                added=tuple(sorted(desired.entitlements)),
            )
        )
        return StepStatus.DONE

    async def _apply(self, step: Step, desired: Callable[[frozenset[str]], frozenset[str]]) -> Any:
        account = self._need_account()
        state = await self._read(step)
        wanted = DesiredAccess(desired(state.entitlements))
        result = await self.engine._call(
            self.connector,
            step.action,
            step,
            lambda: self.connector.apply_entitlements(account, wanted),
        )
        step.result_json = result_json(result)
        return StepStatus.DONE

    async def _remove(self, step: Step) -> StepStatus:
        status: StepStatus = await self._apply(step, lambda held: held - self.target.removals(held))
        return status

    async def _add(self, step: Step) -> StepStatus:
        status: StepStatus = await self._apply(step, lambda held: held | self.target.entitlements)
        return status

    async def _verify(self, step: Step) -> StepStatus:
        account = self._need_account()

        async def read_and_check() -> AccountState:
            state = await self.connector.read_state(account)
            if problems := _problems(self.target, state):
                raise TransientConnectorError(
                    "read-back does not match the playbook: " + "; ".join(problems),
                    connector=self.connector.name,
                    account_id=account.account_id,
                )
            return state

        state: AccountState = await self.engine._call(
            self.connector, "verify", step, read_and_check
        )
        step.readback_json = json.dumps(readback_of(state), sort_keys=True)
        return StepStatus.DONE


# ---------------------------------------------------------------------- dry run


async def plan_diff(
    connectors: Mapping[str, Connector], worker: Worker, plan: RunPlan
) -> list[SystemDiff]:
    """What executing ``plan`` would do in each system, read-only."""
    systems: Sequence[str] = sorted({s for s, _, _ in plan.steps})
    out: list[SystemDiff] = []

    async def one(name: str) -> None:
        target = SystemTarget.of(plan.plan_json, name)
        try:
            connector = connectors[name]
            account = await connector.find_account(worker)
            if account is None:
                out.append(
                    SystemDiff(
                        name,
                        None,
                        create=target.account,
                        add=tuple(sorted(target.entitlements)) if target.account else (),
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
        for name in systems:
            tg.start_soon(one, name)
    return sorted(out, key=lambda d: d.system)
