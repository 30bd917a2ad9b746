from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from connectors.base import ConnectorContext
from connectors.fhir import FhirConnector
from tests.unit.fhir.fake import BASE, SYSTEM, TOKEN, FakeFhir


@pytest.fixture
def fake() -> Iterator[FakeFhir]:
    server = FakeFhir()
    with server.router:
        yield server


@pytest.fixture
async def fhir(fake: FakeFhir, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FhirConnector]:
    monkeypatch.setenv("EHR_FHIR_TOKEN", TOKEN)
    connector = FhirConnector.from_config(
        "ehr",
        {
            "kind": "fhir",
            "base_url": BASE,
            "token": "env:EHR_FHIR_TOKEN",
            "identifier_system": SYSTEM,
            "page_size": 2,
        },
        ConnectorContext(),
    )
    async with connector:
        yield connector
