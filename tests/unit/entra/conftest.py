"""Fixtures for the Entra connector tests: a fake Graph tenant on respx, and connectors on it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import respx

from connectors.base import ConnectorContext
from connectors.entra import EntraConnector
from tests.unit.entra.fake_graph import CLIENT_ID, CLIENT_SECRET, TENANT, FakeEntra

SECRET_ENV = "LIFECYCLE_TEST_GRAPH_SECRET"


@pytest.fixture
def fake() -> FakeEntra:
    return FakeEntra()


@pytest.fixture
def graph(fake: FakeEntra) -> Iterator[respx.MockRouter]:
    """Every HTTP call of the test goes to the fake; anything else fails the test."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        fake.install(router)
        yield router


def entra_options(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "kind": "entra",
        "tenant_id": TENANT,
        "client_id": CLIENT_ID,
        "client_secret": f"env:{SECRET_ENV}",
        "batch_retry_initial_seconds": 0.01,
        "upn_domain": "contoso.com",
        "usage_location": "US",
    }
    options.update(overrides)
    return options


@pytest.fixture
def make_connector(
    graph: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., EntraConnector]:
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)

    def make(**overrides: Any) -> EntraConnector:
        connector = EntraConnector.from_config(
            "idp", entra_options(**overrides), ConnectorContext()
        )
        return connector

    return make


@pytest.fixture
async def connector(make_connector: Callable[..., EntraConnector]) -> AsyncIterator[EntraConnector]:
    async with make_connector() as conn:
        yield conn
