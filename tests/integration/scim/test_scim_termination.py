"""One worker's termination chain across two real SCIM services (EHR and phone) at once.

This is the connector half of the fan-out: both systems run find -> disable -> revoke_sessions
-> remove_access -> read_state concurrently in one anyio task group, and both read-backs must
show the account off with no entitlements left.
"""

from __future__ import annotations

import uuid

import anyio
import pytest

from connectors.base import AccountState, ActionResult, Outcome, Worker
from connectors.scim import ScimConnector
from tests.integration.scim.fixtures import ScimServer, seed_user

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

Chain = tuple[ActionResult, ActionResult, ActionResult, AccountState]


def _worker() -> Worker:
    suffix = uuid.uuid4().hex[:8]
    return Worker(
        worker_id=f"W{suffix}",
        email=f"va.{suffix}@example.org",
        name=f"Virtual Assistant {suffix}",
        upn=f"va.{suffix}@example.org",
    )


async def _terminate(connector: ScimConnector, worker: Worker, out: dict[str, Chain]) -> None:
    account = await connector.find_account(worker)
    assert account is not None, f"{connector.name}: worker not found"
    disabled = await connector.disable(account)
    revoked = await connector.revoke_sessions(account)
    removed = await connector.remove_access(account)
    state = await connector.read_state(account)
    out[connector.name] = (disabled, revoked, removed, state)


async def test_termination_fans_out_to_ehr_and_phone(
    ehr_server: ScimServer, phone_server: ScimServer
) -> None:
    worker = _worker()
    await seed_user(ehr_server, worker, ["ehr-scheduling", "ehr-billing"], roles=["scheduler"])
    await seed_user(phone_server, worker, ["all-staff"])
    results: dict[str, Chain] = {}
    async with (
        ehr_server.connector("ehr") as ehr,
        phone_server.connector("phone") as phone,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(_terminate, ehr, worker, results)
        tg.start_soon(_terminate, phone, worker, results)

    assert set(results) == {"ehr", "phone"}
    ehr_disabled, ehr_revoked, ehr_removed, _ = results["ehr"]
    assert ehr_disabled.outcome == Outcome.DONE
    assert ehr_revoked.outcome == Outcome.NOT_APPLICABLE
    assert set(ehr_removed.removed) == {"ehr-scheduling", "ehr-billing", "role:scheduler"}
    assert ehr_removed.outcome == Outcome.DONE
    phone_removed = results["phone"][2]
    assert phone_removed.removed == ("all-staff",)
    for name in ("ehr", "phone"):
        state = results[name][3]
        assert isinstance(state, AccountState)
        assert state.account.system == name
        assert state.enabled is False
        assert state.entitlements == frozenset()
        assert state.account.worker_id == worker.worker_id

    # And a separate, fresh read of each server agrees (nothing cached in the connector).
    for server in (ehr_server, phone_server):
        async with server.client() as http:
            users = (await http.get("/Users", params={"count": 1000})).json()["Resources"]
            mine = [u for u in users if u.get("externalId") == worker.worker_id]
            assert len(mine) == 1 and mine[0]["active"] is False
            groups = (await http.get("/Groups", params={"count": 1000})).json()["Resources"]
            assert not any(
                m.get("value") == mine[0]["id"] for g in groups for m in g.get("members") or []
            )


async def test_terminating_twice_is_idempotent(ehr_server: ScimServer) -> None:
    worker = _worker()
    await seed_user(ehr_server, worker, ["ehr-billing"])
    async with ehr_server.connector("ehr") as ehr:
        first: dict[str, Chain] = {}
        await _terminate(ehr, worker, first)
        again: dict[str, Chain] = {}
        await _terminate(ehr, worker, again)
    disabled, _, removed, state = again["ehr"]
    assert disabled.outcome == Outcome.ALREADY
    assert removed.outcome == Outcome.ALREADY and removed.removed == ()
    assert state.enabled is False
