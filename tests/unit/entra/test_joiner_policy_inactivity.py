"""Joiner/mover, policy (Conditional Access, sign-in frequency, smart lockout), inactivity."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from connectors.base import (
    Account,
    ConnectorConfigError,
    ConnectorContext,
    Control,
    DesiredAccess,
    Outcome,
    PermanentConnectorError,
    PolicyBaseline,
    Worker,
)
from connectors.entra import EntraConnector
from connectors.entra.policy import PASSWORD_RULE_TEMPLATE_ID, REPORT_ONLY
from tests.unit.entra.conftest import entra_options
from tests.unit.entra.fake_graph import FakeEntra

pytestmark = pytest.mark.anyio

SKU_E3 = "6fd2c87f-b296-42f0-b197-1e91e994b900"
SKU_VISIO = "c5928f49-12ba-48f7-ada3-0d743a3601d5"
BREAK_GLASS = ["0d6e4a4c-0000-4000-8000-00000000b001", "0d6e4a4c-0000-4000-8000-00000000b002"]


# ---------------------------------------------------------------------- joiner / mover


async def test_create_account_with_random_password_forced_change_groups_and_licence(
    fake: FakeEntra, connector: EntraConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    group = fake.add_group("VA Scheduling")
    worker = Worker("W0500", email="a.lee@example.org", name="A. Lee")
    account = await connector.create_account(
        worker, DesiredAccess(frozenset({f"group:{group}", f"license:{SKU_E3}"}))
    )
    user = fake.users[account.account_id]
    assert user["userPrincipalName"] == "w0500@contoso.com" and user["employeeId"] == "W0500"
    assert user["accountEnabled"] is True and user["usageLocation"] == "US"
    profile = user["passwordProfile"]
    assert profile["forceChangePasswordNextSignIn"] is True
    password = profile["password"]
    assert len(password) >= 16 and not password.isalnum() and password not in caplog.text
    state = await connector.read_state(account)
    assert state.entitlements == {f"group:{group}", f"license:{SKU_E3}"}

    second = await connector.create_account(Worker("W0502"), DesiredAccess())
    assert fake.users[second.account_id]["passwordProfile"]["password"] != password


async def test_create_account_refuses_a_duplicate(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    fake.add_user("W0600")
    with pytest.raises(PermanentConnectorError, match="already exists"):
        await connector.create_account(Worker("W0600"), DesiredAccess())


async def test_licences_need_a_usage_location(fake: FakeEntra, make_connector) -> None:
    async with make_connector(usage_location=None) as connector:
        with pytest.raises(PermanentConnectorError, match="usage_location"):
            await connector.create_account(
                Worker("W0601"), DesiredAccess(frozenset({f"license:{SKU_E3}"}))
            )


async def test_mover_swaps_groups_and_licences_and_leaves_dynamic_groups(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    old, new, dynamic = (
        fake.add_group("Old role"),
        fake.add_group("New role"),
        fake.add_group("All VAs", dynamic=True),
    )
    uid = fake.add_user("W0700", groups=[old, dynamic])
    fake.add_licence(uid, SKU_E3)
    account = Account("idp", uid)
    result = await connector.apply_entitlements(
        account, DesiredAccess(frozenset({f"group:{new}", f"license:{SKU_VISIO}"}))
    )
    assert set(result.removed) == {f"group:{old}", f"license:{SKU_E3}"}
    assert set(result.added) == {f"group:{new}", f"license:{SKU_VISIO}"}
    assert result.outcome == Outcome.PARTIAL
    assert [s.item for s in result.skipped] == [f"group:{dynamic}"]
    state = await connector.read_state(account)
    assert state.entitlements == {f"group:{new}", f"group:{dynamic}", f"license:{SKU_VISIO}"}
    again = await connector.apply_entitlements(
        account,
        DesiredAccess(frozenset({f"group:{new}", f"group:{dynamic}", f"license:{SKU_VISIO}"})),
    )
    assert again.outcome == Outcome.ALREADY and not again.removed and not again.added


async def test_unknown_entitlement_kind_is_a_playbook_error(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    uid = fake.add_user("W0701")
    with pytest.raises(PermanentConnectorError, match="fix the playbook"):
        await connector.apply_entitlements(Account("idp", uid), DesiredAccess(frozenset({"VA"})))


# ---------------------------------------------------------------------- inactivity


async def test_list_accounts_follows_next_links_and_reports_never_signed_in(
    fake: FakeEntra, connector: EntraConnector
) -> None:
    fake.page_size = 2
    recent = fake.add_user("W1", last_sign_in="2026-11-24T08:00:00Z")
    stale = fake.add_user("W2", last_sign_in="2026-05-01T08:00:00Z")
    never = fake.add_user("W3", signed_in=False)
    fake.add_user("W4", enabled=False)
    fake.add_user("W5")
    states = {s.account.account_id: s async for s in connector.list_accounts()}
    assert len(states) == 5
    assert [p for m, p in fake.log if m == "GET"] == ["/users"] * 3
    assert states[recent].last_sign_in == datetime(2026, 11, 24, 8, tzinfo=UTC)
    assert states[stale].last_sign_in == datetime(2026, 5, 1, 8, tzinfo=UTC)
    assert states[never].last_sign_in is None and states[never].sign_in_tracked is True
    assert states[never].created_at is not None
    assert states[recent].account.worker_id == "W1"


async def test_without_sign_in_activity_last_sign_in_is_unknown(
    fake: FakeEntra, make_connector
) -> None:
    fake.add_user("W1")
    async with make_connector(sign_in_activity=False) as connector:
        states = [s async for s in connector.list_accounts()]
    assert states[0].sign_in_tracked is False and states[0].last_sign_in is None


# ---------------------------------------------------------------------- policy


def policy_options(**overrides: object) -> dict[str, object]:
    return {
        "va_group_id": "9c5b1c5e-0000-4000-8000-0000000000a1",
        "break_glass_ids": BREAK_GLASS,
        **overrides,
    }


async def test_read_policy_on_a_fresh_tenant_reports_the_gaps(
    fake: FakeEntra, make_connector
) -> None:
    async with make_connector(**policy_options()) as connector:
        policy = await connector.read_policy()
    settings = {s.control: s for s in policy.settings}
    assert settings[Control.MFA].value is False
    assert "no policy named" in settings[Control.MFA].source
    assert settings[Control.SESSION_MAX_HOURS].value is None
    assert settings[Control.LOCKOUT_THRESHOLD].value == 10
    assert "Entra default" in settings[Control.LOCKOUT_THRESHOLD].source
    assert settings[Control.LOCKOUT_DURATION_MINUTES].value == 1
    assert settings[Control.LOCKOUT_WINDOW_MINUTES].value is None


async def test_apply_policy_creates_report_only_policy_and_lockout_setting(
    fake: FakeEntra, make_connector
) -> None:
    async with make_connector(**policy_options()) as connector:
        result = await connector.apply_policy(PolicyBaseline())
        assert result.outcome == Outcome.DONE
        assert "enabledForReportingButNotEnforced" in result.detail["conditional_access"]
        assert result.detail["lockout_threshold"] == "10 -> 5"
        assert result.detail["lockout_duration_seconds"] == "60 -> 1800"
        (policy,) = fake.ca_policies.values()
        assert policy["state"] == REPORT_ONLY
        users = policy["conditions"]["users"]
        assert users["includeGroups"] == ["9c5b1c5e-0000-4000-8000-0000000000a1"]
        assert users["excludeUsers"] == BREAK_GLASS
        assert policy["grantControls"] == {"operator": "OR", "builtInControls": ["mfa"]}
        frequency = policy["sessionControls"]["signInFrequency"]
        assert (frequency["value"], frequency["type"], frequency["isEnabled"]) == (
            12,
            "hours",
            True,
        )
        (setting,) = fake.settings.values()
        assert setting["templateId"] == PASSWORD_RULE_TEMPLATE_ID
        values = {v["name"]: v["value"] for v in setting["values"]}
        assert values["LockoutThreshold"] == "5" and values["LockoutDurationInSeconds"] == "1800"
        assert values["EnableBannedPasswordCheck"] == "True"

        state = {s.control: s for s in (await connector.read_policy()).settings}
        assert state[Control.MFA].value == "report-only"
        assert state[Control.SESSION_MAX_HOURS].value is None
        assert "12 h configured but not enforced" in state[Control.SESSION_MAX_HOURS].source
        assert state[Control.LOCKOUT_THRESHOLD].value == 5
        assert state[Control.LOCKOUT_DURATION_MINUTES].value == 30

        again = await connector.apply_policy(PolicyBaseline())
        assert again.outcome == Outcome.ALREADY and again.detail == {}


async def test_enforce_config_enables_and_repairs_an_existing_policy(
    fake: FakeEntra, make_connector
) -> None:
    fake.ca_policies["p1"] = {
        "@odata.type": "#microsoft.graph.conditionalAccessPolicy",
        "id": "p1",
        "displayName": "lifecycle: require MFA for virtual assistants",
        "state": REPORT_ONLY,
        "conditions": {
            "clientAppTypes": ["all"],
            "applications": {"includeApplications": ["All"]},
            "users": {
                "includeUsers": [],
                "includeGroups": ["9c5b1c5e-0000-4000-8000-0000000000a1"],
                "excludeUsers": [BREAK_GLASS[0], "someone-else"],
            },
        },
        "grantControls": {"operator": "OR", "builtInControls": ["mfa"]},
        "sessionControls": {"signInFrequency": {"value": 1, "type": "days", "isEnabled": True}},
    }
    async with make_connector(**policy_options(ca_state="enforce")) as connector:
        before = {s.control: s for s in (await connector.read_policy()).settings}
        assert "24 h configured but not enforced" in before[Control.SESSION_MAX_HOURS].source
        assert "break-glass accounts not excluded" in before[Control.MFA].source
        assert "configuration says enforce" in before[Control.MFA].source
        result = await connector.apply_policy(PolicyBaseline())
    detail = result.detail["conditional_access"]
    assert "sign-in frequency 24 h, baseline 12 h" in detail
    assert BREAK_GLASS[1] in detail
    policy = fake.ca_policies["p1"]
    assert policy["state"] == "enabled"
    assert policy["conditions"]["users"]["excludeUsers"] == [
        BREAK_GLASS[0],
        "someone-else",
        BREAK_GLASS[1],
    ]
    assert len(fake.ca_policies) == 1


async def test_mfa_is_not_required_when_the_policy_misses_the_va_group(
    fake: FakeEntra, make_connector
) -> None:
    async with make_connector(**policy_options(ca_state="enforce")) as connector:
        await connector.apply_policy(PolicyBaseline())
        (policy,) = fake.ca_policies.values()
        ok = {s.control: s for s in (await connector.read_policy()).settings}
        assert ok[Control.MFA].value is True and "differs" not in ok[Control.MFA].source
        assert ok[Control.SESSION_MAX_HOURS].value == 12
        policy["conditions"]["users"]["includeGroups"] = ["another-group"]
        policy["conditions"]["users"]["excludeUsers"] = []
        gap = {s.control: s for s in (await connector.read_policy()).settings}
    assert gap[Control.MFA].value is False
    source = gap[Control.MFA].source
    assert "9c5b1c5e-0000-4000-8000-0000000000a1 is not in includeGroups" in source
    assert f"break-glass accounts not excluded: {', '.join(BREAK_GLASS)}" in source


async def test_an_enforced_policy_is_never_downgraded_to_report_only(
    fake: FakeEntra, make_connector
) -> None:
    async with make_connector(**policy_options(ca_state="enforce")) as connector:
        await connector.apply_policy(PolicyBaseline())
    (policy,) = fake.ca_policies.values()
    policy["sessionControls"]["signInFrequency"]["value"] = 48
    async with make_connector(**policy_options()) as connector:
        await connector.apply_policy(PolicyBaseline())
    assert (
        policy["state"] == "enabled" and policy["sessionControls"]["signInFrequency"]["value"] == 12
    )


async def test_existing_password_rule_setting_keeps_its_other_values(
    fake: FakeEntra, make_connector
) -> None:
    fake.settings["s1"] = {
        "id": "s1",
        "displayName": "Password Rule Settings",
        "templateId": PASSWORD_RULE_TEMPLATE_ID,
        "values": [
            {"name": "BannedPasswordList", "value": "contoso\tclinic"},
            {"name": "LockoutThreshold", "value": "10"},
            {"name": "LockoutDurationInSeconds", "value": "60"},
        ],
    }
    async with make_connector(**policy_options()) as connector:
        await connector.apply_policy(
            PolicyBaseline(lockout_threshold=3, lockout_duration_minutes=60)
        )
    values = {v["name"]: v["value"] for v in fake.settings["s1"]["values"]}
    assert values == {
        "BannedPasswordList": "contoso\tclinic",
        "LockoutThreshold": "3",
        "LockoutDurationInSeconds": "3600",
    }


async def test_apply_policy_without_va_group_is_permanent(connector: EntraConnector) -> None:
    with pytest.raises(PermanentConnectorError, match="va_group_id"):
        await connector.apply_policy(PolicyBaseline())


# ---------------------------------------------------------------------- options


def test_unknown_option_is_a_config_error_naming_table_and_option(monkeypatch) -> None:
    monkeypatch.setenv("LIFECYCLE_TEST_GRAPH_SECRET", "x")
    with pytest.raises(ConnectorConfigError, match=r"^\[connectors\.idp\]: tennant: Extra inputs"):
        EntraConnector.from_config("idp", entra_options(tennant="typo"), ConnectorContext())


def test_http_authority_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("LIFECYCLE_TEST_GRAPH_SECRET", "x")
    with pytest.raises(ConnectorConfigError, match="authority_host"):
        EntraConnector.from_config(
            "idp", entra_options(authority_host="http://login.example"), ConnectorContext()
        )


def test_inline_secret_is_refused_outside_demo_mode() -> None:
    with pytest.raises(ConnectorConfigError, match="client_secret") as info:
        EntraConnector.from_config(
            "idp", entra_options(client_secret="s3cr3t-inline"), ConnectorContext()
        )
    assert "s3cr3t-inline" not in str(info.value)


def test_policy_object_ids_must_be_guids(monkeypatch) -> None:
    monkeypatch.setenv("LIFECYCLE_TEST_GRAPH_SECRET", "x")
    with pytest.raises(ConnectorConfigError, match=r"break_glass_ids.*not an Entra object id"):
        EntraConnector.from_config(
            "idp", entra_options(break_glass_ids=["admin@contoso.com"]), ConnectorContext()
        )


async def test_playbook_group_ids_must_be_guids(fake: FakeEntra, connector: EntraConnector) -> None:
    uid = fake.add_user("W0702")
    with pytest.raises(PermanentConnectorError, match="not an Entra object id"):
        await connector.apply_entitlements(
            Account("idp", uid), DesiredAccess(frozenset({"group:../../users/x"}))
        )


async def test_the_registry_builds_it_and_it_closes_twice(
    fake: FakeEntra, graph, monkeypatch
) -> None:
    from connectors import build_connector

    monkeypatch.setenv("LIFECYCLE_TEST_GRAPH_SECRET", "x")
    connector = build_connector("idp", entra_options(), ConnectorContext())
    assert isinstance(connector, EntraConnector) and connector.kind == "entra"
    await connector.aclose()
    await connector.aclose()
    assert connector.graph.http.is_closed


def test_a_secret_under_a_misspelt_key_stays_out_of_the_error(monkeypatch) -> None:
    monkeypatch.setenv("LIFECYCLE_TEST_GRAPH_SECRET", "x")
    with pytest.raises(ConnectorConfigError) as info:
        EntraConnector.from_config(
            "idp", entra_options(client_secert="hunter2-value"), ConnectorContext()
        )
    assert "client_secert" in str(info.value) and "hunter2" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_applying_the_baseline_never_loosens_stricter_tenant_settings(
    fake: FakeEntra, make_connector
) -> None:
    fake.settings["s1"] = {
        "id": "s1",
        "displayName": "Password Rule Settings",
        "templateId": PASSWORD_RULE_TEMPLATE_ID,
        "values": [
            {"name": "LockoutThreshold", "value": "3"},
            {"name": "LockoutDurationInSeconds", "value": "600"},
        ],
    }
    async with make_connector(**policy_options(ca_state="enforce")) as connector:
        await connector.apply_policy(PolicyBaseline())
        (policy,) = fake.ca_policies.values()
        policy["sessionControls"]["signInFrequency"]["value"] = 4
        policy["conditions"]["users"]["includeGroups"] = []
        result = await connector.apply_policy(PolicyBaseline())
    values = {v["name"]: v["value"] for v in fake.settings["s1"]["values"]}
    assert values == {"LockoutThreshold": "3", "LockoutDurationInSeconds": "1800"}
    assert policy["sessionControls"]["signInFrequency"]["value"] == 4
    assert policy["conditions"]["users"]["includeGroups"] == [
        "9c5b1c5e-0000-4000-8000-0000000000a1"
    ]
    assert "not in includeGroups" in result.detail["conditional_access"]
