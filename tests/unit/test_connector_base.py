"""The connector error tree and secret references (connectors/base.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from connectors.base import (
    Account,
    ConnectorConfigError,
    ConnectorContext,
    ConnectorError,
    Outcome,
    PermanentConnectorError,
    SkippedItem,
    TransientConnectorError,
    UnsupportedOperationError,
    resolve_secret,
    restore_result,
    utcnow,
)


def test_errors_name_connector_and_account_and_default_to_their_docstring() -> None:
    error = TransientConnectorError(connector="idp", account_id="a1", retry_after=7.0)
    assert error.message == (
        "[idp account a1] The connected system is temporarily unavailable; the call may "
        "succeed if retried."
    )
    assert str(error) == error.message
    assert (error.connector, error.account_id, error.retry_after) == ("idp", "a1", 7.0)
    assert PermanentConnectorError("HTTP 403", connector="ehr").message == "[ehr] HTTP 403"


def test_the_tree() -> None:
    assert issubclass(TransientConnectorError, ConnectorError)
    assert issubclass(UnsupportedOperationError, PermanentConnectorError)
    assert issubclass(ConnectorConfigError, PermanentConnectorError)
    assert not issubclass(TransientConnectorError, PermanentConnectorError)


def test_config_errors_keep_the_table_they_name() -> None:
    error = ConnectorConfigError("[connectors.idp]: tenant_id: Field required", connector="idp")
    assert error.message == "[connectors.idp]: tenant_id: Field required"
    assert error.connector == "idp"


def test_secret_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CONN_TEST_SECRET", "from-env")
    assert resolve_secret("env:CONN_TEST_SECRET", what="x").get_secret_value() == "from-env"
    secret = tmp_path / "secret"
    secret.write_text("from-file\n", encoding="utf-8")
    assert resolve_secret(f"file:{secret}", what="x").get_secret_value() == "from-file"
    assert resolve_secret(SecretStr(f"file:{secret}"), what="x").get_secret_value() == "from-file"


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ("env:CONN_TEST_UNSET", "environment variable CONN_TEST_UNSET is not set"),
        ("file:/nonexistent/secret", "cannot read secret file /nonexistent/secret"),
        ("hunter2-inline", "inline secrets are refused outside demo mode"),
    ],
)
def test_unresolvable_secrets_are_config_errors_without_the_value(ref: str, words: str) -> None:
    context = ConnectorContext()
    with pytest.raises(ConnectorConfigError) as info:
        context.secret("idp", "client_secret", ref)
    assert info.value.message.startswith("[connectors.idp] client_secret: ")
    assert words in info.value.message
    assert info.value.connector == "idp"
    assert "hunter2" not in info.value.message


def test_inline_secrets_only_in_demo_mode() -> None:
    demo = ConnectorContext(allow_inline_secrets=True)
    assert demo.secret("idp", "token", "inline-value").get_secret_value() == "inline-value"
    with pytest.raises(ConnectorConfigError, match="empty secret"):
        demo.secret("idp", "token", "")


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    context = ConnectorContext(base_dir=tmp_path)
    assert context.path(Path("state.json")) == tmp_path / "state.json"
    assert context.path(Path("/etc/ca.pem")) == Path("/etc/ca.pem")


def test_a_restore_result_accounts_for_every_snapshot_item() -> None:
    account = Account("idp", "a1")
    started = utcnow()
    result = restore_result(
        account,
        started,
        ("g1", "g2", "g3", "g1"),
        held={"g1", "g9"},
        skipped=[SkippedItem("g2", "the group no longer exists")],
        changed=True,
    )
    assert result.action == "restore_access" and result.outcome == Outcome.PARTIAL
    assert result.added == ("g1",)  # g9 is held but was not in the snapshot: not claimed
    assert [(s.item, s.reason) for s in result.skipped] == [
        ("g2", "the group no longer exists"),
        ("g3", "not held when read back"),
    ]
    nothing_to_do = restore_result(account, started, ("g1",), {"g1"}, [], changed=False)
    assert nothing_to_do.outcome == Outcome.ALREADY and nothing_to_do.added == ("g1",)
