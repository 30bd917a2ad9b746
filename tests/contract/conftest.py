"""The one parametrised ``harness`` fixture: the contract suite runs once per connector.

Parameters that need a real server (slapd, Samba AD DC, scim2-server) carry the
``integration`` marker and start the session's server on first use; a server that cannot be
started fails the test (``pytest.fail`` in the session fixtures), in CI and everywhere else,
so the suite can never go green without having talked to it. Any pytest run of this folder may
start Samba (fixed port 636): wrap it in ``flock /tmp/lifecycle-samba.lock``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.contract.harnesses import HARNESSES
from tests.contract.suite import ContractHarness


@pytest.fixture(
    params=[
        pytest.param(name, marks=[pytest.mark.integration] if real else [])
        for name, (_, real) in HARNESSES.items()
    ]
)
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[ContractHarness]:
    build, _ = HARNESSES[str(request.param)]
    async with build(request) as harness:
        yield harness
