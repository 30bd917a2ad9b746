"""Undoing a termination on Entra: enable (accountEnabled) and restore_access of the snapshot
remove_access returned, on the fake Graph tenant (bodies as in Microsoft's Graph docs)."""

from __future__ import annotations

import uuid

import pytest

from connectors.base import Account, Outcome
from connectors.entra import EntraConnector
from tests.unit.entra.fake_graph import FakeEntra
from tests.unit.entra.test_termination import SKU_E3, SKU_VISIO, loaded_user

pytestmark = pytest.mark.anyio


async def test_termination_then_restore_gives_back_groups_licence_and_app_role(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid, ids = loaded_user(fake)
    account = Account("idp", uid)
    before = await connector.read_state(account)
    await connector.disable(account)
    removal = await connector.remove_access(account)
    assert fake.users[uid]["accountEnabled"] is False

    enabled = await connector.enable(account)
    assert enabled.outcome == Outcome.DONE and enabled.vendor_request_id
    assert fake.users[uid]["accountEnabled"] is True
    assert (await connector.enable(account)).outcome == Outcome.ALREADY

    result = await connector.restore_access(account, removal.removed)
    assert result.outcome == Outcome.PARTIAL  # the authentication methods
    skipped = {s.item: s.reason for s in result.skipped}
    assert set(skipped) == {r for r in removal.removed if r.startswith("authMethod:")}
    assert all("only the worker can register" in reason for reason in skipped.values())
    assert {f"group:{ids['plain1']}", f"group:{ids['plain2']}", f"license:{SKU_VISIO}"} <= set(
        result.added
    )
    assert uid in fake.members[ids["plain1"]] and uid in fake.members[ids["licensing"]]
    assert [lic["skuId"] for lic in fake.licences[uid] if not lic["assignedByGroup"]] == [SKU_VISIO]
    assert len(fake.app_roles[uid]) == 1
    after = await connector.read_state(account)
    assert after.enabled and after.entitlements == before.entitlements
    assert f"license:{SKU_E3}" in after.entitlements  # group-assigned: never removed


async def test_what_is_gone_from_the_tenant_is_reported_per_item(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    keep, gone = fake.add_group("Kept"), fake.add_group("Deleted later")
    uid = fake.add_user("W0043", groups=[keep, gone])
    fake.add_licence(uid, SKU_VISIO)
    fake.add_app_role(uid)
    account = Account("idp", uid)
    removal = await connector.remove_access(account)
    # Between termination and restore: the group is deleted, the licence subscription lapses
    # and the app is removed from the tenant.
    del fake.groups[gone], fake.members[gone]
    fake.retired_skus.add(SKU_VISIO)
    role = next(r for r in removal.removed if r.startswith("appRole:"))
    fake.deleted_apps.add(role.removeprefix("appRole:").split("/")[0])
    unknown = f"group:{uuid.uuid4()}"

    result = await connector.restore_access(account, (*removal.removed, unknown, "printer:7"))
    assert result.outcome == Outcome.PARTIAL
    assert result.added == (f"group:{keep}",)
    skipped = {s.item: s.reason for s in result.skipped}
    assert skipped[f"group:{gone}"] == "no longer exists in Entra ID"
    assert skipped[unknown] == "no longer exists in Entra ID"
    assert skipped[role] == "no longer exists in Entra ID"
    assert "does not correspond to a valid company License" in skipped[f"license:{SKU_VISIO}"]
    assert skipped["printer:7"] == "not an entitlement this connector removes"
    state = await connector.read_state(account)
    assert state.entitlements == {f"group:{keep}"}


async def test_restore_never_puts_a_non_guid_into_a_url(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid = fake.add_user("W0044")
    hostile = ("group:../../users/x", "license:x/../../y", "appRole:a/b/../c")
    result = await connector.restore_access(Account("idp", uid), hostile)
    assert {s.item for s in result.skipped} == set(hostile)
    assert {m for m, _ in fake.log} <= {"GET", "B GET", "POST"}, "only the read-back was sent"
    assert [p for m, p in fake.log if m == "POST"] == ["/$batch"]
