"""Termination, joiner/mover and inactivity against the real servers, proved by real binds."""

from __future__ import annotations

from datetime import timedelta

import anyio
import anyio.to_thread
import pytest

from connectors.base import DesiredAccess, Outcome, Worker, utcnow
from connectors.ldap import LdapConnector
from tests.integration.ldap.directory import USER_PASSWORD
from tests.integration.ldap.fixtures import Directory, LdapHarness, build, new_worker

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def _seed(directory: Directory, groups: tuple[str, ...] = ()) -> tuple[str, str]:
    worker = new_worker()
    dn = await anyio.to_thread.run_sync(
        lambda: directory.admin.add_user(
            directory.users_ou, worker.worker_id, email=worker.email, groups=list(groups)
        )
    )
    return worker.worker_id, dn


async def test_termination_chain_is_proved_by_read_back_and_bind(
    harness_for: LdapHarness,
) -> None:
    directory, connector = harness_for.directory, harness_for.connector
    worker = new_worker()
    await harness_for.seed(worker, directory.groups[:2])
    dn = harness_for.dns[worker.worker_id]
    assert (await anyio.to_thread.run_sync(directory.admin.try_bind, dn, USER_PASSWORD)).ok

    account = await connector.find_account(worker)
    assert account is not None
    before = await connector.read_state(account)
    disabled = await connector.disable(account)
    revoked = await connector.revoke_sessions(account)
    removed = await connector.remove_access(account)
    after = await connector.read_state(account)

    assert disabled.outcome == Outcome.DONE and disabled.response_sha256
    assert revoked.outcome == Outcome.DONE
    assert after.sessions_valid_from is not None
    assert before.sessions_valid_from is None or after.sessions_valid_from >= (
        before.sessions_valid_from
    )
    # The removed list is what an undo needs: exactly the groups the account was in.
    assert set(removed.removed) == set(directory.groups[:2]) == set(before.entitlements)
    assert removed.outcome == Outcome.DONE
    assert after.enabled is False and after.entitlements == frozenset()
    bind = await anyio.to_thread.run_sync(directory.admin.try_bind, dn, USER_PASSWORD)
    assert not bind.ok and bind.result == 49

    # A second run changes nothing and says so (the engine may resume a half-done run).
    assert (await connector.disable(account)).outcome == Outcome.ALREADY
    assert (await connector.remove_access(account)).outcome == Outcome.ALREADY


async def test_ad_disabled_account_cannot_bind_with_the_right_password(ad: Directory) -> None:
    worker_id, dn = await _seed(ad)
    async with build(ad) as connector:
        account = await connector.find_account(Worker(worker_id=worker_id))
        assert account is not None
        await connector.disable(account)
        assert (await connector.read_state(account)).enabled is False
    bind = await anyio.to_thread.run_sync(ad.admin.try_bind, dn, USER_PASSWORD)
    assert not bind.ok
    assert "data 533" in bind.message  # AD: account disabled, not "wrong password"


async def test_openldap_disable_is_the_admin_lock_and_blocks_bind(openldap: Directory) -> None:
    worker_id, dn = await _seed(openldap)
    async with build(openldap) as connector:
        account = await connector.find_account(Worker(worker_id=worker_id))
        assert account is not None
        await connector.disable(account)
    attrs = await anyio.to_thread.run_sync(openldap.admin.attributes, dn, ["pwdAccountLockedTime"])
    assert attrs["pwdaccountlockedtime"] == [b"000001010000Z"]
    bind = await anyio.to_thread.run_sync(openldap.admin.try_bind, dn, USER_PASSWORD)
    assert not bind.ok and bind.result == 49


async def test_revoke_changes_the_password_of_an_enabled_account(
    harness_for: LdapHarness,
) -> None:
    worker = new_worker()
    await harness_for.seed(worker, [])
    dn = harness_for.dns[worker.worker_id]
    account = await harness_for.connector.find_account(worker)
    assert account is not None
    await harness_for.connector.revoke_sessions(account)
    bind = await anyio.to_thread.run_sync(harness_for.directory.admin.try_bind, dn, USER_PASSWORD)
    assert not bind.ok, "the old password must stop working even before the account is disabled"
    assert (await harness_for.connector.read_state(account)).enabled is True


