"""The connector contract suite against the stateful RingCentral fake (respx).

RingCentral cannot run here, so the fake stands in; it answers with RingCentral's documented
body shapes. Entitlements the suite assigns are call queues (``call-queue:<id>``). The
connector declares no list, create or policy operations, so the suite skips those.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from connectors.base import Worker
from connectors.ringcentral import RingCentralConnector
from tests.contract.suite import ConnectorContract, ContractHarness
from tests.unit.ringcentral.fake import FakeRingCentral


class RingCentralHarness(ContractHarness):
    ghost_account_id = "999999999"

    def __init__(self, fake: FakeRingCentral, connector: RingCentralConnector) -> None:
        self.fake = fake
        self.connector = connector
        self.groups = ("call-queue:2001", "call-queue:2002")

    async def seed(self, worker: Worker, groups: Sequence[str]) -> None:
        assert worker.email
        queues = tuple(g.split(":", 1)[1] for g in groups)
        self.fake.add_user(worker.email, queues=queues, devices=1, forwarding=1)


class TestRingCentralContract(ConnectorContract):
    @pytest.fixture
    def harness(self, fake: FakeRingCentral, rc: RingCentralConnector) -> ContractHarness:
        return RingCentralHarness(fake, rc)
