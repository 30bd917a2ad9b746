"""The connector contract suite against the stateful FHIR fake (respx).

Entitlements are PractitionerRole codes. FHIR has no account listing, creation or policy for
this connector, so the suite skips those; sessions are declared and answered not-applicable.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from connectors.base import Worker
from connectors.fhir import FhirConnector
from tests.contract.suite import ConnectorContract, ContractHarness
from tests.unit.fhir.fake import FakeFhir


class FhirHarness(ContractHarness):
    def __init__(self, fake: FakeFhir, connector: FhirConnector) -> None:
        self.fake = fake
        self.connector = connector
        self.groups = ("scheduler", "billing")

    async def seed(self, worker: Worker, groups: Sequence[str]) -> None:
        self.fake.add_practitioner(worker.worker_id, email=worker.email, roles=tuple(groups))


class TestFhirContract(ConnectorContract):
    @pytest.fixture
    def harness(self, fake: FakeFhir, fhir: FhirConnector) -> ContractHarness:
        return FhirHarness(fake, fhir)
