"""One ``ContractHarness`` per connector: a live system (a real server where one can run here,
else a respx fake answering with the vendor's documented bodies) and a connector pointed at it.

``HARNESSES`` maps a contract parameter to an async context manager that builds the harness;
``tests/contract/conftest.py`` runs the suite once per entry. The real servers are the session
fixtures of ``tests/integration/{ldap,scim}/fixtures.py``; a missing one fails the test.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import respx

from connectors.base import ConnectorContext, Worker
from connectors.entra import EntraConnector
from connectors.fhir import FhirConnector
from connectors.memory import MemoryConnector
from connectors.ringcentral import RingCentralConnector
from tests.contract.suite import ContractHarness
from tests.integration.ldap.fixtures import Directory, LdapHarness, build
from tests.integration.scim.fixtures import GROUPS, ScimServer, seed_user
from tests.unit.entra.conftest import SECRET_ENV, entra_options
from tests.unit.entra.fake_graph import CLIENT_SECRET, FakeEntra
from tests.unit.fhir.fake import BASE as FHIR_BASE
from tests.unit.fhir.fake import SYSTEM, TOKEN, FakeFhir
from tests.unit.ringcentral.fake import CLIENT_ID, JWT, SERVER, FakeRingCentral
from tests.unit.ringcentral.fake import CLIENT_SECRET as RC_CLIENT_SECRET

Build = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[ContractHarness]]


# --------------------------------------------------------------------------- fakes in process


class MemoryHarness(ContractHarness):
    missing_entitlement = "no-such-group"

    def __init__(self) -> None:
        self.connector = MemoryConnector("mem")
        self.groups = ("ehr-scheduling", "phone-queue-1", "all-staff")
        self.connector.groups.update(self.groups)

    async def seed(self, worker: Worker, groups: Sequence[str]) -> None:
        assert isinstance(self.connector, MemoryConnector)
        self.connector.add_account(worker.worker_id, email=worker.email, groups=set(groups))


class EntraHarness(ContractHarness):
    """Microsoft Graph cannot run here: the stateful respx fake of ``tests/unit/entra``."""

    def __init__(self, fake: FakeEntra, connector: EntraConnector) -> None:
        self.fake = fake
        self.connector = connector
        self.group_ids = [fake.add_group(n) for n in ("VA Scheduling", "VA Billing", "All staff")]
        self.groups = tuple(f"group:{gid}" for gid in self.group_ids)
        self.ghost_account_id = str(uuid.uuid4())
        self.missing_entitlement = f"group:{uuid.uuid4()}"

    async def seed(self, worker: Worker, groups: Sequence[str]) -> None:
        self.fake.add_user(
            worker.worker_id,
            upn=worker.upn,
            mail=worker.email,
            groups=[g.removeprefix("group:") for g in groups],
        )


class FhirHarness(ContractHarness):
    """Entitlements are PractitionerRole codes."""

    missing_entitlement = "no-such-role"

    def __init__(self, fake: FakeFhir, connector: FhirConnector) -> None:
        self.fake = fake
        self.connector = connector
        self.groups = ("scheduler", "billing")

    async def seed(self, worker: Worker, groups: Sequence[str]) -> None:
        self.fake.add_practitioner(worker.worker_id, email=worker.email, roles=tuple(groups))


class RingCentralHarness(ContractHarness):
    """RingCentral cannot run here; entitlements the suite assigns are call queues."""

    ghost_account_id = "999999999"
    missing_entitlement = "call-queue:9999"

    def __init__(self, fake: FakeRingCentral, connector: RingCentralConnector) -> None:
        self.fake = fake
        self.connector = connector
        self.groups = ("call-queue:2001", "call-queue:2002")

    async def seed(self, worker: Worker, groups: Sequence[str]) -> None:
        assert worker.email
        queues = tuple(g.split(":", 1)[1] for g in groups)
        self.fake.add_user(worker.email, queues=queues, devices=1, forwarding=1)


class ScimHarness(ContractHarness):
    missing_entitlement = "no-such-group"

    def __init__(self, server: ScimServer) -> None:
        self.server = server
        self.connector = server.connector(f"scim-{server.name}")
        self.groups = GROUPS

    async def seed(self, worker: Worker, groups: Sequence[str]) -> None:
        await seed_user(self.server, worker, groups)


# --------------------------------------------------------------------------- builders


@asynccontextmanager
async def memory(request: pytest.FixtureRequest) -> AsyncIterator[ContractHarness]:
    harness = MemoryHarness()
    async with harness.connector:
        yield harness


@asynccontextmanager
async def entra(request: pytest.FixtureRequest) -> AsyncIterator[ContractHarness]:
    fake = FakeEntra()
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv(SECRET_ENV, CLIENT_SECRET)
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        fake.install(router)
        connector = EntraConnector.from_config("idp", entra_options(), ConnectorContext())
        async with connector:
            yield EntraHarness(fake, connector)


@asynccontextmanager
async def fhir(request: pytest.FixtureRequest) -> AsyncIterator[ContractHarness]:
    fake = FakeFhir()
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("EHR_FHIR_TOKEN", TOKEN)
    options = {
        "kind": "fhir",
        "base_url": FHIR_BASE,
        "token": "env:EHR_FHIR_TOKEN",
        "identifier_system": SYSTEM,
        "page_size": 2,
    }
    with fake.router:
        async with FhirConnector.from_config("ehr", options, ConnectorContext()) as connector:
            yield FhirHarness(fake, connector)


@asynccontextmanager
async def ringcentral(request: pytest.FixtureRequest) -> AsyncIterator[ContractHarness]:
    fake = FakeRingCentral()
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("RC_CLIENT_SECRET", RC_CLIENT_SECRET)
    monkeypatch.setenv("RC_JWT", JWT)
    options = {
        "kind": "ringcentral",
        "server_url": SERVER,
        "client_id": CLIENT_ID,
        "client_secret": "env:RC_CLIENT_SECRET",
        "jwt": "env:RC_JWT",
        "per_page": 2,
    }
    with fake.router:
        connector = RingCentralConnector.from_config("phone", options, ConnectorContext())
        async with connector:
            yield RingCentralHarness(fake, connector)


def directory(kind: str) -> Build:
    """The real Samba AD DC (``ad``) or slapd (``openldap``) of the session."""

    @asynccontextmanager
    async def build_harness(request: pytest.FixtureRequest) -> AsyncIterator[ContractHarness]:
        server: Directory = request.getfixturevalue(kind)
        async with build(server) as connector:
            yield LdapHarness(server, connector)

    return build_harness


def scim(name: str) -> Build:
    """A real scim2-server of the session: ``ehr`` (PATCH, filters) or ``legacy`` (neither,
    so the GET + conditional PUT and local-matching paths run)."""

    @asynccontextmanager
    async def build_harness(request: pytest.FixtureRequest) -> AsyncIterator[ContractHarness]:
        servers: dict[str, ScimServer] = request.getfixturevalue("scim_servers")
        harness = ScimHarness(servers[name])
        async with harness.connector:
            yield harness

    return build_harness


#: contract parameter -> (harness builder, whether it needs a real server)
HARNESSES: dict[str, tuple[Build, bool]] = {
    "memory": (memory, False),
    "entra": (entra, False),
    "fhir": (fhir, False),
    "ringcentral": (ringcentral, False),
    "openldap": (directory("openldap"), True),
    "ad": (directory("ad"), True),
    "scim": (scim("ehr"), True),
    "scim-legacy": (scim("legacy"), True),
}
