"""Fixtures of the directory tests: each test taking ``directory`` runs against both servers
(the session servers themselves are in ``fixtures.py``, registered in ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.ldap.fixtures import Directory, LdapHarness, build


@pytest.fixture(params=["ad", "openldap"])
def directory(request: pytest.FixtureRequest) -> Directory:
    """Both directories, one after the other: every test taking this runs against each."""
    return request.getfixturevalue(str(request.param))  # type: ignore[no-any-return]


@pytest.fixture
async def harness_for(directory: Directory) -> AsyncIterator[LdapHarness]:
    connector = build(directory)
    async with connector:
        yield LdapHarness(directory, connector)
