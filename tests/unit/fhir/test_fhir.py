"""FHIR connector behaviour against the stateful fake: wire shapes, versioning, errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from connectors.base import (
    Account,
    ConnectorConfigError,
    ConnectorContext,
    Outcome,
    PermanentConnectorError,
    TransientConnectorError,
    Worker,
)
from connectors.fhir import FhirConnector
from tests.unit.fhir.fake import SYSTEM, FakeFhir, outcome

pytestmark = pytest.mark.anyio


async def _found(fhir: FhirConnector, worker_id: str) -> Account:
    account = await fhir.find_account(Worker(worker_id=worker_id))
    assert account is not None
    return account


async def test_find_by_identifier_sends_an_escaped_token(
    fake: FakeFhir, fhir: FhirConnector
) -> None:
    tricky = "W1,W2|x$y\\z"
    pid = fake.add_practitioner(tricky)
    fake.add_practitioner("W1")  # would match if the comma were taken as an OR
    account = await _found(fhir, tricky)
    assert account.account_id == pid and account.login == f"{tricky}@example.org"
    search = next(r for r in fake.requests if r.url.path.endswith("/Practitioner"))
    assert search.url.params["identifier"] == f"{SYSTEM}|W1\\,W2\\|x\\$y\\\\z"
    assert await fhir.find_account(Worker(worker_id="W1,W2")) is None


async def test_identifier_under_another_system_does_not_match(
    fake: FakeFhir, fhir: FhirConnector
) -> None:
    fake.add_practitioner("1234567893")  # equals the NPI value every fake practitioner carries
    found = await fhir.find_account(Worker(worker_id="1234567893"))
    assert found is not None
    assert fake.practitioners[found.account_id]["identifier"][1]["value"] == "1234567893"


async def test_duplicates_are_permanent(fake: FakeFhir, fhir: FhirConnector) -> None:
    fake.add_practitioner("W7")
    fake.add_practitioner("W7")
    with pytest.raises(PermanentConnectorError, match="duplicate"):
        await fhir.find_account(Worker(worker_id="W7"))


async def test_disable_puts_the_whole_resource_conditionally(
    fake: FakeFhir, fhir: FhirConnector
) -> None:
    pid = fake.add_practitioner("W9", roles=("scheduler",))
    before = json.loads(json.dumps(fake.practitioners[pid]))
    account = await _found(fhir, "W9")
    result = await fhir.disable(account)
    put = next(r for r in fake.requests if r.method == "PUT")
    assert put.headers["If-Match"] == 'W/"1"'
    assert put.headers["Content-Type"] == "application/fhir+json"
    sent = json.loads(put.content)
    assert sent["active"] is False
    assert {k: v for k, v in sent.items() if k != "active"} == {
        k: v for k, v in before.items() if k != "active"
    }, "nothing but active may change"
    assert result.outcome == Outcome.DONE and result.vendor_request_id
    assert fake.practitioners[pid]["active"] is False
    assert fake.active_roles(pid) == {"scheduler"}, "disable leaves the roles to remove_access"
    assert (await fhir.disable(account)).outcome == Outcome.ALREADY


async def test_remove_access_deactivates_every_role_across_pages(
    fake: FakeFhir, fhir: FhirConnector
) -> None:
    pid = fake.add_practitioner("W10", roles=("scheduler", "billing", "intake"))
    account = await _found(fhir, "W10")
    assert (await fhir.read_state(account)).entitlements == {"scheduler", "billing", "intake"}
    result = await fhir.remove_access(account)
    assert set(result.removed) == {"scheduler", "billing", "intake"}
    assert result.outcome == Outcome.DONE
    assert fake.active_roles(pid) == set()
    assert all(r["meta"]["versionId"] == "2" for r in fake.roles.values())
    state = await fhir.read_state(account)
    assert state.entitlements == frozenset()
    assert (await fhir.remove_access(account)).outcome == Outcome.ALREADY


async def test_a_concurrent_edit_is_transient_and_never_overwritten(
    fake: FakeFhir, fhir: FhirConnector
) -> None:
    pid = fake.add_practitioner("W11")
    account = await _found(fhir, "W11")

    def edit_meanwhile() -> None:  # returns nothing: the PUT then meets a newer version
        fake.practitioners[pid]["meta"]["versionId"] = "2"  # someone else saved in between
        fake.practitioners[pid]["name"][0]["family"] = "Lee-Smith"
        fake.before_put = None

    fake.before_put = edit_meanwhile
    with pytest.raises(TransientConnectorError) as info:
        await fhir.disable(account)
    assert info.value.retry_after == 0.0 and "HTTP 412" in str(info.value)
    assert fake.practitioners[pid]["active"] is True
    # The engine's retry re-reads and now succeeds, keeping the other edit.
    assert (await fhir.disable(account)).outcome == Outcome.DONE
    assert fake.practitioners[pid]["name"][0]["family"] == "Lee-Smith"


@pytest.mark.parametrize(
    ("response", "kind", "words"),
    [
        (
            outcome(429, "throttled", "Too many requests", **{"Retry-After": "30"}),
            TransientConnectorError,
            "rate limited",
        ),
        (
            outcome(500, "exception", "database unavailable"),
            TransientConnectorError,
            "database unavailable",
        ),
        # without our If-Match a 409 is a business-rule refusal, not a lost race
        (outcome(409, "conflict", "Version conflict"), PermanentConnectorError, "409"),
        (
            outcome(403, "forbidden", "scope system/Practitioner.write required"),
            PermanentConnectorError,
            "write scope",
        ),
        (outcome(410, "deleted", "Resource was deleted"), PermanentConnectorError, "deleted"),
        (
            outcome(422, "processing", "Practitioner.name: minimum required = 1"),
            PermanentConnectorError,
            "minimum required",
        ),
    ],
)
async def test_errors_are_classified(
    fake: FakeFhir, fhir: FhirConnector, response: httpx.Response, kind: type[Exception], words: str
) -> None:
    fake.add_practitioner("W12")
    account = await _found(fhir, "W12")
    fake.fail_next.append(response)
    with pytest.raises(kind) as info:
        await fhir.disable(account)
    assert words in str(info.value)
    if response.status_code == 429:
        assert isinstance(info.value, TransientConnectorError) and info.value.retry_after == 30.0


async def test_a_409_to_our_conditional_write_is_a_lost_race(
    fake: FakeFhir, fhir: FhirConnector
) -> None:
    fake.add_practitioner("W13")
    account = await _found(fhir, "W13")
    fake.fail_next_put.append(outcome(409, "conflict", "Version conflict"))
    with pytest.raises(TransientConnectorError, match="version conflict") as info:
        await fhir.disable(account)
    assert info.value.retry_after == 0.0


async def test_timeouts_are_transient(fake: FakeFhir, fhir: FhirConnector) -> None:
    fake.fail_next.append(httpx.ReadTimeout("slow"))
    with pytest.raises(TransientConnectorError, match="timed out"):
        await fhir.read_state(Account("ehr", "x"))


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"base_url": "https://x/fhir", "token": "env:T"}, "identifier_system"),
        ({"base_url": "https://x/fhir", "identifier_system": SYSTEM}, "exactly one of 'token'"),
        (
            {
                "base_url": "https://x/fhir",
                "token": "env:T",
                "identifier_system": SYSTEM,
                "identifier_from": "ssn",
            },
            "identifier_from",
        ),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], words: str) -> None:
    with pytest.raises(ConnectorConfigError) as info:
        FhirConnector.from_config("ehr", {"kind": "fhir", **options}, ConnectorContext())
    assert words in str(info.value) and "[connectors.ehr]" in str(info.value)


async def test_read_only_roles_are_skipped_with_the_reason(
    fake: FakeFhir, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.unit.fhir.fake import BASE, TOKEN

    monkeypatch.setenv("EHR_FHIR_TOKEN", TOKEN)
    pid = fake.add_practitioner("W20", roles=("scheduler",))
    connector = FhirConnector.from_config(
        "ehr",
        {
            "kind": "fhir",
            "base_url": BASE,
            "token": "env:EHR_FHIR_TOKEN",
            "identifier_system": SYSTEM,
            "update_roles": False,
        },
        ConnectorContext(),
    )
    async with connector:
        account = await _found(connector, "W20")
        result = await connector.remove_access(account)
    assert result.outcome == Outcome.PARTIAL and result.removed == ()
    assert [s.item for s in result.skipped] == ["scheduler"]
    assert "read-only" in result.skipped[0].reason
    assert not any(r.method == "PUT" for r in fake.requests)
    assert fake.active_roles(pid) == {"scheduler"}


async def test_a_server_refusing_role_updates_is_reported_not_fatal(
    fake: FakeFhir, fhir: FhirConnector
) -> None:
    fake.add_practitioner("W21", roles=("billing",))
    account = await _found(fhir, "W21")

    def refuse() -> httpx.Response:
        return outcome(405, "not-supported", "PUT is not supported")

    fake.before_put = refuse
    result = await fhir.remove_access(account)
    assert result.outcome == Outcome.PARTIAL
    assert "update_roles = false" in result.skipped[0].reason


async def test_oauth_client_credentials(fake: FakeFhir, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.fhir.fake import BASE

    monkeypatch.setenv("EHR_FHIR_SECRET", "fhir-client-secret")
    fake.add_practitioner("W30")
    connector = FhirConnector.from_config(
        "ehr",
        {
            "kind": "fhir",
            "base_url": BASE,
            "identifier_system": SYSTEM,
            "oauth": {
                "token_url": "https://emr.example.org/oauth2/default/token",
                "client_id": "lifecycle",
                "client_secret": "env:EHR_FHIR_SECRET",
            },
        },
        ConnectorContext(),
    )
    async with connector:
        account = await _found(connector, "W30")
        await connector.disable(account)
    assert len(fake.token_requests) == 1
    assert b"scope=system%2FPractitioner.write" in fake.token_requests[0].content


async def test_a_next_link_to_another_host_is_refused(fake: FakeFhir, fhir: FhirConnector) -> None:
    from connectors.base import Worker

    fake.fail_next.append(
        httpx.Response(
            200,
            json={
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [],
                "link": [
                    {"relation": "next", "url": "https://elsewhere.example/fhir/Practitioner?p=2"}
                ],
            },
        )
    )
    with pytest.raises(PermanentConnectorError, match="leaves"):
        await fhir.find_account(Worker(worker_id="W77"))
    assert all(r.url.host != "elsewhere.example" for r in fake.requests)


async def test_enable_and_restore_round_trip_practitioner_and_roles(
    fake: FakeFhir, fhir: FhirConnector
) -> None:
    pid = fake.add_practitioner("W30", roles=("scheduler", "billing"))
    account = await _found(fhir, "W30")
    await fhir.disable(account)
    removal = await fhir.remove_access(account)
    assert fake.practitioners[pid]["active"] is False and fake.active_roles(pid) == set()

    enabled = await fhir.enable(account)
    assert enabled.outcome == Outcome.DONE and fake.practitioners[pid]["active"] is True
    put = [r for r in fake.requests if r.method == "PUT" and pid in r.url.path][-1]
    assert put.headers["If-Match"].startswith('W/"')  # conditional, like the disable
    assert (await fhir.enable(account)).outcome == Outcome.ALREADY

    result = await fhir.restore_access(account, removal.removed)
    assert result.outcome == Outcome.DONE and set(result.added) == {"scheduler", "billing"}
    assert fake.active_roles(pid) == {"scheduler", "billing"}
    again = await fhir.restore_access(account, removal.removed)
    assert again.outcome == Outcome.ALREADY and set(again.added) == {"scheduler", "billing"}


async def test_restore_reports_a_role_the_practitioner_no_longer_carries(
    fake: FakeFhir, fhir: FhirConnector
) -> None:
    pid = fake.add_practitioner("W31", roles=("scheduler",))
    account = await _found(fhir, "W31")
    removal = await fhir.remove_access(account)
    result = await fhir.restore_access(account, (*removal.removed, "billing"))
    assert result.outcome == Outcome.PARTIAL and result.added == ("scheduler",)
    assert [(s.item, s.reason) for s in result.skipped] == [
        ("billing", "no PractitionerRole of this practitioner carries it now")
    ]
    assert fake.active_roles(pid) == {"scheduler"}
