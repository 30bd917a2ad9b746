"""Throttling, token handling and error translation of the Graph transport.

The connector sends every call once: throttling, 5xx and timeouts surface as
TransientConnectorError (with Graph's Retry-After) for the service's executor, which re-runs
the step. ``rerun`` below does what the executor does, so that these tests show a step getting
through a storm with exactly one Graph call per attempt (no retries stacked inside).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import httpx
import pytest

from connectors.base import Account, Outcome, PermanentConnectorError, TransientConnectorError
from connectors.entra import EntraConnector
from connectors.entra.graph import GraphTokenError
from tests.unit.entra.fake_graph import AUTHORITY, CLIENT_SECRET, TENANT, FakeEntra, Fault

pytestmark = pytest.mark.anyio

USER = r"/users/[^/]+"
T = TypeVar("T")


async def rerun(
    step: Callable[[], Awaitable[T]], attempts: int = 10
) -> tuple[T, list[TransientConnectorError]]:
    """Run ``step`` again after each transient error, as the executor does (without its
    waits); the result and the errors of the failed attempts."""
    errors: list[TransientConnectorError] = []
    for _ in range(attempts):
        try:
            return await step(), errors
        except TransientConnectorError as exc:
            errors.append(exc)
    raise AssertionError(f"still failing after {attempts} attempts: {errors[-1]}")


def graph_calls(fake: FakeEntra, method: str, pattern: str) -> int:
    import re

    return sum(1 for m, p in fake.log if m == method and re.fullmatch(pattern, p))


async def test_429_storm_is_ridden_out_by_step_retries_one_call_per_attempt(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid = fake.add_user("W1")
    fake.faults.append(Fault("GET", USER, 429, times=3, retry_after="0"))
    fake.faults.append(Fault("PATCH", USER, 429, times=2, retry_after="0"))
    result, errors = await rerun(lambda: connector.disable(Account("idp", uid)))
    assert result.outcome == Outcome.DONE
    assert [e.retry_after for e in errors] == [0.0] * 5
    # Five failed attempts and the good one: one GET (and a PATCH once the GET got through)
    # per attempt, nothing re-sent inside the connector.
    assert graph_calls(fake, "GET", USER) == 6 and graph_calls(fake, "PATCH", USER) == 3
    assert fake.users[uid]["accountEnabled"] is False


async def test_a_throttled_call_is_raised_at_once_with_retry_after(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid = fake.add_user("W1")
    fake.faults.append(Fault("GET", USER, 429, times=100, retry_after="1"))
    with pytest.raises(TransientConnectorError) as info:
        with anyio.fail_after(10):
            await connector.disable(Account("idp", uid))
    assert info.value.retry_after == 1.0 and info.value.account_id == uid
    assert graph_calls(fake, "GET", USER) == 1, "retries are the executor's, not the connector's"


async def test_long_retry_after_goes_back_to_the_engine_at_once(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid = fake.add_user("W1")
    fake.faults.append(Fault("GET", USER, 429, times=1, retry_after="120"))
    started = time.monotonic()
    with pytest.raises(TransientConnectorError) as info:
        await connector.disable(Account("idp", uid))
    assert time.monotonic() - started < 2
    assert info.value.retry_after == 120.0
    assert graph_calls(fake, "GET", USER) == 1


async def test_503_and_500_and_timeouts_are_transient_and_step_retries_get_through(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid = fake.add_user("W1")
    fake.faults.append(
        Fault("GET", USER, 503, times=1, retry_after="0", code="serviceNotAvailable")
    )
    fake.faults.append(Fault("PATCH", USER, 500, times=1, code="generalException"))
    fake.timeouts = 1
    result, errors = await rerun(lambda: connector.disable(Account("idp", uid)))
    assert result.outcome == Outcome.DONE
    assert fake.timeouts == 0
    assert len(errors) == 3 and any(e.retry_after == 0.0 for e in errors)


async def test_persistent_timeouts_become_transient(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid = fake.add_user("W1")
    fake.timeouts = 100
    with pytest.raises(TransientConnectorError, match="timed out") as info:
        await connector.disable(Account("idp", uid))
    assert isinstance(info.value.__cause__, httpx.TimeoutException)


async def test_403_names_the_missing_permission(fake: FakeEntra, connector: EntraConnector) -> None:
    uid = fake.add_user("W1")
    fake.faults.append(Fault("PATCH", USER, 403, times=1, code="Authorization_RequestDenied"))
    with pytest.raises(PermanentConnectorError, match=r"User\.EnableDisableAccount\.All") as info:
        await connector.disable(Account("idp", uid))
    assert info.value.connector == "idp" and info.value.account_id == uid
    assert graph_calls(fake, "PATCH", USER) == 1, "a 403 is not retried"


async def test_401_refreshes_the_token_once(fake: FakeEntra, connector: EntraConnector) -> None:
    uid = fake.add_user("W1")
    account = Account("idp", uid)
    await connector.read_state(account)
    assert fake.token_requests == 1
    await connector.read_state(account)
    assert fake.token_requests == 1, "msal's cache serves the second call"
    fake.expire_tokens()
    state = await connector.read_state(account)
    assert state.enabled and fake.token_requests == 2


async def test_401_after_a_refresh_is_permanent(fake: FakeEntra, connector: EntraConnector) -> None:
    uid = fake.add_user("W1")
    fake.reject_tokens = True
    with pytest.raises(PermanentConnectorError, match="rejected a freshly issued token"):
        await connector.disable(Account("idp", uid))
    assert fake.token_requests == 2, "exactly one refresh"
    assert fake.log == []  # every call was refused at the door


async def test_wrong_client_secret_is_permanent_with_msal_error_code(
    fake: FakeEntra, make_connector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIFECYCLE_TEST_GRAPH_SECRET", "wrong-secret-value-123")
    uid = fake.add_user("W1")
    async with make_connector() as connector:
        with pytest.raises(PermanentConnectorError) as info:
            await connector.disable(Account("idp", uid))
    message = str(info.value)
    assert "invalid_client" in message and "AADSTS7000215" in message
    assert isinstance(info.value, GraphTokenError)
    assert info.value.msal_error == "invalid_client" and info.value.aadsts == ("AADSTS7000215",)
    assert "wrong-secret-value-123" not in message and CLIENT_SECRET not in message
    assert info.value.__cause__ is None, "msal's result (with its description) is not chained"


async def test_token_endpoint_server_error_is_transient(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid = fake.add_user("W1")
    fake.token_failure = (
        503,
        {"error": "temporarily_unavailable", "error_description": "AADSTS90033: busy"},
    )
    with pytest.raises(TransientConnectorError, match="token"):
        await connector.disable(Account("idp", uid))


async def test_token_endpoint_unreachable_is_transient(
    fake: FakeEntra, graph, connector: EntraConnector
) -> None:
    uid = fake.add_user("W1")
    graph.routes.clear()
    graph.get(f"{AUTHORITY}/{TENANT}/v2.0/.well-known/openid-configuration").mock(
        side_effect=httpx.ConnectError("connection refused")
    )
    with pytest.raises(TransientConnectorError, match="tenant discovery"):
        await connector.disable(Account("idp", uid))


async def test_unknown_tenant_is_permanent(fake: FakeEntra, graph, connector) -> None:
    graph.routes.clear()
    graph.get(f"{AUTHORITY}/{TENANT}/v2.0/.well-known/openid-configuration").mock(
        return_value=httpx.Response(
            400,
            json={
                "error": "invalid_tenant",
                "error_description": "AADSTS90002: Tenant 'contoso.onmicrosoft.com' not found.",
                "error_codes": [90002],
            },
        )
    )
    with pytest.raises(PermanentConnectorError, match="tenant_id"):
        await connector.disable(Account("idp", "5f3c9d1e-0000-4000-8000-000000000001"))


async def test_batch_with_mixed_item_statuses(fake: FakeEntra, connector: EntraConnector) -> None:
    keep = fake.add_group("Throttled once")
    gone = fake.add_group("Already gone")
    plain = fake.add_group("Plain")
    uid = fake.add_user("W1", groups=[keep, gone, plain])
    aid = fake.add_app_role(uid)
    fake.faults.append(Fault("DELETE", rf"/groups/{keep}/members/{uid}/\$ref", 429, 1, "0"))
    fake.faults.append(
        Fault(
            "DELETE",
            rf"/groups/{gone}/members/{uid}/\$ref",
            404,
            1,
            code="Request_ResourceNotFound",
        )
    )
    result = await connector.remove_access(Account("idp", uid))
    assert f"group:{keep}" in result.removed and f"group:{plain}" in result.removed
    assert f"group:{gone}" not in result.removed  # Graph said it was not there
    assert any(aid for r in result.removed if r.startswith("appRole:"))
    # The throttled item was re-sent on its own, in a second envelope.
    batched_keep = [p for m, p in fake.log if m == "B DELETE" and keep in p]
    batched_plain = [p for m, p in fake.log if m == "B DELETE" and plain in p]
    assert len(batched_keep) == 2 and len(batched_plain) == 1


async def test_batch_item_forbidden_is_permanent_and_names_permission(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid = fake.add_user("W1")
    fake.add_app_role(uid)
    fake.faults.append(
        Fault(
            "DELETE",
            rf"/users/{uid}/appRoleAssignments/.*",
            403,
            1,
            code="Authorization_RequestDenied",
        )
    )
    with pytest.raises(PermanentConnectorError, match=r"AppRoleAssignment\.ReadWrite\.All"):
        await connector.remove_access(Account("idp", uid))


async def test_batch_items_throttled_too_long_are_transient(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    group = fake.add_group("G")
    uid = fake.add_user("W1", groups=[group])
    fake.faults.append(Fault("DELETE", rf"/groups/{group}/members/.*", 429, 100, "300"))
    with pytest.raises(TransientConnectorError) as info:
        await connector.remove_access(Account("idp", uid))
    assert info.value.retry_after == 300.0


async def test_a_burst_of_terminations_shares_one_client_with_bounded_concurrency(
    fake: FakeEntra, make_connector
) -> None:
    fake.latency = 0.01
    uids = []
    for n in range(30):
        group = fake.add_group(f"G{n}")
        uids.append(fake.add_user(f"W{n:04d}", groups=[group]))
    async with make_connector(max_concurrency=4) as connector:
        client = connector.graph.http

        async def terminate(uid: str) -> None:
            account = Account("idp", uid)
            await connector.disable(account)
            await connector.revoke_sessions(account)
            await connector.remove_access(account)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for uid in uids:
                    group.start_soon(terminate, uid)
        assert connector.graph.http is client
    assert fake.max_in_flight == 4
    assert all(fake.users[u]["accountEnabled"] is False for u in uids)
    assert not any(fake.members[g] for g in fake.members)
    assert fake.token_requests == 1, "one msal application and one cached token for the burst"


async def test_next_link_to_another_host_is_refused(
    fake: FakeEntra, graph, connector: EntraConnector
) -> None:
    fake.add_user("W1")
    fake.page_size = 1
    fake.add_user("W2")
    original = fake._list_users

    def evil(**kwargs):  # type: ignore[no-untyped-def]
        status, body, headers = original(**kwargs)
        body["@odata.nextLink"] = "https://attacker.example/v1.0/users?$skiptoken=1"
        return status, body, headers

    fake._list_users = evil  # type: ignore[method-assign]
    with pytest.raises(PermanentConnectorError, match="another host"):
        _ = [state async for state in connector.list_accounts()]


async def test_secret_and_access_token_never_reach_the_logs(
    fake: FakeEntra,
    make_connector,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    uid = fake.add_user("W1", groups=[fake.add_group("G")])
    fake.add_phone(uid, "mobile")
    fake.faults.append(Fault("GET", USER, 429, times=1, retry_after="0"))
    errors: list[str] = []
    async with make_connector() as connector:
        account = Account("idp", uid)
        with pytest.raises(TransientConnectorError):
            await connector.disable(account)  # throttled: the executor would run it again
        await connector.disable(account)
        await connector.revoke_sessions(account)
        await connector.remove_access(account)
        await connector.read_state(account)
        fake.expire_tokens()
        await connector.read_state(account)
        fake.reject_tokens = True
        with pytest.raises(PermanentConnectorError) as info:
            await connector.read_state(account)
        errors.append(str(info.value))
    monkeypatch.setenv("LIFECYCLE_TEST_GRAPH_SECRET", "another-wrong-secret")
    async with make_connector() as connector:
        with pytest.raises(PermanentConnectorError) as info:
            await connector.read_state(Account("idp", uid))
        errors.append(str(info.value))
    assert fake.tokens and caplog.records, "the test must have seen tokens and log records"
    text = caplog.text + "\n".join(errors)
    for record in caplog.records:
        text += repr(record.__dict__)
    assert CLIENT_SECRET not in text and "another-wrong-secret" not in text
    for token in fake.tokens:
        assert token not in text
        assert token[-20:] not in text


async def test_creating_a_user_is_never_retried_inside_the_connector(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    from connectors.base import DesiredAccess, Worker

    fake.faults.append(Fault("POST", "/users", 429, times=1, retry_after="0"))
    with pytest.raises(TransientConnectorError) as info:
        await connector.create_account(Worker("W0800"), DesiredAccess())
    assert info.value.retry_after == 0.0
    assert graph_calls(fake, "POST", "/users") == 1 and not fake.users
    # The executor's next attempt looks for the account first, then creates it once.
    account = await connector.create_account(Worker("W0800"), DesiredAccess())
    assert account.account_id in fake.users
    assert graph_calls(fake, "POST", "/users") == 2

    fake.faults.append(Fault("POST", "/users", 502, times=1, code="BadGateway"))
    with pytest.raises(TransientConnectorError, match="502"):
        await connector.create_account(Worker("W0801"), DesiredAccess())
    assert graph_calls(fake, "POST", "/users") == 3, "a 5xx create is left to the engine"


async def test_a_5xx_with_retry_after_hands_the_wait_to_the_executor(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid = fake.add_user("W1")
    fake.faults.append(Fault("GET", USER, 502, times=1, retry_after="7", code="BadGateway"))
    with pytest.raises(TransientConnectorError) as info:
        await connector.disable(Account("idp", uid))
    assert info.value.retry_after == 7.0
    assert graph_calls(fake, "GET", USER) == 1