async def test_joiner_then_mover_in_the_configured_ou(harness_for: LdapHarness) -> None:
    directory, connector = harness_for.directory, harness_for.connector
    worker = new_worker()
    first, second, third = directory.groups
    account = await connector.create_account(worker, DesiredAccess(frozenset({first, second})))
    state = await connector.read_state(account)
    assert state.enabled and state.entitlements == {first, second}
    found = await connector.find_account(worker)
    assert found is not None and found.account_id == account.account_id

    moved = await connector.apply_entitlements(account, DesiredAccess(frozenset({second, third})))
    assert moved.removed == (first,) and moved.added == (third,)
    assert (await connector.read_state(account)).entitlements == {second, third}
    same = await connector.apply_entitlements(account, DesiredAccess(frozenset({second, third})))
    assert same.outcome == Outcome.ALREADY

    listed = [
        s async for s in connector.list_accounts() if s.account.account_id == account.account_id
    ]
    assert len(listed) == 1 and listed[0].entitlements == {second, third}


async def test_entitlements_outside_group_ou_are_refused(harness_for: LdapHarness) -> None:
    from connectors.base import PermanentConnectorError

    worker = new_worker()
    await harness_for.seed(worker, [])
    account = await harness_for.connector.find_account(worker)
    assert account is not None
    admins = (
        "CN=Domain Admins,CN=Users,DC=example,DC=test"
        if harness_for.directory.kind == "ad"
        else "cn=admins,dc=example,dc=org"
    )
    with pytest.raises(PermanentConnectorError, match="outside group_ou"):
        await harness_for.connector.apply_entitlements(account, DesiredAccess(frozenset({admins})))
    assert (await harness_for.connector.read_state(account)).entitlements == frozenset()


async def test_list_accounts_reports_last_sign_in(harness_for: LdapHarness) -> None:
    """The inactivity sweep's input: a fresh sign-in shows up; a never-used account has none."""
    directory, connector = harness_for.directory, harness_for.connector
    used, unused = new_worker(), new_worker()
    await harness_for.seed(used, [])
    await harness_for.seed(unused, [])
    start = utcnow() - timedelta(seconds=5)
    bind = await anyio.to_thread.run_sync(
        directory.admin.try_bind, harness_for.dns[used.worker_id], USER_PASSWORD
    )
    assert bind.ok
    states = {
        s.account.worker_id: s
        async for s in connector.list_accounts()
        if s.account.worker_id in (used.worker_id, unused.worker_id)
    }
    assert states[used.worker_id].sign_in_tracked is True
    last = states[used.worker_id].last_sign_in
    assert last is not None and last >= start - timedelta(minutes=1)
    assert states[unused.worker_id].last_sign_in is None


async def test_concurrent_terminations_share_a_bounded_pool(directory: Directory) -> None:
    seeded = [await _seed(directory, directory.groups[:1]) for _ in range(12)]
    connector: LdapConnector = build(directory, pool_size=3)
    results: dict[str, bool] = {}

    async def terminate(worker_id: str) -> None:
        account = await connector.find_account(Worker(worker_id=worker_id))
        assert account is not None
        await connector.disable(account)
        await connector.revoke_sessions(account)
        await connector.remove_access(account)
        state = await connector.read_state(account)
        results[worker_id] = not state.enabled and not state.entitlements

    async with connector, anyio.create_task_group() as tg:
        for worker_id, _dn in seeded:
            tg.start_soon(terminate, worker_id)
    assert len(results) == 12 and all(results.values())
    assert 1 <= connector.pool_stats().peak_open <= 3


async def test_entitlements_to_a_missing_group_name_it(harness_for: LdapHarness) -> None:
    from connectors.base import PermanentConnectorError

    worker = new_worker()
    await harness_for.seed(worker, [harness_for.groups[0]])
    account = await harness_for.connector.find_account(worker)
    assert account is not None
    ghost = harness_for.groups[0].replace("=", "=No Such ", 1)
    with pytest.raises(PermanentConnectorError, match="does not exist"):
        await harness_for.connector.apply_entitlements(account, DesiredAccess(frozenset({ghost})))


async def test_ad_base_dn_an_ou_still_removes_groups_elsewhere(ad: Directory) -> None:
    """Accounts in scope by OU, groups anywhere in the domain: every membership goes."""
    worker_id, _dn = await _seed(ad, ad.groups[:2])
    async with build(ad, base_dn=ad.users_ou) as connector:
        assert connector.options.domain_dn == "DC=example,DC=test"
        account = await connector.find_account(Worker(worker_id=worker_id))
        assert account is not None
        removed = await connector.remove_access(account)
        assert set(removed.removed) == set(ad.groups[:2])
        assert (await connector.read_state(account)).entitlements == frozenset()
