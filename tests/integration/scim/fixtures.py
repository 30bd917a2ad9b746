"""Real scim2-server processes for the SCIM connector tests, the contract suite and the fan-out.

Registered in ``tests/conftest.py``. Three servers start once per test session on free loopback
ports:

- ``ehr`` and ``phone``: the default configuration (PATCH, filters, ETags all supported);
- ``legacy``: a ServiceProviderConfig without PATCH and without filtering, and a small page
  size, so that the connector's PUT fallback, local matching and paging run for real.

A missing ``scim2-server`` executable fails the tests with a message, in CI and everywhere else;
it never skips them.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from connectors.base import Worker
from connectors.scim import ScimConnector

SCIM_JSON = "application/scim+json"
GROUPS = ("ehr-scheduling", "ehr-billing", "all-staff")

LEGACY_CONFIG: dict[str, Any] = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
    "patch": {"supported": False},
    "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
    "filter": {"supported": False, "maxResults": 3},
    "changePassword": {"supported": False},
    "sort": {"supported": False},
    "etag": {"supported": True},
    "authenticationSchemes": [],
}


@dataclass
class ScimServer:
    name: str
    base_url: str
    token: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    supports_patch: bool = True

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token}", "Accept": SCIM_JSON},
            timeout=10.0,
        )

    def connector(self, name: str | None = None) -> ScimConnector:
        from pydantic import SecretStr

        return ScimConnector(
            name or self.name,
            base_url=self.base_url,
            client=httpx.AsyncClient(timeout=10.0),
            token=SecretStr(self.token),
            page_size=50,
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _executable() -> str:
    beside = Path(sys.executable).parent / "scim2-server"
    found = str(beside) if beside.exists() else shutil.which("scim2-server")
    if not found:
        pytest.fail(
            "scim2-server is not installed: run `uv sync` (it is a dev dependency); the SCIM "
            "integration tests need a real SCIM server and do not skip",
            pytrace=False,
        )
    return found


def _start(name: str, tmp: Path, extra: Sequence[str] = ()) -> ScimServer:
    port = _free_port()
    token = f"{name}-token-{port}"
    log = (tmp / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [
            _executable(),
            "--hostname",
            "127.0.0.1",
            "--port",
            str(port),
            "--bearer-token",
            token,
            *list(extra),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = ScimServer(name, f"http://127.0.0.1:{port}/v2", token, process, log)
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            log.close()
            pytest.fail(
                f"scim2-server {name!r} exited with {process.returncode}; see {log.name}",
                pytrace=False,
            )
        try:
            response = httpx.get(
                f"{server.base_url}/ServiceProviderConfig",
                headers={"Authorization": f"Bearer {token}"},
                timeout=1.0,
            )
            if response.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            _stop(server)
            pytest.fail(f"scim2-server {name!r} did not answer within 20 s", pytrace=False)
        time.sleep(0.1)
    for group in GROUPS:
        httpx.post(
            f"{server.base_url}/Groups",
            headers={"Authorization": f"Bearer {token}", "Content-Type": SCIM_JSON},
            json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": group},
        ).raise_for_status()
    return server


def _stop(server: ScimServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=5)
    server.log.close()


@pytest.fixture(scope="session")
def scim_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ScimServer]]:
    tmp = tmp_path_factory.mktemp("scim2-server")
    legacy_config = tmp / "legacy-spc.json"
    legacy_config.write_text(json.dumps(LEGACY_CONFIG), encoding="utf-8")
    servers: dict[str, ScimServer] = {}
    try:
        servers["ehr"] = _start("ehr", tmp)
        servers["phone"] = _start("phone", tmp)
        servers["legacy"] = _start("legacy", tmp, ["--service-provider-config", str(legacy_config)])
        servers["legacy"].supports_patch = False
        yield servers
    finally:
        for server in servers.values():
            _stop(server)


@pytest.fixture(scope="session")
def ehr_server(scim_servers: dict[str, ScimServer]) -> ScimServer:
    return scim_servers["ehr"]


@pytest.fixture(scope="session")
def phone_server(scim_servers: dict[str, ScimServer]) -> ScimServer:
    return scim_servers["phone"]


@pytest.fixture(scope="session")
def legacy_server(scim_servers: dict[str, ScimServer]) -> ScimServer:
    return scim_servers["legacy"]


async def seed_user(
    server: ScimServer,
    worker: Worker,
    groups: Sequence[str] = (),
    *,
    roles: Sequence[str] = (),
    active: bool = True,
) -> str:
    """Create a user (and its memberships) straight on the server, not via the connector."""
    async with server.client() as http:
        body: dict[str, Any] = {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": worker.upn or worker.email or worker.worker_id,
            "externalId": worker.worker_id,
            "active": active,
        }
        if worker.email:
            body["emails"] = [{"value": worker.email, "primary": True}]
        if roles:
            body["roles"] = [{"value": r} for r in roles]
        response = await http.post("/Users", json=body, headers={"Content-Type": SCIM_JSON})
        response.raise_for_status()
        user_id = str(response.json()["id"])
        for name in groups:
            await add_member(server, http, name, user_id)
        return user_id


async def add_member(server: ScimServer, http: httpx.AsyncClient, group: str, user_id: str) -> None:
    listing = (await http.get("/Groups", params={"count": 100})).json()
    matches = [g for g in listing.get("Resources", []) if g.get("displayName") == group]
    assert matches, f"group {group} missing on {server.name}"
    gid = matches[0]["id"]
    current = (await http.get(f"/Groups/{gid}")).json()
    members = [*list(current.get("members") or []), {"value": user_id, "type": "User"}]
    replacement = {k: v for k, v in current.items() if k != "meta"}
    replacement["members"] = members
    response = await http.put(
        f"/Groups/{gid}", json=replacement, headers={"Content-Type": SCIM_JSON}
    )
    response.raise_for_status()
