"""SCIM error classification, auth and configuration, with respx.

The same statuses are also produced by a real scim2-server in
tests/integration/scim/test_scim_behaviour.py where it can produce them; 429 and a 412 to a
request without ``If-Match`` it cannot, so those exist only here. Bodies follow RFC 7644 §3.12.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx

from connectors.base import (
    Account,
    ConnectorConfigError,
    ConnectorContext,
    PermanentConnectorError,
    TransientConnectorError,
    Worker,
)
from connectors.scim import ScimConnector

pytestmark = pytest.mark.anyio

BASE = "https://ehr.example.org/scim/v2"
TOKEN = "s3cr3t-bearer-value"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SPC: dict[str, Any] = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
    "patch": {"supported": True},
    "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
    "filter": {"supported": True, "maxResults": 200},
    "changePassword": {"supported": False},
    "sort": {"supported": False},
    "etag": {"supported": False},
    "authenticationSchemes": [
        {"type": "oauthbearertoken", "name": "OAuth Bearer Token", "description": "Bearer"}
    ],
}
USER: dict[str, Any] = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "id": "2819c223-7f76-453a-919d-413861904646",
    "externalId": "W0042",
    "userName": "a.lee@example.org",
    "active": True,
    "meta": {"resourceType": "User", "created": "2026-01-23T04:56:22Z"},
}
ACCOUNT = Account("ehr", USER["id"], login=USER["userName"], worker_id="W0042")


def scim_error(status: int, detail: str, scim_type: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"schemas": [ERROR], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return httpx.Response(status, json=body, headers={"Content-Type": "application/scim+json"})


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        router.get("/ServiceProviderConfig").respond(json=SPC)
        router.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User").respond(
            json={"id": "urn:ietf:params:scim:schemas:core:2.0:User", "attributes": []}
        )
        yield router


def connector(**kwargs: Any) -> ScimConnector:
    from pydantic import SecretStr

    return ScimConnector(
        "ehr", base_url=BASE, client=httpx.AsyncClient(), token=SecretStr(TOKEN), **kwargs
    )


@pytest.mark.parametrize(
    ("response", "kind", "words"),
    [
        (scim_error(400, "bad filter", "invalidFilter"), PermanentConnectorError, "invalidFilter"),
        (scim_error(400, "nope", "invalidValue"), PermanentConnectorError, "rejected the request"),
        (scim_error(401, "token expired"), PermanentConnectorError, "renew 'token'"),
        (scim_error(403, "forbidden"), PermanentConnectorError, "lack permission"),
        (scim_error(404, "User not found"), PermanentConnectorError, "does not exist"),
        (scim_error(409, "taken", "uniqueness"), PermanentConnectorError, "uniqueness"),
        (scim_error(412, "changed"), PermanentConnectorError, "requires a precondition"),
        (scim_error(501, "no PATCH"), PermanentConnectorError, "does not implement"),
        (scim_error(429, "slow down"), TransientConnectorError, "rate limited"),
        (scim_error(500, "boom"), TransientConnectorError, "internal error"),
        (scim_error(503, "maintenance"), TransientConnectorError, "internal error"),
        (httpx.Response(502, text="<html>bad gateway</html>"), TransientConnectorError, "502"),
    ],
)
async def test_error_statuses_are_classified(
    api: respx.MockRouter, response: httpx.Response, kind: type[Exception], words: str
) -> None:
    api.get(f"/Users/{USER['id']}").mock(return_value=response)
    async with connector() as scim:
        with pytest.raises(kind) as info:
            await scim.read_state(ACCOUNT)
    error = info.value
    assert type(error) is kind or issubclass(type(error), kind)
    assert words in str(error)
    assert f"HTTP {response.status_code}" in str(error)
    assert error.connector == "ehr" and error.account_id == ACCOUNT.account_id  # type: ignore[attr-defined]
    assert TOKEN not in str(error)


async def test_429_carries_retry_after_seconds_and_dates(api: respx.MockRouter) -> None:
    route = api.get(f"/Users/{USER['id']}")
    route.side_effect = [
        httpx.Response(
            429, headers={"Retry-After": "41"}, json={"schemas": [ERROR], "status": "429"}
        ),
        httpx.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
    ]
    async with connector() as scim:
        with pytest.raises(TransientConnectorError) as first:
            await scim.read_state(ACCOUNT)
        with pytest.raises(TransientConnectorError) as second:
            await scim.read_state(ACCOUNT)
    assert first.value.retry_after == 41.0
    assert second.value.retry_after == 0.0  # a date in the past means "now"


@pytest.mark.parametrize(
    "failure", [httpx.ConnectTimeout("slow"), httpx.ConnectError("refused"), httpx.ReadTimeout("x")]
)
async def test_transport_failures_are_transient(
    api: respx.MockRouter, failure: httpx.HTTPError
) -> None:
    api.get(f"/Users/{USER['id']}").mock(side_effect=failure)
    async with connector() as scim:
        with pytest.raises(TransientConnectorError) as info:
            await scim.read_state(ACCOUNT)
    assert info.value.retry_after is None
    assert type(failure).__name__ in str(info.value)


async def test_patch_disable_sends_rfc7644_patchop(api: respx.MockRouter) -> None:
    api.get(f"/Users/{USER['id']}").side_effect = [
        httpx.Response(200, json=USER),
        httpx.Response(200, json={**USER, "active": False}),
    ]
    patch = api.patch(f"/Users/{USER['id']}").respond(
        200, json={**USER, "active": False}, headers={"X-Request-Id": "req-7"}
    )
    async with connector() as scim:
        result = await scim.disable(ACCOUNT)
    sent = patch.calls.last.request
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Content-Type"] == "application/scim+json"
    import json

    assert json.loads(sent.content) == {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": False}],
    }
    assert result.vendor_request_id == "req-7"


async def test_disable_that_does_not_stick_is_permanent(api: respx.MockRouter) -> None:
    api.get(f"/Users/{USER['id']}").respond(200, json=USER)  # still active after the PATCH
    api.patch(f"/Users/{USER['id']}").respond(204)
    async with connector() as scim:
        with pytest.raises(PermanentConnectorError, match="still reads active"):
            await scim.disable(ACCOUNT)


async def test_filter_values_are_escaped_on_the_wire(api: respx.MockRouter) -> None:
    search = api.get("/Users").respond(
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": 1,
            "startIndex": 1,
            "itemsPerPage": 1,
            "Resources": [USER],  # a lenient server returning someone else
        }
    )
    hostile = 'x" or userName pr or "y'
    async with connector(match=["userName"]) as scim:
        found = await scim.find_account(Worker(worker_id="W9", upn=hostile))
    assert found is None, "a hit that does not really match must be dropped"
    sent = search.calls.last.request.url.params["filter"]
    assert sent == 'userName eq "x\\" or userName pr or \\"y"'


async def test_oauth_client_credentials_are_fetched_once_and_refreshed_on_401(
    api: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EHR_CLIENT_SECRET", "client-secret-value")
    token = api.post(url="https://login.example.org/oauth2/token")
    token.side_effect = [
        httpx.Response(
            200, json={"access_token": "tok-1", "token_type": "Bearer", "expires_in": 3600}
        ),
        httpx.Response(
            200, json={"access_token": "tok-2", "token_type": "Bearer", "expires_in": 3600}
        ),
    ]
    user = api.get(f"/Users/{USER['id']}")
    user.side_effect = [
        httpx.Response(200, json=USER),
        scim_error(401, "token revoked"),
        httpx.Response(200, json=USER),
    ]
    api.get("/Groups").respond(
        json={"schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"], "totalResults": 0}
    )
    scim = ScimConnector.from_config(
        "ehr",
        {
            "kind": "scim",
            "base_url": BASE,
            "oauth": {
                "token_url": "https://login.example.org/oauth2/token",
                "client_id": "lifecycle",
                "client_secret": "env:EHR_CLIENT_SECRET",
                "scope": "scim.write",
            },
        },
        ConnectorContext(),
    )
    async with scim:
        await scim.read_state(ACCOUNT)
        await scim.read_state(ACCOUNT)
    assert token.call_count == 2
    first = token.calls[0].request
    assert first.headers["Authorization"].startswith("Basic ")
    assert b"grant_type=client_credentials" in first.content
    assert b"scope=scim.write" in first.content
    assert user.calls[0].request.headers["Authorization"] == "Bearer tok-1"
    assert user.calls[2].request.headers["Authorization"] == "Bearer tok-2"


async def test_refused_oauth_client_is_permanent() -> None:
    from pydantic import SecretStr

    from connectors._http import OAuthTokenSource

    with respx.mock:
        respx.post("https://login.example.org/token").respond(401, json={"error": "invalid_client"})
        async with httpx.AsyncClient() as client:
            source = OAuthTokenSource(
                client,
                connector="ehr",
                token_url="https://login.example.org/token",
                client_id="lifecycle",
                client_secret=SecretStr("wrong-secret"),
                form={"grant_type": "client_credentials"},
            )
            with pytest.raises(PermanentConnectorError) as info:
                await source.token()
    assert "invalid_client" in str(info.value) and "client_id" in str(info.value)
    assert "wrong-secret" not in str(info.value)


# ----------------------------------------------------------------------------- configuration


def test_config_reads_bearer_token_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHR_SCIM_TOKEN", TOKEN)
    scim = ScimConnector.from_config(
        "ehr", {"kind": "scim", "base_url": BASE, "token": "env:EHR_SCIM_TOKEN"}, ConnectorContext()
    )
    assert scim.base_url == BASE


def test_config_reads_bearer_token_from_file(tmp_path: Any) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    ScimConnector.from_config(
        "ehr", {"kind": "scim", "base_url": BASE, "token": f"file:{secret}"}, ConnectorContext()
    )


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"kind": "scim", "token": "env:X"}, "base_url"),
        ({"kind": "scim", "base_url": BASE}, "exactly one of 'token'"),
        ({"kind": "scim", "base_url": BASE, "token": "env:X", "tokne": "x"}, "tokne"),
        ({"kind": "scim", "base_url": "ftp://x", "token": "env:X"}, "https://"),
        ({"kind": "scim", "base_url": "http://ehr.example.org/v2", "token": "env:X"}, "in clear"),
        ({"kind": "scim", "base_url": BASE, "token": "env:X", "page_size": 0}, "page_size"),
    ],
)
def test_bad_options_are_config_errors_naming_the_table(
    options: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConnectorConfigError) as info:
        ScimConnector.from_config("ehr", options, ConnectorContext())
    assert "[connectors.ehr]" in str(info.value)
    assert words in str(info.value)


def test_inline_token_is_refused_outside_demo_mode() -> None:
    with pytest.raises(ConnectorConfigError) as info:
        ScimConnector.from_config(
            "ehr", {"kind": "scim", "base_url": BASE, "token": TOKEN}, ConnectorContext()
        )
    assert TOKEN not in str(info.value)


async def test_service_without_discovery_endpoints_gets_the_safe_defaults() -> None:
    with respx.mock(base_url=BASE, assert_all_called=False) as api:
        api.get("/ServiceProviderConfig").mock(return_value=scim_error(404, "no such endpoint"))
        api.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User").mock(
            return_value=scim_error(501, "not implemented")
        )
        async with connector() as scim:
            features = await scim.features()
    assert (features.patch, features.filter, features.etag) == (False, False, False)
    assert (features.roles, features.entitlements) == (False, False)


async def test_refused_discovery_is_not_mistaken_for_a_bare_service() -> None:
    with respx.mock(base_url=BASE) as api:
        api.get("/ServiceProviderConfig").mock(return_value=scim_error(403, "forbidden"))
        async with connector() as scim:
            with pytest.raises(PermanentConnectorError, match="HTTP 403"):
                await scim.find_account(Worker(worker_id="W1"))


async def test_a_service_ignoring_start_index_does_not_loop(api: respx.MockRouter) -> None:
    api.get("/Users").respond(
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": 500,
            "startIndex": 1,
            "itemsPerPage": 1,
            "Resources": [USER],
        }
    )
    async with connector() as scim:
        with pytest.raises(PermanentConnectorError, match="does not honour startIndex"):
            _ = [state async for state in _users(scim)]


async def _users(scim: ScimConnector) -> Any:
    async for item in scim.api.pages("/Users", what="listing users"):
        yield item
