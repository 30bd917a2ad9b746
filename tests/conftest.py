from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import postgres_database


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on a real PostgreSQL (started here when none is running)."""
    with postgres_database() as url:
        yield url
