"""The connector contract suite: one set of tests that every connector must pass.

``tests/contract/test_connectors.py`` runs it with the ``harness`` fixture of
``tests/contract/conftest.py``, parametrised over every connector: each parameter is a
``ContractHarness`` for a live system (a real server where one can run here). A new connector
adds one entry to ``tests/contract/harnesses.py``.
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Awaitable, Sequence
from datetime import UTC

import pytest

from connectors.base import (
    Account,
    Capability,
    Connector,
    ConnectorError,
    DesiredAccess,
    Outcome,
    PermanentConnectorError,
    UnsupportedOperationError,
    Worker,
)

#: Values that would widen an unescaped LDAP, SCIM or OData filter.
HOSTILE_IDS = ("*", "*)(uid=*", 'x" or "1" eq "1', "' or 1 eq 1 or '", "a\\*b\x00")


class ContractHarness(abc.ABC):
    """A live target system with a connector pointed at it."""

    connector: Connector
    groups: tuple[str, ...]
    """At least two entitlements that exist in the system, as the connector names them."""
    missing_entitlement: str
    """An entitlement named the connector's way that does not exist in the system (a group
    deleted since the snapshot was taken)."""

    def new_worker(self) -> Worker:
        """A worker unknown to the system so far (override for systems with id rules)."""
        suffix = uuid.uuid4().hex[:8]
        return Worker(
            worker_id=f"T{suffix}",
            email=f"t{suffix}@example.org",
            name=f"Test {suffix}",
            upn=f"t{suffix}@example.org",
        )

    @abc.abstractmethod
    async def seed(self, worker: Worker, groups: Sequence[str]) -> None:
        """Create an enabled account for ``worker`` in ``groups`` directly in the system,
        without going through the connector under test."""


class ConnectorContract:
    """Every test here runs against the ``harness`` fixture (tests/contract/conftest.py).
    Operations a connector does not declare in ``capabilities`` must raise
    UnsupportedOperationError (nothing is skipped)."""

    pytestmark = [pytest.mark.anyio]

    async def _seeded(self, harness: ContractHarness, groups: Sequence[str] = ()) -> Account:
        worker = harness.new_worker()
        await harness.seed(worker, list(groups))
        account = await harness.connector.find_account(worker)
        assert account is not None, "a seeded account must be found"
        return account

    async def test_finds_a_seeded_account(self, harness: ContractHarness) -> None:
        worker = harness.new_worker()
        await harness.seed(worker, [])
        account = await harness.connector.find_account(worker)
        assert account is not None
        assert account.system == harness.connector.name
        state = await harness.connector.read_state(account)
        assert state.enabled is True
        assert state.read_at.tzinfo is not None

    async def test_unknown_worker_is_not_found(self, harness: ContractHarness) -> None:
        assert await harness.connector.find_account(harness.new_worker()) is None

    @pytest.mark.parametrize("hostile", HOSTILE_IDS)
    async def test_hostile_identifiers_match_nothing(
        self, harness: ContractHarness, hostile: str
    ) -> None:
        await self._seeded(harness)
        worker = Worker(worker_id=hostile, email=hostile, upn=hostile, name=hostile)
        try:
            found = await harness.connector.find_account(worker)
        except PermanentConnectorError:
            return  # refusing the value outright is as good as matching nothing
        assert found is None

    async def test_disable_is_read_back_as_disabled(self, harness: ContractHarness) -> None:
        account = await self._seeded(harness)
        result = await harness.connector.disable(account)
        assert result.outcome == Outcome.DONE
        assert result.account_id == account.account_id
        assert result.started_at.tzinfo == UTC and result.finished_at >= result.started_at
        state = await harness.connector.read_state(account)
        assert state.enabled is False

    async def test_disable_is_idempotent(self, harness: ContractHarness) -> None:
        account = await self._seeded(harness)
        await harness.connector.disable(account)
        again = await harness.connector.disable(account)
        assert again.outcome in (Outcome.ALREADY, Outcome.DONE)
        assert (await harness.connector.read_state(account)).enabled is False

    async def test_revoke_sessions(self, harness: ContractHarness) -> None:
        account = await self._seeded(harness)
        if Capability.REVOKE_SESSIONS not in harness.connector.capabilities:
            await _refused(harness.connector.revoke_sessions(account))
            return
        result = await harness.connector.revoke_sessions(account)
        assert result.outcome in (Outcome.DONE, Outcome.NOT_APPLICABLE)

    async def test_remove_access_lists_what_it_removed(self, harness: ContractHarness) -> None:
        groups = harness.groups[:2]
        account = await self._seeded(harness, groups)
        if Capability.REMOVE_ACCESS not in harness.connector.capabilities:
            await _refused(harness.connector.remove_access(account))
            return
        before = await harness.connector.read_state(account)
        assert before.entitlements >= set(groups)
        result = await harness.connector.remove_access(account)
        assert set(groups) <= set(result.removed) | {s.item for s in result.skipped}
        after = await harness.connector.read_state(account)
        skipped = {s.item for s in result.skipped}
        assert after.entitlements <= skipped

    async def test_enable_undoes_disable(self, harness: ContractHarness) -> None:
        account = await self._seeded(harness)
        if Capability.ENABLE not in harness.connector.capabilities:
            await _refused(harness.connector.enable(account))
            return
        already = await harness.connector.enable(account)
        assert already.outcome == Outcome.ALREADY
        await harness.connector.disable(account)
        assert (await harness.connector.read_state(account)).enabled is False
        result = await harness.connector.enable(account)
        assert result.outcome == Outcome.DONE
        assert result.account_id == account.account_id and result.started_at.tzinfo == UTC
        assert (await harness.connector.read_state(account)).enabled is True
        again = await harness.connector.enable(account)
        assert again.outcome == Outcome.ALREADY
        assert (await harness.connector.read_state(account)).enabled is True

    async def test_restore_gives_back_exactly_what_remove_access_took(
        self, harness: ContractHarness
    ) -> None:
        """disable -> remove_access -> enable -> restore_access, proven by read-backs."""
        groups = harness.groups[:2]
        account = await self._seeded(harness, groups)
        caps = harness.connector.capabilities
        if Capability.RESTORE_ACCESS not in caps:
            await _refused(harness.connector.restore_access(account, groups))
            return
        before = await harness.connector.read_state(account)
        await harness.connector.disable(account)
        removal = await harness.connector.remove_access(account)
        assert set(groups) <= set(removal.removed)
        await harness.connector.enable(account)
        result = await harness.connector.restore_access(account, removal.removed)
        assert result.action == "restore_access" and result.account_id == account.account_id
        lost = {s.item for s in result.skipped}
        assert all(s.reason for s in result.skipped)
        # Every snapshot item is accounted for: held again, or reported with the reason.
        assert set(result.added) | lost == set(removal.removed)
        assert not set(result.added) & lost
        assert result.outcome == (Outcome.PARTIAL if lost else Outcome.DONE)
        after = await harness.connector.read_state(account)
        assert after.enabled is True
        assert set(groups) <= after.entitlements
        assert after.entitlements == before.entitlements - lost
        again = await harness.connector.restore_access(account, removal.removed)
        assert again.outcome == (Outcome.PARTIAL if lost else Outcome.ALREADY)
        assert set(again.added) == set(result.added)
        assert (await harness.connector.read_state(account)).entitlements == after.entitlements

    async def test_restore_reports_each_item_it_cannot_put_back(
        self, harness: ContractHarness
    ) -> None:
        first = harness.groups[0]
        account = await self._seeded(harness, [first])
        if Capability.RESTORE_ACCESS not in harness.connector.capabilities:
            await _refused(harness.connector.restore_access(account, [first]))
            return
        removal = await harness.connector.remove_access(account)
        snapshot = (*removal.removed, harness.missing_entitlement)
        result = await harness.connector.restore_access(account, snapshot)
        assert result.outcome == Outcome.PARTIAL
        reasons = {s.item: s.reason for s in result.skipped}
        assert reasons.get(harness.missing_entitlement), "the missing item is named, with why"
        assert first in result.added
        state = await harness.connector.read_state(account)
        assert first in state.entitlements
        assert harness.missing_entitlement not in state.entitlements

    async def test_reading_a_vanished_account_is_permanent(self, harness: ContractHarness) -> None:
        ghost = Account(harness.connector.name, _ghost_id(harness), login="ghost")
        with pytest.raises(PermanentConnectorError):
            await harness.connector.read_state(ghost)

    async def test_errors_are_lifecycle_errors(self, harness: ContractHarness) -> None:
        ghost = Account(harness.connector.name, _ghost_id(harness), login="ghost")
        with pytest.raises(ConnectorError) as info:
            await harness.connector.disable(ghost)
        assert info.value.connector == harness.connector.name

    async def test_list_accounts_includes_seeded(self, harness: ContractHarness) -> None:
        if Capability.LIST_ACCOUNTS not in harness.connector.capabilities:
            await _refused(_drain(harness.connector))
            return
        account = await self._seeded(harness)
        ids = [state.account.account_id async for state in harness.connector.list_accounts()]
        assert account.account_id in ids

    async def test_create_then_apply_entitlements(self, harness: ContractHarness) -> None:
        caps = harness.connector.capabilities
        worker = harness.new_worker()
        if Capability.CREATE_ACCOUNT not in caps:
            await _refused(harness.connector.create_account(worker, DesiredAccess()))
        if Capability.APPLY_ENTITLEMENTS not in caps:
            ghost = Account(harness.connector.name, _ghost_id(harness))
            await _refused(harness.connector.apply_entitlements(ghost, DesiredAccess()))
        if not {Capability.CREATE_ACCOUNT, Capability.APPLY_ENTITLEMENTS} <= caps:
            return
        first, second = harness.groups[0], harness.groups[1]
        account = await harness.connector.create_account(worker, DesiredAccess(frozenset({first})))
        found = await harness.connector.find_account(worker)
        assert found is not None and found.account_id == account.account_id
        state = await harness.connector.read_state(account)
        assert state.enabled and first in state.entitlements
        result = await harness.connector.apply_entitlements(
            account, DesiredAccess(frozenset({second}))
        )
        assert first in result.removed and second in result.added
        state = await harness.connector.read_state(account)
        assert second in state.entitlements and first not in state.entitlements

    async def test_read_policy_names_its_sources(self, harness: ContractHarness) -> None:
        if Capability.READ_POLICY not in harness.connector.capabilities:
            await _refused(harness.connector.read_policy())
            return
        policy = await harness.connector.read_policy()
        assert policy.settings, "read_policy must report at least one control"
        assert all(setting.source for setting in policy.settings)


async def _refused(call: Awaitable[object]) -> None:
    """An operation the connector does not declare must be refused as such, not half-done."""
    with pytest.raises(UnsupportedOperationError):
        await call


async def _drain(connector: Connector) -> None:
    async for _ in connector.list_accounts():
        pass


def _ghost_id(harness: ContractHarness) -> str:
    """An id of the right shape for the system that names no account (override via attribute)."""
    return str(getattr(harness, "ghost_account_id", str(uuid.uuid4())))
