"""Session fixtures: a Samba AD DC and a slapd with ppolicy, started once per session on loopback.

Registered in ``tests/conftest.py`` so that one server of each serves every test that needs it
(Samba binds the fixed port 636): the directory tests here and the connector contract suite.
A missing server binary or a busy port fails the tests (never skips them), in CI and
everywhere else: a run must not go green without having talked to a real directory.
``scripts/install-test-servers.sh`` installs them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from connectors.base import ConnectorContext, Worker
from connectors.ldap import LdapConnector
from tests.contract.suite import ContractHarness
from tests.integration.ldap.directory import DirectoryAdmin
from tests.integration.ldap.servers import (
    SambaDC,
    ServerUnavailable,
    SlapdServer,
    samba_dc,
    slapd_server,
)

AD_USERS_OU = "OU=Lifecycle Test,DC=example,DC=test"
AD_GROUPS_OU = "OU=VA Groups,DC=example,DC=test"
AD_GROUPS = (
    f"CN=VA Scheduling,{AD_GROUPS_OU}",
    f"CN=VA Billing,{AD_GROUPS_OU}",
    f"CN=EHR Access,{AD_GROUPS_OU}",
)
AD_VA_GROUP = f"CN=Virtual Assistants,{AD_GROUPS_OU}"
LDAP_PEOPLE = "ou=people,dc=example,dc=org"
LDAP_GROUPS = (
    "cn=va-scheduling,ou=groups,dc=example,dc=org",
    "cn=va-billing,ou=groups,dc=example,dc=org",
    "cn=ehr-access,ou=groups,dc=example,dc=org",
)
LDAP_PLACEHOLDER = "cn=placeholder,dc=example,dc=org"


@dataclass(frozen=True)
class Directory:
    """One live test directory, its admin handle and the options that point a connector at it."""

    kind: str
    admin: DirectoryAdmin
    options: dict[str, Any]
    users_ou: str
    groups: tuple[str, ...]
    ca_file: Path


def _started(factory: Any) -> Any:
    try:
        return factory()
    except ServerUnavailable as exc:
        pytest.fail(f"test directory server unavailable: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def samba() -> Iterator[SambaDC]:
    manager = samba_dc()
    server = _started(manager.__enter__)
    try:
        yield server
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def slapd() -> Iterator[SlapdServer]:
    manager = slapd_server()
    server = _started(manager.__enter__)
    try:
        yield server
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture(scope="session")
def ad(samba: SambaDC, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    admin = DirectoryAdmin("ad", samba.url, samba.ca_file, samba.admin_dn, samba.admin_password)
    admin.ensure(AD_USERS_OU, ["top", "organizationalUnit"], {})
    admin.ensure(AD_GROUPS_OU, ["top", "organizationalUnit"], {})
    for group in (*AD_GROUPS, AD_VA_GROUP):
        admin.add_group(group)
    secret = tmp_path_factory.mktemp("ad-secret") / "bind_password"
    secret.write_text(samba.admin_password + "\n", encoding="utf-8")
    options = {
        "kind": "ad",
        "url": samba.url,
        "bind_dn": samba.admin_dn,
        "bind_password": f"file:{secret}",
        "base_dn": samba.domain_dn,
        "user_ou": AD_USERS_OU,
        "group_ou": AD_GROUPS_OU,
        "va_group_dn": AD_VA_GROUP,
        "ca_file": str(samba.ca_file),
        "pool_size": 4,
    }
    yield Directory("ad", admin, options, AD_USERS_OU, AD_GROUPS, samba.ca_file)
    admin.close()


@pytest.fixture(scope="session")
def openldap(slapd: SlapdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    admin = DirectoryAdmin("openldap", slapd.url, slapd.ca_file, slapd.root_dn, slapd.root_password)
    admin.ensure(LDAP_PLACEHOLDER, ["top", "organizationalRole"], {"cn": "placeholder"})
    for group in LDAP_GROUPS:
        admin.add_group(group, placeholder=LDAP_PLACEHOLDER)
    secret = tmp_path_factory.mktemp("ldap-secret") / "bind_password"
    secret.write_text(slapd.root_password, encoding="utf-8")
    options = {
        "kind": "openldap",
        "url": slapd.url,
        "bind_dn": slapd.root_dn,
        "bind_password": f"file:{secret}",
        "base_dn": slapd.suffix,
        "group_ou": "ou=groups,dc=example,dc=org",
        "ppolicy_dn": slapd.ppolicy_dn,
        "ca_file": str(slapd.ca_file),
        "pool_size": 4,
    }
    yield Directory("openldap", admin, options, LDAP_PEOPLE, LDAP_GROUPS, slapd.ca_file)
    admin.close()


def build(directory: Directory, name: str | None = None, **overrides: Any) -> LdapConnector:
    """A connector for ``directory`` built through from_config, as the service builds it."""
    options = {**directory.options, **overrides}
    return LdapConnector.from_config(name or directory.kind, options, ConnectorContext())


class LdapHarness(ContractHarness):
    def __init__(self, directory: Directory, connector: LdapConnector) -> None:
        self.directory = directory
        self.connector = connector
        self.groups = directory.groups
        self.dns: dict[str, str] = {}
        parent = directory.groups[0].split(",", 1)[1]
        self.missing_entitlement = f"cn=No Such Group,{parent}"

    async def seed(self, worker: Worker, groups: Sequence[str]) -> None:
        self.dns[worker.worker_id] = await anyio.to_thread.run_sync(
            lambda: self.directory.admin.add_user(
                self.directory.users_ou,
                worker.worker_id,
                email=worker.email,
                name=worker.name,
                groups=list(groups),
            )
        )


def new_worker() -> Worker:
    suffix = uuid.uuid4().hex[:8]
    return Worker(worker_id=f"T{suffix}", email=f"t{suffix}@example.org", name=f"Test {suffix}")
