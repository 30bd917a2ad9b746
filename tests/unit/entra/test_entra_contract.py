"""The connector contract suite, run against the Entra connector on the fake Graph tenant."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from connectors.base import Worker
from connectors.entra import EntraConnector
from tests.contract.suite import ConnectorContract, ContractHarness
from tests.unit.entra.fake_graph import FakeEntra


class EntraHarness(ContractHarness):
    def __init__(self, fake: FakeEntra, connector: EntraConnector) -> None:
        self.fake = fake
        self.connector = connector
        self.group_ids = [fake.add_group(n) for n in ("VA Scheduling", "VA Billing", "All staff")]
        self.groups = tuple(f"group:{gid}" for gid in self.group_ids)
        self.ghost_account_id = str(uuid.uuid4())

    async def seed(self, worker: Worker, groups: Sequence[str]) -> None:
        self.fake.add_user(
            worker.worker_id,
            upn=worker.upn,
            mail=worker.email,
            groups=[g.removeprefix("group:") for g in groups],
        )


class TestEntraContract(ConnectorContract):
    @pytest.fixture
    async def harness(
        self, fake: FakeEntra, make_connector: Callable[..., EntraConnector]
    ) -> AsyncIterator[ContractHarness]:
        async with make_connector() as connector:
            yield EntraHarness(fake, connector)
