"""The connector contract suite against real scim2-server processes.

Runs twice: against a server with PATCH and filters (``ehr``) and against one without either
(``legacy``), so both the PATCH path and the GET + conditional PUT / local-matching path pass.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from connectors.base import Worker
from tests.contract.suite import ConnectorContract, ContractHarness
from tests.integration.scim.conftest import GROUPS, ScimServer, seed_user


class ScimHarness(ContractHarness):
    def __init__(self, server: ScimServer) -> None:
        self.server = server
        self.connector = server.connector(f"scim-{server.name}")
        self.groups = GROUPS

    async def seed(self, worker: Worker, groups: Sequence[str]) -> None:
        await seed_user(self.server, worker, groups)


class TestScimContract(ConnectorContract):
    pytestmark = [pytest.mark.anyio, pytest.mark.integration]

    @pytest.fixture(params=["ehr", "legacy"])
    async def harness(
        self, request: pytest.FixtureRequest, scim_servers: dict[str, ScimServer]
    ) -> AsyncIterator[ContractHarness]:
        harness = ScimHarness(scim_servers[request.param])
        async with harness.connector:
            yield harness
