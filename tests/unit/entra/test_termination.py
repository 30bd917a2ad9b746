"""Termination on Entra: disable, revoke sessions, remove access, read back and verify."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import Account, AccountState, Outcome, PermanentConnectorError, Worker
from connectors.entra import EntraConnector
from connectors.entra.model import odata_quote, session_revocation_status
from tests.unit.entra.fake_graph import FakeEntra

pytestmark = pytest.mark.anyio

SKU_E3 = "6fd2c87f-b296-42f0-b197-1e91e994b900"
SKU_VISIO = "c5928f49-12ba-48f7-ada3-0d743a3601d5"


def loaded_user(fake: FakeEntra) -> tuple[str, dict[str, str]]:
    """A virtual assistant holding one of every kind of access Entra has."""
    ids = {
        "plain1": fake.add_group("VA Scheduling"),
        "plain2": fake.add_group("EHR users"),
        "dynamic": fake.add_group("All VAs (dynamic)", dynamic=True),
        "synced": fake.add_group("Legacy share", synced=True),
        "licensing": fake.add_group("E3 licensing"),
    }
    uid = fake.add_user("W0042", groups=list(ids.values()))
    ids["app_role"] = fake.add_app_role(uid)
    ids["authenticator"] = fake.add_authenticator(uid)
    ids["mobile"] = fake.add_phone(uid, "mobile")
    ids["alternate"] = fake.add_phone(uid, "alternateMobile")
    fake.add_licence(uid, SKU_VISIO)
    fake.add_licence(uid, SKU_E3, by_group=ids["licensing"])
    return uid, ids


async def test_full_termination_removes_everything_it_may_and_says_why_not(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid, ids = loaded_user(fake)
    account = await connector.find_account(Worker("W0042"))
    assert account == Account("idp", uid, login="w0042@contoso.com", worker_id="W0042")

    before = await connector.read_state(account)
    assert before.enabled and before.mfa_registered is True
    assert f"license:{SKU_E3}" in before.entitlements

    disabled = await connector.disable(account)
    assert disabled.outcome == Outcome.DONE and disabled.vendor_request_id
    assert fake.users[uid]["accountEnabled"] is False

    revoked = await connector.revoke_sessions(account)
    assert revoked.outcome == Outcome.DONE
    assert revoked.detail["sessions"] == "requested"
    assert revoked.detail["sessions_valid_from"] != "not yet reset in the read-back"

    result = await connector.remove_access(account)
    assert result.outcome == Outcome.PARTIAL
    removed = set(result.removed)
    assert {f"group:{ids['plain1']}", f"group:{ids['plain2']}", f"group:{ids['licensing']}"} <= (
        removed
    )
    assert f"license:{SKU_VISIO}" in removed
    assert any(r.startswith("appRole:") for r in removed)
    assert f"authMethod:phoneAuthenticationMethod/{ids['mobile']}" in removed
    assert f"authMethod:microsoftAuthenticatorAuthenticationMethod/{ids['authenticator']}" in (
        removed
    )
    skipped = {s.item: s.reason for s in result.skipped}
    assert "dynamic" in skipped[f"group:{ids['dynamic']}"]
    assert "on-premises" in skipped[f"group:{ids['synced']}"]
    assert ids["licensing"] in skipped[f"license:{SKU_E3}"]

    # The read-back is a separate call, and what is left is exactly what was skipped.
    after = await connector.read_state(account)
    assert after.enabled is False
    assert after.sessions_valid_from is not None
    assert after.sessions_valid_from >= disabled.started_at - timedelta(seconds=5)
    assert after.entitlements == frozenset(skipped)
    assert after.mfa_registered is False  # only the password method is left
    assert uid in fake.users, "membership removal must never delete the user"


async def test_memberships_go_through_ref_and_phones_leave_last(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid, ids = loaded_user(fake)
    await connector.remove_access(Account("idp", uid))
    deletes = [path for method, path in fake.log if method.endswith("DELETE")]
    member_deletes = [p for p in deletes if "/members/" in p]
    assert member_deletes and all(p.endswith("/$ref") for p in member_deletes)
    phone_deletes = [p for p in deletes if "/phoneMethods/" in p]
    # The fake refuses the mobile (default) phone while an alternate is registered.
    assert phone_deletes == [
        f"/users/{uid}/authentication/phoneMethods/{ids['alternate']}",
        f"/users/{uid}/authentication/phoneMethods/{ids['mobile']}",
    ]
    assert deletes.index(phone_deletes[0]) > max(
        deletes.index(p) for p in deletes if "/phoneMethods/" not in p
    )


async def test_reads_and_deletions_of_one_user_are_batched(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid, _ = loaded_user(fake)
    await connector.remove_access(Account("idp", uid))
    direct = [(m, p) for m, p in fake.log if not m.startswith("B ")]
    batched = [(m, p) for m, p in fake.log if m.startswith("B ")]
    # two envelopes (reads, then deletions) plus the two ordered phone deletions
    assert [p for _, p in direct].count("/$batch") == 2
    assert len(direct) == 4
    assert len(batched) >= 10


async def test_many_memberships_are_split_into_batches_of_twenty(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    groups = [fake.add_group(f"g{n}") for n in range(45)]
    uid = fake.add_user("W0100", groups=groups)
    result = await connector.remove_access(Account("idp", uid))
    assert len(result.removed) == 45 and result.outcome == Outcome.DONE
    assert not any(uid in members for members in fake.members.values())


async def test_disable_twice_is_already_and_does_not_patch(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid = fake.add_user("W0007")
    account = Account("idp", uid)
    assert (await connector.disable(account)).outcome == Outcome.DONE
    fake.log.clear()
    assert (await connector.disable(account)).outcome == Outcome.ALREADY
    assert [m for m, _ in fake.log] == ["GET"]


async def test_remove_access_on_a_bare_account_is_already(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid = fake.add_user("W0008")
    result = await connector.remove_access(Account("idp", uid))
    assert result.outcome == Outcome.ALREADY and result.removed == ()


@pytest.mark.parametrize(
    ("attribute", "worker"),
    [
        ("employeeId", Worker("O'Brien-7")),
        ("userPrincipalName", Worker("x", upn="o'brien@contoso.com")),
        ("mail", Worker("x", email="O'Brien@Contoso.com")),
    ],
)
async def test_find_by_each_correlation_attribute_with_quotes_escaped(
    fake: FakeEntra, make_connector, attribute: str, worker: Worker
) -> None:
    uid = fake.add_user("O'Brien-7", upn="o'brien@contoso.com", mail="o'brien@contoso.com")
    fake.add_user("Other", upn="other@contoso.com")
    async with make_connector(correlation_attribute=attribute) as connector:
        account = await connector.find_account(worker)
    assert account is not None and account.account_id == uid
    filters = [q["$filter"] for p, q in fake.queries if p == "/users"]
    value = {"employeeId": "O''Brien-7", "userPrincipalName": "o''brien@contoso.com"}.get(
        attribute, "O''Brien@Contoso.com"
    )
    assert filters == [f"{attribute} eq '{value}'"]


def test_odata_quote_doubles_single_quotes() -> None:
    assert odata_quote("a'b") == "'a''b'"
    assert odata_quote("' or 1 eq 1 or '") == "''' or 1 eq 1 or '''"


async def test_worker_without_the_correlation_value_is_not_looked_up(
    fake: FakeEntra, make_connector
) -> None:
    async with make_connector(correlation_attribute="mail") as connector:
        assert await connector.find_account(Worker("W1")) is None
    assert fake.log == []


async def test_ambiguous_correlation_is_permanent(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    fake.add_user("W0009", upn="a@contoso.com")
    fake.add_user("W0009", upn="b@contoso.com")
    with pytest.raises(PermanentConnectorError, match="2 Entra users"):
        await connector.find_account(Worker("W0009"))


def test_session_revocation_requested_then_effective() -> None:
    requested = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    delay = timedelta(minutes=5)

    def state(valid_from: datetime | None) -> AccountState:
        return AccountState(
            Account("idp", "u"), enabled=False, read_at=requested, sessions_valid_from=valid_from
        )

    old = requested - timedelta(days=3)
    assert session_revocation_status(state(old), requested, requested, delay) == "not_reset"
    assert session_revocation_status(state(None), requested, requested, delay) == "not_reset"
    reset = requested + timedelta(seconds=1)
    soon = requested + timedelta(minutes=1)
    later = requested + timedelta(minutes=6)
    assert session_revocation_status(state(reset), requested, soon, delay) == "requested"
    assert session_revocation_status(state(reset), requested, later, delay) == "effective"


async def test_verify_termination_distinguishes_requested_from_effective(
    fake: FakeEntra, make_connector
) -> None:
    uid, ids = loaded_user(fake)
    account = Account("idp", uid)
    async with make_connector() as connector:
        before = await connector.verify_termination(account)
        assert not before.verified and before.sessions == "unknown"
        assert "accountEnabled is still true" in before.problems
        assert f"still a member of group {ids['plain1']}" in before.problems

        await connector.disable(account)
        revoked = await connector.revoke_sessions(account)
        await connector.remove_access(account)
        check = await connector.verify_termination(
            account, sessions_requested_at=revoked.started_at
        )
        assert check.verified and check.problems == ()
        assert check.sessions == "requested"  # Microsoft allows minutes for propagation
        assert {s.item for s in check.left_unremovable} == {
            f"group:{ids['dynamic']}",
            f"group:{ids['synced']}",
            f"license:{SKU_E3}",
        }
    async with make_connector(session_revocation_delay_seconds=0) as connector:
        check = await connector.verify_termination(
            account, sessions_requested_at=revoked.started_at
        )
        assert check.sessions == "effective"


async def test_verify_termination_catches_a_revocation_that_did_not_happen(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid = fake.add_user("W0010", enabled=False)
    check = await connector.verify_termination(
        Account("idp", uid), sessions_requested_at=datetime.now(UTC)
    )
    assert check.sessions == "not_reset" and not check.verified


async def test_never_signed_in_and_sentinel_dates_are_not_activity() -> None:
    from connectors.entra.model import last_successful_sign_in

    assert last_successful_sign_in({"signInActivity": None}) is None
    assert (
        last_successful_sign_in(
            {
                "signInActivity": {
                    "lastSignInDateTime": "2026-01-01T00:00:00Z",
                    "lastSuccessfulSignInDateTime": None,
                }
            }
        )
        is None
    ), "a failed attempt is not a sign-in"
    legacy = {
        "signInActivity": {
            "lastSignInDateTime": "2026-01-01T00:00:00Z",
            "lastNonInteractiveSignInDateTime": "0001-01-01T00:00:00Z",
        }
    }
    assert last_successful_sign_in(legacy) == datetime(2026, 1, 1, tzinfo=UTC)


async def test_a_removal_graph_refuses_is_skipped_with_its_reason(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    from tests.unit.entra.fake_graph import Fault

    role_group = fake.add_group("Role-assignable admins")
    plain = fake.add_group("Plain")
    uid = fake.add_user("W0011", groups=[role_group, plain])
    fake.add_phone(uid, "office")
    fake.faults.append(
        Fault("DELETE", rf"/groups/{role_group}/members/.*", 400, 1, code="Request_BadRequest")
    )
    fake.faults.append(Fault("DELETE", r"/users/.*/phoneMethods/.*", 400, 1, code="badRequest"))
    result = await connector.remove_access(Account("idp", uid))
    assert result.outcome == Outcome.PARTIAL
    assert result.removed == (f"group:{plain}",)
    reasons = {s.item: s.reason for s in result.skipped}
    assert reasons[f"group:{role_group}"].startswith("Graph refused: Request_BadRequest")
    assert any(item.startswith("authMethod:phone") for item in reasons)


@pytest.mark.parametrize("bad", ["../groups/x", "W0042", "0000?$select=x", ""])
async def test_account_ids_that_are_not_object_ids_never_reach_a_url(
    fake: FakeEntra, connector: EntraConnector, bad: str
) -> None:
    for call in (connector.disable, connector.read_state, connector.remove_access):
        with pytest.raises(PermanentConnectorError, match="not an Entra object id"):
            await call(Account("idp", bad))
    assert fake.log == []


async def test_memberships_beyond_the_first_page_are_followed_from_the_batch(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    fake.page_size = 2
    groups = [fake.add_group(f"g{n}") for n in range(5)]
    uid = fake.add_user("W0012", groups=groups)
    account = Account("idp", uid)
    state = await connector.read_state(account)
    assert state.entitlements == {f"group:{g}" for g in groups}
    follow_ups = [p for m, p in fake.log if m == "GET" and "/memberOf/" in p]
    assert len(follow_ups) == 2, "two next links after the batched first page"
    result = await connector.remove_access(account)
    assert len(result.removed) == 5
    assert (await connector.read_state(account)).entitlements == frozenset()
