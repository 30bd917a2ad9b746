from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.ldap.fixtures import ad, openldap, samba, slapd
from tests.integration.scim.fixtures import ehr_server, legacy_server, phone_server, scim_servers
from tests.servers import postgres_database

# Real servers, defined once for the whole session: Samba binds the fixed port 636, so the
# directory tests and the connector contract suite must share one.
__all__ = [
    "ad",
    "ehr_server",
    "legacy_server",
    "openldap",
    "phone_server",
    "samba",
    "scim_servers",
    "slapd",
]


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on a real PostgreSQL (started here when none is running)."""
    with postgres_database() as url:
        yield url
