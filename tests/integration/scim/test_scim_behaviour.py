"""SCIM connector behaviour that the contract suite does not pin down, on real scim2-server.

Covers discovery-driven adaptation (PATCH vs GET + conditional PUT), filter escaping with
hostile userNames stored on the server, paging over a small maxResults, joiner/mover with SCIM
roles, and how the server's real error responses (400 invalidFilter, 401, 404, 409 uniqueness,
412 on a stale If-Match) are classified. 429 and a 412 without our If-Match cannot be produced
by scim2-server; they are tested with respx in tests/unit/scim/.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from connectors.base import (
    DesiredAccess,
    Outcome,
    PermanentConnectorError,
    TransientConnectorError,
    Worker,
)
from connectors.scim import ScimConnector
from tests.integration.scim.fixtures import SCIM_JSON, ScimServer, seed_user

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def _worker(**overrides: str) -> Worker:
    suffix = uuid.uuid4().hex[:8]
    fields = {
        "worker_id": f"W{suffix}",
        "email": f"w.{suffix}@example.org",
        "upn": f"w.{suffix}@example.org",
        "name": f"W {suffix}",
    }
    fields.update(overrides)
    return Worker(**fields)


async def test_discovery_reads_service_provider_config(
    ehr_server: ScimServer, legacy_server: ScimServer
) -> None:
    async with ehr_server.connector() as ehr, legacy_server.connector() as legacy:
        full = await ehr.features()
        bare = await legacy.features()
    assert (full.patch, full.filter, full.etag) == (True, True, True)
    assert full.roles and full.entitlements
    assert (bare.patch, bare.filter, bare.etag) == (False, False, True)
    assert bare.max_results == 3


async def test_disable_uses_patch_where_supported(ehr_server: ScimServer) -> None:
    worker = _worker()
    await seed_user(ehr_server, worker)
    async with ehr_server.connector() as ehr:
        account = await ehr.find_account(worker)
        assert account is not None
        result = await ehr.disable(account)
    assert result.detail["method"] == "PATCH"
    assert result.response_sha256 and len(result.response_sha256) == 64


async def test_disable_falls_back_to_put_and_keeps_extension_attributes(
    legacy_server: ScimServer,
) -> None:
    worker = _worker()
    async with legacy_server.client() as http:
        created = await http.post(
            "/Users",
            headers={"Content-Type": SCIM_JSON},
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
                "userName": worker.upn,
                "externalId": worker.worker_id,
                "active": True,
                "title": "Scheduling VA",
                ENTERPRISE: {"employeeNumber": "E-77", "department": "Front desk"},
            },
        )
        created.raise_for_status()
        user_id = created.json()["id"]
    async with legacy_server.connector() as legacy:
        account = await legacy.find_account(worker)
        assert account is not None and account.account_id == user_id
        result = await legacy.disable(account)
        assert result.detail["method"] == "PUT"
        assert (await legacy.read_state(account)).enabled is False
    async with legacy_server.client() as http:
        after = (await http.get(f"/Users/{user_id}")).json()
    assert after["active"] is False
    assert after["title"] == "Scheduling VA"
    assert after[ENTERPRISE] == {"employeeNumber": "E-77", "department": "Front desk"}


@pytest.mark.parametrize("server_name", ["ehr", "legacy"])
@pytest.mark.parametrize(
    "hostile",
    ['x" or "1" eq "1', 'a" or userName pr or "b', "o'brien or 1 eq 1", 'q\\" or true'],
)
async def test_hostile_user_names_only_ever_match_themselves(
    scim_servers: dict[str, ScimServer], server_name: str, hostile: str
) -> None:
    server = scim_servers[server_name]
    victim = _worker()
    await seed_user(server, victim)
    suffix = uuid.uuid4().hex[:6]
    owner = _worker(upn=f"{hostile}{suffix}", email=f"o.{suffix}@example.org")
    owner_id = await seed_user(server, owner)
    async with server.connector() as connector:
        # The account whose userName really is the hostile string is found, and only it.
        found = await connector.find_account(Worker(worker_id=f"nobody-{suffix}", upn=owner.upn))
        assert found is not None and found.account_id == owner_id
        # The same string without the suffix must not widen into other users.
        prober = Worker(worker_id=hostile, upn=hostile, email=hostile)
        assert await connector.find_account(prober) is None


async def test_list_accounts_pages_past_max_results(legacy_server: ScimServer) -> None:
    workers = [_worker() for _ in range(7)]
    ids = {await seed_user(legacy_server, w, ["all-staff"]) for w in workers}
    async with legacy_server.connector() as legacy:
        states = [s async for s in legacy.list_accounts()]
    listed = {s.account.account_id: s for s in states}
    assert ids <= set(listed)
    assert all("all-staff" in listed[i].entitlements for i in ids)
    assert len(listed) == len(states), "paging must not repeat users"


@pytest.mark.parametrize("server_name", ["ehr", "legacy"])
async def test_joiner_and_mover_with_groups_and_roles(
    scim_servers: dict[str, ScimServer], server_name: str
) -> None:
    server = scim_servers[server_name]
    worker = _worker()
    async with server.connector() as connector:
        account = await connector.create_account(
            worker, DesiredAccess(frozenset({"ehr-scheduling", "role:scheduler"}))
        )
        state = await connector.read_state(account)
        assert state.enabled
        assert state.entitlements == {"ehr-scheduling", "role:scheduler"}
        result = await connector.apply_entitlements(
            account, DesiredAccess(frozenset({"ehr-billing", "role:billing", "no-such-group"}))
        )
        assert set(result.removed) == {"ehr-scheduling", "role:scheduler"}
        assert set(result.added) == {"ehr-billing", "role:billing"}
        assert result.outcome == Outcome.PARTIAL
        assert [s.item for s in result.skipped] == ["no-such-group"]
        state = await connector.read_state(account)
        assert state.entitlements == {"ehr-billing", "role:billing"}
        again = await connector.apply_entitlements(
            account, DesiredAccess(frozenset({"ehr-billing", "role:billing"}))
        )
        assert again.outcome == Outcome.ALREADY


# ----------------------------------------------------------------------------- real errors


async def test_invalid_filter_is_permanent_and_says_so(ehr: ScimConnector) -> None:
    with pytest.raises(PermanentConnectorError) as info:
        await ehr.api.request(
            "GET", "/Users", what="searching users", params={"filter": "userName eq"}
        )
    assert "HTTP 400" in info.value.message
    assert "invalidFilter" in info.value.message
    assert "'match'" in info.value.message


async def test_wrong_token_is_permanent_and_names_the_option(ehr_server: ScimServer) -> None:
    import httpx

    connector = ScimConnector(
        "ehr",
        base_url=ehr_server.base_url,
        client=httpx.AsyncClient(),
        token=SecretStr("not-the-token"),
    )
    async with connector:
        with pytest.raises(PermanentConnectorError) as info:
            await connector.find_account(_worker())
    assert "HTTP 401" in info.value.message
    assert "[connectors.ehr]" in info.value.message
    assert "not-the-token" not in info.value.message


async def test_vanished_user_is_permanent_not_found(ehr: ScimConnector) -> None:
    from connectors.base import Account

    ghost = Account("ehr", uuid.uuid4().hex)
    with pytest.raises(PermanentConnectorError) as info:
        await ehr.disable(ghost)
    assert "HTTP 404" in info.value.message
    assert "does not exist" in info.value.message
    assert info.value.account_id == ghost.account_id


async def test_duplicate_create_is_permanent_uniqueness(ehr_server: ScimServer) -> None:
    worker = _worker()
    await seed_user(ehr_server, worker)
    async with ehr_server.connector() as ehr:
        with pytest.raises(PermanentConnectorError) as info:
            await ehr.create_account(worker, DesiredAccess())
    assert "HTTP 409" in info.value.message
    assert "uniqueness" in info.value.message


async def test_stale_etag_is_transient_with_immediate_retry(legacy_server: ScimServer) -> None:
    worker = _worker()
    user_id = await seed_user(legacy_server, worker)
    async with legacy_server.client() as http:
        current = (await http.get(f"/Users/{user_id}")).json()
        stale = current["meta"]["version"]
        body = {k: v for k, v in current.items() if k != "meta"}
        body["title"] = "changed by someone else"
        (
            await http.put(f"/Users/{user_id}", json=body, headers={"Content-Type": SCIM_JSON})
        ).raise_for_status()
    async with legacy_server.connector() as legacy:
        with pytest.raises(TransientConnectorError) as info:
            await legacy.api.request(
                "PUT",
                f"/Users/{user_id}",
                what="disabling the user",
                account_id=user_id,
                json_body={**body, "active": False},
                if_match=stale,
                resource="user",
            )
    assert info.value.retry_after == 0.0
    assert "HTTP 412" in info.value.message and "re-read" in info.value.message


async def test_built_from_configuration_through_the_registry(
    ehr_server: ScimServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from connectors import build_connector
    from connectors.base import ConnectorContext

    token_file = tmp_path / "ehr.token"
    token_file.write_text(ehr_server.token + "\n")
    worker = _worker()
    await seed_user(ehr_server, worker, ["ehr-scheduling"])
    connector = build_connector(
        "ehr",
        {"kind": "scim", "base_url": ehr_server.base_url, "token": f"file:{token_file}"},
        ConnectorContext(),
    )
    assert isinstance(connector, ScimConnector)
    async with connector:
        account = await connector.find_account(worker)
        assert account is not None
        assert (await connector.read_state(account)).entitlements == {"ehr-scheduling"}
