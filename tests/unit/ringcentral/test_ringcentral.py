"""RingCentral connector behaviour against the stateful fake: auth, deprovisioning, errors."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from connectors.base import (
    Account,
    ConnectorConfigError,
    ConnectorContext,
    Outcome,
    PermanentConnectorError,
    TransientConnectorError,
    Worker,
)
from connectors.ringcentral import RingCentralConnector
from tests.unit.ringcentral.fake import CLIENT_ID, CLIENT_SECRET, JWT, SERVER, FakeRingCentral

pytestmark = pytest.mark.anyio


def _worker(email: str) -> Worker:
    return Worker(worker_id="W0042", email=email, upn=email, name="Ann Lee")


async def _account(rc: RingCentralConnector, email: str) -> Account:
    account = await rc.find_account(_worker(email))
    assert account is not None
    return account


async def test_jwt_bearer_token_is_fetched_once_with_basic_client_auth(
    fake: FakeRingCentral, rc: RingCentralConnector
) -> None:
    fake.add_user("a.lee@example.org")
    account = await _account(rc, "a.lee@example.org")
    await rc.read_state(account)
    await rc.disable(account)
    assert len(fake.token_requests) == 1
    token_request = fake.token_requests[0]
    assert token_request.url == f"{SERVER}/restapi/oauth/token"
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token_request.headers["Authorization"] == f"Basic {basic}"
    form = parse_qs(token_request.content.decode())
    assert form == {
        "grant_type": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
        "assertion": [JWT],
    }


async def test_revoked_token_is_replaced_once(
    fake: FakeRingCentral, rc: RingCentralConnector
) -> None:
    fake.add_user("a.lee@example.org")
    account = await _account(rc, "a.lee@example.org")
    fake.tokens.clear()  # RingCentral revoked every token early
    state = await rc.read_state(account)
    assert state.enabled is True
    assert len(fake.token_requests) == 2


async def test_bad_jwt_is_permanent_and_secret_free(
    fake: FakeRingCentral, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RC_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("RC_JWT", "expired.jwt.value")
    connector = RingCentralConnector.from_config(
        "phone",
        {
            "kind": "ringcentral",
            "client_id": CLIENT_ID,
            "client_secret": "env:RC_CLIENT_SECRET",
            "jwt": "env:RC_JWT",
        },
        ConnectorContext(),
    )
    async with connector:
        with pytest.raises(PermanentConnectorError) as info:
            await connector.find_account(_worker("a.lee@example.org"))
    assert "HTTP 400" in str(info.value) and "invalid_grant" in str(info.value)
    assert "expired.jwt.value" not in str(info.value) and CLIENT_SECRET not in str(info.value)


async def test_find_matches_contact_email_only(
    fake: FakeRingCentral, rc: RingCentralConnector
) -> None:
    ann = fake.add_user("A.Lee@Example.org")
    fake.add_user("b.kim@example.org")
    found = await rc.find_account(_worker("a.lee@example.org"))
    assert found is not None and found.account_id == ann.id and found.worker_id == "W0042"
    assert await rc.find_account(Worker(worker_id="*", email="*@*", upn="*")) is None
    assert await rc.find_account(Worker(worker_id="W1")) is None  # no email: nothing to match


async def test_duplicate_emails_are_permanent(
    fake: FakeRingCentral, rc: RingCentralConnector
) -> None:
    fake.add_user("dup@example.org")
    fake.add_user("dup@example.org")
    with pytest.raises(PermanentConnectorError, match="duplicate contact email"):
        await rc.find_account(_worker("dup@example.org"))


async def test_disable_sends_status_disabled_and_reads_back(
    fake: FakeRingCentral, rc: RingCentralConnector
) -> None:
    ext = fake.add_user("a.lee@example.org")
    account = await _account(rc, "a.lee@example.org")
    result = await rc.disable(account)
    put = [r for r in fake.requests if r.method == "PUT"][-1]
    assert put.url.path == f"/restapi/v1.0/account/~/extension/{ext.id}"
    assert json.loads(put.content) == {
        "status": "Disabled",
        "statusInfo": {"reason": "Involuntarily", "comment": "Access ended by lifecycle"},
    }
    assert result.outcome == Outcome.DONE and result.vendor_request_id
    assert ext.status == "Disabled"
    assert (await rc.disable(account)).outcome == Outcome.ALREADY


async def test_voicemail_pin_is_reset_to_a_secret_random_value(
    fake: FakeRingCentral, rc: RingCentralConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ext = fake.add_user("a.lee@example.org")
    ext.ivr_pin = "1234"
    account = await _account(rc, "a.lee@example.org")
    first = await rc.revoke_sessions(account)
    pin = ext.ivr_pin
    assert pin and pin != "1234" and pin.isdigit() and len(pin) == 8
    second = await rc.revoke_sessions(account)
    assert ext.ivr_pin != pin
    assert first.outcome == second.outcome == Outcome.DONE
    assert pin not in repr(first) and pin not in caplog.text


async def test_remove_access_unassigns_everything_and_reports_what_it_cannot(
    fake: FakeRingCentral, rc: RingCentralConnector
) -> None:
    ext = fake.add_user(
        "a.lee@example.org", queues=("2001", "2002"), devices=2, forwarding=3, loose_numbers=1
    )
    fake.add_user("b.kim@example.org", queues=("2001",), devices=1)
    before = fake.holdings(ext.id)
    account = await _account(rc, "a.lee@example.org")
    state = await rc.read_state(account)
    assert state.entitlements == before  # read_state pages (per_page=2) through every list

    result = await rc.remove_access(account)

    loose = {h for h in before if h.startswith("phone-number:")} - {
        f"phone-number:{d['number']}" for d in fake.devices.values()
    }
    assert result.outcome == Outcome.PARTIAL
    assert set(result.removed) == before - loose
    assert {s.item for s in result.skipped} == loose
    assert "Admin Portal" in result.skipped[0].reason
    assert fake.holdings(ext.id) == loose
    # devices went to unassigned devices and their numbers to the inventory
    assert all(
        d["ext"] is None
        for d in fake.devices.values()
        if d["number"] in {n for n, num in fake.numbers.items() if num["usage"] == "Inventory"}
    )
    assert sum(1 for n in fake.numbers.values() if n["usage"] == "Inventory") == 2
    deletes = [r for r in fake.requests if r.method == "DELETE" and "/v2/" in r.url.path]
    assert len(deletes) == 2 and all(
        json.loads(r.content) == {"keepAssetsInInventory": True} for r in deletes
    )
    # the other agent keeps their queue
    assert fake.queue_members["2001"] == {
        e.id for e in fake.extensions.values() if e.email.startswith("b.")
    }
    again = await rc.remove_access(account)
    assert again.removed == () and again.outcome == Outcome.PARTIAL


async def test_rate_limit_is_transient_with_retry_after(
    fake: FakeRingCentral, rc: RingCentralConnector
) -> None:
    fake.add_user("a.lee@example.org")
    account = await _account(rc, "a.lee@example.org")
    fake.throttle = 1
    with pytest.raises(TransientConnectorError) as info:
        await rc.disable(account)
    assert info.value.retry_after == 60.0
    assert "CMN-301" in str(info.value) and "HTTP 429" in str(info.value)
    assert info.value.connector == "phone" and info.value.account_id == account.account_id
    assert (await rc.disable(account)).outcome == Outcome.DONE  # the next attempt goes through


@pytest.mark.parametrize(
    ("response", "kind", "words"),
    [
        (
            httpx.Response(
                503, json={"errorCode": "CMN-211", "message": "Service Temporary Unavailable"}
            ),
            TransientConnectorError,
            "CMN-211",
        ),
        (httpx.Response(500, text="oops"), TransientConnectorError, "HTTP 500"),
        (
            httpx.Response(
                403,
                json={
                    "errorCode": "CMN-408",
                    "message": "In order to call this API endpoint, user needs to have "
                    "[EditExtensions] permission",
                },
            ),
            PermanentConnectorError,
            "EditExtensions",
        ),
        (
            httpx.Response(
                400, json={"errorCode": "CMN-101", "message": "Parameter [status] value is invalid"}
            ),
            PermanentConnectorError,
            "CMN-101",
        ),
    ],
)
async def test_vendor_errors_are_classified(
    response: httpx.Response, kind: type[Exception], words: str, rc_env: None
) -> None:
    with respx.mock(base_url=SERVER) as api:
        api.post("/restapi/oauth/token").respond(
            json={"access_token": "t", "token_type": "bearer", "expires_in": 3600}
        )
        api.get("/restapi/v1.0/account/~/extension/42").mock(return_value=response)
        connector = RingCentralConnector.from_config(
            "phone",
            {
                "kind": "ringcentral",
                "client_id": CLIENT_ID,
                "client_secret": "env:RC_CLIENT_SECRET",
                "jwt": "env:RC_JWT",
            },
            ConnectorContext(),
        )
        async with connector:
            with pytest.raises(kind) as info:
                await connector.disable(Account("phone", "42"))
    assert words in str(info.value)


async def test_timeouts_are_transient(rc_env: None) -> None:
    with respx.mock(base_url=SERVER) as api:
        api.post("/restapi/oauth/token").mock(side_effect=httpx.ReadTimeout("slow"))
        connector = RingCentralConnector.from_config(
            "phone",
            {
                "kind": "ringcentral",
                "client_id": CLIENT_ID,
                "client_secret": "env:RC_CLIENT_SECRET",
                "jwt": "env:RC_JWT",
            },
            ConnectorContext(),
        )
        async with connector:
            with pytest.raises(TransientConnectorError, match="timed out"):
                await connector.read_state(Account("phone", "42"))


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"client_secret": "env:RC_CLIENT_SECRET", "jwt": "env:RC_JWT"}, "client_id"),
        (
            {
                "client_id": "x",
                "client_secret": "env:RC_CLIENT_SECRET",
                "jwt": "env:RC_JWT",
                "pin": 4,
            },
            "pin",
        ),
        (
            {
                "client_id": "x",
                "client_secret": "env:RC_CLIENT_SECRET",
                "jwt": "env:RC_JWT",
                "server_url": "http://x",
            },
            "https",
        ),
        (
            {
                "client_id": "x",
                "client_secret": "env:RC_CLIENT_SECRET",
                "jwt": "env:MISSING_RC_JWT",
            },
            "MISSING_RC_JWT",
        ),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], words: str, rc_env: None) -> None:
    with pytest.raises(ConnectorConfigError) as info:
        RingCentralConnector.from_config(
            "phone", {"kind": "ringcentral", **options}, ConnectorContext()
        )
    assert words in str(info.value)
    assert "[connectors.phone]" in str(info.value)


async def test_enable_and_restore_give_back_status_and_queues_and_say_what_cannot_return(
    fake: FakeRingCentral, rc: RingCentralConnector
) -> None:
    ext = fake.add_user("a.lee@example.org", queues=("2001", "2002"), devices=1, forwarding=1)
    account = await _account(rc, "a.lee@example.org")
    await rc.disable(account)
    removal = await rc.remove_access(account)
    assert ext.status == "Disabled" and not any(ext.id in m for m in fake.queue_members.values())

    enabled = await rc.enable(account)
    assert enabled.outcome == Outcome.DONE and ext.status == "Enabled"
    assert (await rc.enable(account)).outcome == Outcome.ALREADY
    put = [r for r in fake.requests if r.method == "PUT" and r.url.path.endswith(ext.id)]
    assert json.loads(put[-1].content) == {"status": "Enabled"}

    result = await rc.restore_access(account, removal.removed)
    assert {ext.id in fake.queue_members[q] for q in ("2001", "2002")} == {True}
    assert set(result.added) == {"call-queue:2001", "call-queue:2002"}
    reasons = {s.item.split(":")[0]: s.reason for s in result.skipped}
    assert set(reasons) == {"device", "forwarding-number"} | (
        {"phone-number"} if any(r.startswith("phone-number:") for r in removal.removed) else set()
    )
    assert (
        "Admin Portal" in reasons["device"] and "worker adds them" in reasons["forwarding-number"]
    )
    assert result.outcome == Outcome.PARTIAL


async def test_restore_reports_a_deleted_call_queue_and_keeps_the_agents_other_queues(
    fake: FakeRingCentral, rc: RingCentralConnector
) -> None:
    ext = fake.add_user("a.lee@example.org", queues=("2001",))
    account = await _account(rc, "a.lee@example.org")
    del fake.queues["2002"], fake.queue_members["2002"]
    result = await rc.restore_access(account, ("call-queue:2002", "call-queue:2001"))
    assert result.added == ("call-queue:2001",)
    assert [(s.item, s.reason) for s in result.skipped] == [
        ("call-queue:2002", "the call queue no longer exists")
    ]
    assert ext.id in fake.queue_members["2001"]
    assert result.outcome == Outcome.PARTIAL
    assert not [r for r in fake.requests if r.url.path.endswith("/call-queues")], (
        "nothing to put back: no full update of the agent's queues was sent"
    )
