from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.service import Service, config_text


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One running service on the demo-shaped configuration, shared by a module's tests
    (each test uses its own workers)."""
    svc = Service(tmp_path_factory.mktemp("svc"), config_text())
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def fresh_service(tmp_path: Path) -> Iterator[Service]:
    """A service of the test's own; configure ``.config`` then call ``.start()``."""
    svc = Service(tmp_path, config_text())
    yield svc
    svc.stop(kill=True)
