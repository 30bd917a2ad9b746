from __future__ import annotations

from collections.abc import Sequence

import pytest

from connectors.base import Worker
from connectors.memory import MemoryConnector
from tests.contract.suite import ConnectorContract, ContractHarness


class MemoryHarness(ContractHarness):
    def __init__(self) -> None:
        self.connector = MemoryConnector("mem")
        self.groups = ("ehr-scheduling", "phone-queue-1", "all-staff")
        self.connector.groups.update(self.groups)

    async def seed(self, worker: Worker, groups: Sequence[str]) -> None:
        assert isinstance(self.connector, MemoryConnector)
        self.connector.add_account(worker.worker_id, email=worker.email, groups=set(groups))


class TestMemoryContract(ConnectorContract):
    @pytest.fixture
    def harness(self) -> ContractHarness:
        return MemoryHarness()
