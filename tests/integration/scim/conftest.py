"""Fixtures of the SCIM tests (the session servers are in ``fixtures.py``, registered in
``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from connectors.scim import ScimConnector
from tests.integration.scim.fixtures import ScimServer


@pytest.fixture
async def ehr(ehr_server: ScimServer) -> AsyncIterator[ScimConnector]:
    async with ehr_server.connector() as connector:
        yield connector
