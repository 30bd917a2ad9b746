from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from connectors.base import ConnectorContext
from connectors.ringcentral import RingCentralConnector
from tests.unit.ringcentral.fake import CLIENT_ID, CLIENT_SECRET, JWT, SERVER, FakeRingCentral


@pytest.fixture
def fake() -> Iterator[FakeRingCentral]:
    system = FakeRingCentral()
    with system.router:
        yield system


@pytest.fixture
def rc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RC_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("RC_JWT", JWT)


@pytest.fixture
async def rc(fake: FakeRingCentral, rc_env: None) -> AsyncIterator[RingCentralConnector]:
    connector = RingCentralConnector.from_config(
        "phone",
        {
            "kind": "ringcentral",
            "server_url": SERVER,
            "client_id": CLIENT_ID,
            "client_secret": "env:RC_CLIENT_SECRET",
            "jwt": "env:RC_JWT",
            "per_page": 2,
        },
        ConnectorContext(),
    )
    async with connector:
        yield connector
