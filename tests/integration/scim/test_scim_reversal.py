"""Undoing a termination on real scim2-server processes: ``active`` back to true and the
groups and roles remove_access took, proved by reading the server directly (not through the
connector). Runs on the PATCH/filter server and on the one with neither (GET + conditional
PUT, local matching)."""

from __future__ import annotations

import uuid

import pytest

from connectors.base import Outcome, Worker
from tests.integration.scim.fixtures import SCIM_JSON, ScimServer, seed_user

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def _worker() -> Worker:
    suffix = uuid.uuid4().hex[:8]
    return Worker(worker_id=f"W{suffix}", email=f"va.{suffix}@example.org")


@pytest.mark.parametrize("server_name", ["ehr", "legacy"])
async def test_terminate_then_restore_round_trips_active_groups_and_roles(
    scim_servers: dict[str, ScimServer], server_name: str
) -> None:
    server = scim_servers[server_name]
    worker = _worker()
    user_id = await seed_user(server, worker, ["ehr-scheduling", "all-staff"], roles=["scheduler"])
    async with server.connector(server_name) as connector:
        account = await connector.find_account(worker)
        assert account is not None
        features = await connector.features()
        await connector.disable(account)
        removal = await connector.remove_access(account)
        enabled = await connector.enable(account)
        restored = await connector.restore_access(account, removal.removed)

    assert enabled.outcome == Outcome.DONE
    async with server.client() as http:
        user = (await http.get(f"/Users/{user_id}")).json()
        groups = (await http.get("/Groups", params={"count": 1000})).json()["Resources"]
    assert user["active"] is True
    held = {
        g["displayName"]
        for g in groups
        if any(m.get("value") == user_id for m in g.get("members") or [])
    }
    assert held == {"ehr-scheduling", "all-staff"}
    if features.roles:
        assert [r["value"] for r in user.get("roles") or []] == ["scheduler"]
        assert restored.outcome == Outcome.DONE
        assert set(restored.added) == {"ehr-scheduling", "all-staff", "role:scheduler"}
    else:
        assert {s.item for s in restored.skipped} == {"role:scheduler"}


async def test_a_group_deleted_since_the_termination_is_reported(ehr_server: ScimServer) -> None:
    worker = _worker()
    name = f"temp-{uuid.uuid4().hex[:8]}"
    async with ehr_server.client() as http:
        response = await http.post(
            "/Groups",
            json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": name},
            headers={"Content-Type": SCIM_JSON},
        )
        response.raise_for_status()
        group_id = response.json()["id"]
    await seed_user(ehr_server, worker, ["ehr-billing", name])
    async with ehr_server.connector("ehr") as connector:
        account = await connector.find_account(worker)
        assert account is not None
        removal = await connector.remove_access(account)
        async with ehr_server.client() as http:
            (await http.delete(f"/Groups/{group_id}")).raise_for_status()
        result = await connector.restore_access(account, removal.removed)
    assert result.outcome == Outcome.PARTIAL
    assert result.added == ("ehr-billing",)
    assert [(s.item, s.reason) for s in result.skipped] == [
        (name, "no SCIM group with this displayName exists")
    ]
