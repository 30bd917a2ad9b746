"""Undoing a termination on the real servers: enable lifts exactly the disable mark (AD's
userAccountControl bit 0x2, OpenLDAP's ppolicy administrative lock), proved by real binds, and
restore_access puts the account back into the groups remove_access took it out of, proved by
the groups' own ``member`` values."""

from __future__ import annotations

import uuid

import anyio.to_thread
import pytest

from connectors.base import Outcome
from connectors.ldap.values import OPENLDAP_ADMIN_LOCK
from tests.integration.ldap.directory import USER_PASSWORD
from tests.integration.ldap.fixtures import Directory, LdapHarness, new_worker

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def _members(directory: Directory, group: str) -> set[str]:
    raw = directory.admin.attributes(group, ["member"]).get("member", [])
    return {value.decode().lower() for value in raw}


async def test_disable_enable_round_trips_the_directory_flag_and_the_bind(
    harness_for: LdapHarness,
) -> None:
    directory, connector = harness_for.directory, harness_for.connector
    worker = new_worker()
    await harness_for.seed(worker, directory.groups[:2])
    dn = harness_for.dns[worker.worker_id]
    account = await connector.find_account(worker)
    assert account is not None
    flag = "userAccountControl" if directory.kind == "ad" else "pwdAccountLockedTime"

    def stored() -> list[bytes]:
        return directory.admin.attributes(dn, [flag]).get(flag.lower(), [])

    await connector.disable(account)
    assert await anyio.to_thread.run_sync(stored) == (
        [b"514"] if directory.kind == "ad" else [OPENLDAP_ADMIN_LOCK.encode()]
    )
    assert not (await anyio.to_thread.run_sync(directory.admin.try_bind, dn, USER_PASSWORD)).ok

    enabled = await connector.enable(account)
    assert enabled.outcome == Outcome.DONE and enabled.response_sha256
    assert await anyio.to_thread.run_sync(stored) == ([b"512"] if directory.kind == "ad" else [])
    assert (await anyio.to_thread.run_sync(directory.admin.try_bind, dn, USER_PASSWORD)).ok
    assert (await connector.read_state(account)).enabled is True
    assert (await connector.enable(account)).outcome == Outcome.ALREADY


async def test_remove_then_restore_puts_back_the_group_memberships(
    harness_for: LdapHarness,
) -> None:
    directory, connector = harness_for.directory, harness_for.connector
    worker = new_worker()
    groups = directory.groups[:2]
    await harness_for.seed(worker, groups)
    dn = harness_for.dns[worker.worker_id].lower()
    account = await connector.find_account(worker)
    assert account is not None

    removal = await connector.remove_access(account)
    for group in groups:
        assert dn not in await anyio.to_thread.run_sync(_members, directory, group)
    restored = await connector.restore_access(account, removal.removed)
    assert restored.outcome == Outcome.DONE and set(restored.added) == set(groups)
    for group in groups:
        assert dn in await anyio.to_thread.run_sync(_members, directory, group)
    assert (await connector.read_state(account)).entitlements == set(groups)


async def test_a_group_deleted_since_the_termination_is_reported(
    harness_for: LdapHarness,
) -> None:
    directory, connector = harness_for.directory, harness_for.connector
    parent = directory.groups[0].split(",", 1)[1]
    doomed = f"cn=Doomed {uuid.uuid4().hex[:8]},{parent}"
    placeholder = "cn=placeholder,dc=example,dc=org" if directory.kind == "openldap" else None
    await anyio.to_thread.run_sync(directory.admin.add_group, doomed, placeholder)
    worker = new_worker()
    await harness_for.seed(worker, [directory.groups[0], doomed])
    account = await connector.find_account(worker)
    assert account is not None
    removal = await connector.remove_access(account)
    await anyio.to_thread.run_sync(directory.admin.conn.delete, doomed)

    result = await connector.restore_access(account, removal.removed)
    assert result.outcome == Outcome.PARTIAL
    assert result.added == (directory.groups[0],)
    [gone] = result.skipped
    assert gone.item.lower() == doomed.lower() and gone.reason == "the group no longer exists"


async def test_openldap_sessions_revoked_after_a_restore_leave_the_account_enabled(
    openldap: Directory,
) -> None:
    """A restore enables, then revokes sessions again: the reset must not re-lock the account
    (the re-lock memory of an earlier revoke on the disabled account is cleared by enable)."""
    from tests.integration.ldap.fixtures import build

    async with build(openldap) as connector:
        harness = LdapHarness(openldap, connector)
        worker = new_worker()
        await harness.seed(worker, [])
        account = await connector.find_account(worker)
        assert account is not None
        await connector.disable(account)
        await connector.revoke_sessions(account)
        assert (await connector.read_state(account)).enabled is False
        await connector.enable(account)
        await connector.revoke_sessions(account)
        assert (await connector.read_state(account)).enabled is True
