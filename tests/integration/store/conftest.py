"""The store tests run on both databases: an empty schema on SQLite (a file) and on PostgreSQL
(the session's server; ``postgres_url`` starts one where none is running)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lifecycle.store.sql import SqlStore
from tests.servers import drop_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL with nothing in it, on each of the two databases."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        url = request.getfixturevalue("postgres_url")
    drop_schema(url)
    return url


@pytest.fixture
def new_store(store_url: str) -> Iterator[SqlStore]:
    """A store with the current schema and no rows."""
    store = SqlStore(store_url)
    store.create_schema()
    yield store
    store.dispose()
