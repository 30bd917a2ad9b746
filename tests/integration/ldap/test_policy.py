"""Lockout policy: applied, read back, and then proved by failing binds against the real server.

These tests change the directory-wide lockout of the session's servers; every other test uses
correct passwords, so a tighter lockout cannot disturb them.
"""

from __future__ import annotations

import anyio
import anyio.to_thread
import pytest

from connectors.base import Control, Outcome, PermanentConnectorError, PolicyBaseline, Worker
from tests.integration.ldap.directory import USER_PASSWORD
from tests.integration.ldap.fixtures import AD_VA_GROUP, Directory, build, new_worker

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

THRESHOLD = 3
BASELINE = PolicyBaseline(
    lockout_threshold=THRESHOLD, lockout_window_minutes=15, lockout_duration_minutes=30
)


def _values(settings: tuple, control: Control) -> list[object]:  # type: ignore[type-arg]
    return [s.value for s in settings if s.control == control]


async def _bad_binds(directory: Directory, dn: str, count: int) -> None:
    for _ in range(count):
        outcome = await anyio.to_thread.run_sync(directory.admin.try_bind, dn, "Wr0ng!password")
        assert not outcome.ok


async def test_ad_lockout_via_domain_policy_and_pso_on_the_va_group(ad: Directory) -> None:
    worker = new_worker()
    dn = await anyio.to_thread.run_sync(
        lambda: ad.admin.add_user(ad.users_ou, worker.worker_id, groups=[AD_VA_GROUP])
    )
    async with build(ad) as connector:
        applied = await connector.apply_policy(BASELINE)
        assert applied.detail.get("resultant_pso", "").startswith("confirmed on")
        again = await connector.apply_policy(BASELINE)
        assert again.outcome == Outcome.ALREADY

        policy = await connector.read_policy()
        thresholds = [s for s in policy.settings if s.control == Control.LOCKOUT_THRESHOLD]
        assert [s.value for s in thresholds] == [THRESHOLD, THRESHOLD]
        assert "domain root" in thresholds[0].source
        assert "msDS-ResultantPSO confirmed" in thresholds[1].source
        assert _values(policy.settings, Control.LOCKOUT_WINDOW_MINUTES) == [15, 15]
        assert _values(policy.settings, Control.LOCKOUT_DURATION_MINUTES) == [30, 30]
        pso = await anyio.to_thread.run_sync(ad.admin.attributes, dn, ["msDS-ResultantPSO"])
        assert b"CN=lifecycle-lockout" in pso["msds-resultantpso"][0]

        await _bad_binds(ad, dn, THRESHOLD)
        locked = await anyio.to_thread.run_sync(ad.admin.try_bind, dn, USER_PASSWORD)
        assert not locked.ok and "data 775" in locked.message  # locked out, right password
        account = await connector.find_account(Worker(worker_id=worker.worker_id))
        assert account is not None
        state = await connector.read_state(account)
        assert state.locked is True and state.enabled is True


async def test_openldap_ppolicy_lockout(openldap: Directory) -> None:
    worker = new_worker()
    dn = await anyio.to_thread.run_sync(
        lambda: openldap.admin.add_user(openldap.users_ou, worker.worker_id)
    )
    async with build(openldap) as connector:
        applied = await connector.apply_policy(BASELINE)
        assert applied.outcome in (Outcome.DONE, Outcome.ALREADY)
        policy = await connector.read_policy()
        assert _values(policy.settings, Control.LOCKOUT_THRESHOLD) == [THRESHOLD]
        assert _values(policy.settings, Control.LOCKOUT_WINDOW_MINUTES) == [15]
        assert _values(policy.settings, Control.LOCKOUT_DURATION_MINUTES) == [30]
        assert all("ppolicy cn=default" in s.source for s in policy.settings if s.value)
        raw = await anyio.to_thread.run_sync(
            openldap.admin.attributes,
            openldap.options["ppolicy_dn"],
            ["pwdMaxFailure", "pwdLockoutDuration", "pwdFailureCountInterval"],
        )
        assert raw == {
            "pwdmaxfailure": [b"3"],
            "pwdlockoutduration": [b"1800"],
            "pwdfailurecountinterval": [b"900"],
        }

        await _bad_binds(openldap, dn, THRESHOLD)
        locked = await anyio.to_thread.run_sync(openldap.admin.try_bind, dn, USER_PASSWORD)
        assert not locked.ok and locked.result == 49
        account = await connector.find_account(Worker(worker_id=worker.worker_id))
        assert account is not None
        state = await connector.read_state(account)
        assert state.locked is True and state.enabled is True


async def test_openldap_disable_refuses_when_the_lock_would_be_ignored(
    openldap: Directory,
) -> None:
    """A policy with pwdLockout FALSE makes slapd ignore pwdAccountLockedTime: say so, loudly."""
    lax = "cn=lax,ou=policies,dc=example,dc=org"
    admin = openldap.admin
    await anyio.to_thread.run_sync(
        lambda: admin.ensure(
            lax,
            ["top", "organizationalRole", "pwdPolicy"],
            {"cn": "lax", "pwdAttribute": "userPassword", "pwdLockout": "FALSE"},
        )
    )
    worker = new_worker()
    dn = await anyio.to_thread.run_sync(lambda: admin.add_user(openldap.users_ou, worker.worker_id))
    await anyio.to_thread.run_sync(admin.replace, dn, "pwdPolicySubentry", lax)
    async with build(openldap) as connector:
        account = await connector.find_account(Worker(worker_id=worker.worker_id))
        assert account is not None
        with pytest.raises(PermanentConnectorError, match="pwdLockout TRUE") as info:
            await connector.disable(account)
        assert info.value.connector == "openldap"
        # Even if someone sets the mark by hand, the read-back tells the truth.
        await anyio.to_thread.run_sync(admin.replace, dn, "pwdAccountLockedTime", "000001010000Z")
        assert (await connector.read_state(account)).enabled is True
    assert (await anyio.to_thread.run_sync(admin.try_bind, dn, USER_PASSWORD)).ok
