"""Option validation of the LDAP connectors: every mistake is a config error naming the option."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from connectors import build_connector
from connectors.base import Capability, ConnectorConfigError, ConnectorContext
from connectors.ldap import LdapConnector

AD: dict[str, Any] = {
    "kind": "ad",
    "url": "ldaps://dc1.example.org",
    "bind_dn": "CN=svc,OU=Service,DC=example,DC=org",
    "bind_password": "env:LDAP_UNIT_PW",
    "base_dn": "DC=example,DC=org",
}
OPENLDAP: dict[str, Any] = {
    "kind": "openldap",
    "url": "ldaps://ldap.example.org:1636",
    "bind_dn": "cn=admin,dc=example,dc=org",
    "bind_password": "env:LDAP_UNIT_PW",
    "base_dn": "dc=example,dc=org",
}


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LDAP_UNIT_PW", "s3cret-unit-value")


def _build(options: dict[str, Any], name: str = "idp") -> LdapConnector:
    connector = build_connector(name, options, ConnectorContext())
    assert isinstance(connector, LdapConnector)
    return connector


def test_both_kinds_build_the_ldap_connector_with_defaults() -> None:
    ad = _build(AD)
    assert ad.dialect.kind == "ad" and ad.options.port == 636
    assert ad.options.correlation == "employeeID"
    assert ad.options.sign_in_attribute == "lastLogonTimestamp"
    assert ad.options.accounts_ou == "CN=Users,DC=example,DC=org"
    assert ad.options.tls_verify is True
    assert ad.capabilities == frozenset(Capability)
    ldap = _build(OPENLDAP)
    assert ldap.dialect.kind == "openldap" and ldap.options.port == 1636
    assert ldap.options.correlation == "employeeNumber"
    assert ldap.options.policy_dn == "cn=default,ou=policies,dc=example,dc=org"
    assert ldap.options.accounts_ou == "ou=people,dc=example,dc=org"


def test_domain_root_is_derived_from_an_ou_base() -> None:
    options = {**AD, "base_dn": "OU=Staff,DC=corp,DC=example,DC=org"}
    assert _build(options).options.domain_dn == "DC=corp,DC=example,DC=org"


@pytest.mark.parametrize(
    ("change", "option"),
    [
        ({"url": "http://dc1"}, "url"),
        ({"url": "ldaps://dc1/dc=x"}, "url"),
        ({"url": "ldaps://dc1:99999"}, "url"),
        ({"bind_dn": "not a dn"}, "bind_dn"),
        ({"correlation_attribute": "uid)(x"}, "correlation_attribute"),
        ({"last_sign_in_attribute": "a b"}, "last_sign_in_attribute"),
        ({"pool_size": 0}, "pool_size"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"tls_server_name": "*"}, "tls_server_name"),
        ({"bindpassword": "env:X"}, "bindpassword"),
        ({"url": "ldap://dc1"}, "ldap://"),
        ({"url": "ldap://dc1", "allow_plaintext": True}, "AD password resets"),
        ({"start_tls": True}, "start_tls"),
        ({"ppolicy_dn": "cn=p,dc=example,dc=org"}, "ppolicy_dn"),
    ],
)
def test_bad_ad_options_name_the_table_and_the_option(change: dict[str, Any], option: str) -> None:
    with pytest.raises(ConnectorConfigError) as info:
        _build({**AD, **change})
    assert "[connectors.idp]" in str(info.value) and option in str(info.value)


def test_openldap_refuses_ad_only_options_and_allows_explicit_plaintext() -> None:
    with pytest.raises(ConnectorConfigError, match="va_group_dn"):
        _build({**OPENLDAP, "va_group_dn": "cn=va,dc=example,dc=org"})
    plain = _build({**OPENLDAP, "url": "ldap://127.0.0.1:389", "allow_plaintext": True})
    assert plain.options.use_ssl is False
    tls = _build({**OPENLDAP, "url": "ldap://127.0.0.1", "start_tls": True})
    assert tls.options.port == 389


def test_sign_in_tracking_can_be_turned_off() -> None:
    assert _build({**OPENLDAP, "last_sign_in_attribute": ""}).options.sign_in_attribute is None


def test_secret_must_be_a_reference_outside_demo_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConnectorConfigError, match="inline"):
        _build({**AD, "bind_password": "hunter2-inline"})
    monkeypatch.delenv("LDAP_UNIT_PW")
    with pytest.raises(ConnectorConfigError, match="LDAP_UNIT_PW") as info:
        _build(AD)
    assert "[connectors.idp] bind_password" in str(info.value)


def test_secret_value_never_appears_in_errors_or_repr() -> None:
    connector = _build(AD)
    assert "s3cret-unit-value" not in repr(connector.options)
    assert "s3cret-unit-value" not in repr(connector.__dict__)
    with pytest.raises(ConnectorConfigError) as info:
        _build({**AD, "pool_size": -1})
    assert "s3cret-unit-value" not in str(info.value)


def test_relative_ca_file_resolves_against_base_dir(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    connector = LdapConnector.from_config(
        "idp", {**AD, "ca_file": "ca.pem"}, ConnectorContext(base_dir=tmp_path)
    )
    assert connector.options.ca_file == tmp_path / "ca.pem"
    with pytest.raises(ConnectorConfigError, match="ca_file"):
        LdapConnector.from_config("idp", {**AD, "ca_file": "missing.pem"}, ConnectorContext())
