"""The shared connector contract, against a real Samba AD DC and a real slapd."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.contract.suite import ConnectorContract, ContractHarness
from tests.integration.ldap.conftest import Directory, LdapHarness, build

pytestmark = pytest.mark.integration


class TestAdContract(ConnectorContract):
    @pytest.fixture
    async def harness(self, ad: Directory) -> AsyncIterator[ContractHarness]:
        async with build(ad) as connector:
            yield LdapHarness(ad, connector)


class TestOpenLdapContract(ConnectorContract):
    @pytest.fixture
    async def harness(self, openldap: Directory) -> AsyncIterator[ContractHarness]:
        async with build(openldap) as connector:
            yield LdapHarness(openldap, connector)
