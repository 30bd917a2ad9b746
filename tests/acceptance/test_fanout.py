"""One termination across every kind of system at once: the memory identity provider, two real
scim2-server processes (EHR and a SCIM phone service) and RingCentral (respx: it cannot run
here). The whole service runs in-process so that respx can stand in for RingCentral; the webhook
goes through the app's HTTP interface and the SCIM servers are reached over loopback."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime

import anyio
import httpx
import pytest
import respx
from standardwebhooks.webhooks import Webhook

from connectors.base import Worker
from lifecycle.evidence.export import export_bundle
from lifecycle.service import Service
from lifecycle.settings import Settings
from lifecycle.web import create_app
from tests.integration.scim.fixtures import ScimServer, seed_user
from tests.unit.ringcentral.fake import CLIENT_ID, CLIENT_SECRET, JWT, SERVER, FakeRingCentral

pytestmark = [pytest.mark.acceptance, pytest.mark.integration, pytest.mark.anyio]
SECRET = "whsec_ZmFub3V0LXRlc3Qtc2VjcmV0"
WORKER = Worker(worker_id="W0042", email="w0042@clinic.example", upn="w0042@clinic.example")


@pytest.fixture
def ringcentral(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRingCentral]:
    monkeypatch.setenv("RC_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.setenv("RC_JWT", JWT)
    fake = FakeRingCentral()
    router = respx.MockRouter(assert_all_called=False, assert_all_mocked=False)
    router.route(host="platform.ringcentral.com").mock(side_effect=fake.handle)
    router.route(host="127.0.0.1").pass_through()  # the real SCIM servers
    with router:
        yield fake


def settings_for(
    tmp: str, ehr: ScimServer, voice: ScimServer, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("EHR_TOKEN", ehr.token)
    monkeypatch.setenv("VOICE_TOKEN", voice.token)
    return Settings(
        **{
            "service": {
                "database_url": f"sqlite:///{tmp}/lifecycle.db",
                "evidence_key": f"{tmp}/keys/evidence.ed25519",
                "log_origin": "fanout.test/evidence",
                "demo": True,
                "poll_seconds": 0.1,
            },
            "demo": {"workers": 50, "domain": "clinic.example"},
            "hr": {"sources": {"demo": {"kind": "standardwebhooks", "secret": SECRET}}},
            "connectors": {
                "idp": {
                    "kind": "memory",
                    "seed_workers": 50,
                    "domain": "clinic.example",
                    "seed_groups": ["va-scheduling", "all-staff"],
                },
                "ehr": {"kind": "scim", "base_url": ehr.base_url, "token": "env:EHR_TOKEN"},
                "voice": {"kind": "scim", "base_url": voice.base_url, "token": "env:VOICE_TOKEN"},
                "phone": {
                    "kind": "ringcentral",
                    "server_url": SERVER,
                    "client_id": CLIENT_ID,
                    "client_secret": "env:RC_CLIENT_SECRET",
                    "jwt": "env:RC_JWT",
                },
            },
        }
    )


async def test_one_termination_revokes_idp_both_scim_servers_and_ringcentral(
    tmp_path: object,
    ehr_server: ScimServer,
    phone_server: ScimServer,
    ringcentral: FakeRingCentral,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ehr_id = await seed_user(ehr_server, WORKER, ["ehr-scheduling", "all-staff"])
    voice_id = await seed_user(phone_server, WORKER, ["all-staff"])
    extension = ringcentral.add_user(WORKER.email or "", queues=("2001",), devices=1, forwarding=1)
    service = Service.build(settings_for(str(tmp_path), ehr_server, phone_server, monkeypatch))
    app = create_app(service, background=False)
    now = datetime.now(UTC)
    body = json.dumps(
        {
            "type": "worker.terminated",
            "timestamp": now.isoformat(),
            "data": {"worker_id": "W0042", "reason": "contract_end"},
        }
    )
    headers = {
        "webhook-id": "msg_fanout",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign("msg_fanout", now, body),
    }
    async with anyio.create_task_group() as tg:
        await tg.start(service.run)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lifecycle") as http:
            response = await http.post("/v1/hr/demo/events", content=body, headers=headers)
            assert response.status_code == 202, response.text
            run_id = response.json()["run_id"]
            with anyio.fail_after(30):
                while service.store.load_run(run_id).run.status in ("pending", "running"):
                    await anyio.sleep(0.05)
        tg.cancel_scope.cancel()
    await service.aclose()

    detail = service.store.load_run(run_id)
    assert detail.run.status == "verified", [
        (s.connector, s.action, s.status, s.error) for s in detail.steps
    ]
    [(_, raw)] = list(service.store.evidence_records())
    record = json.loads(raw)
    verifies = {a["system"]: a for a in record["actions"] if a["op"] == "verify"}
    assert set(verifies) == {"idp", "ehr", "voice", "phone"}
    for system, action in verifies.items():
        assert action["readback"]["enabled"] is False, system
        assert action["account_id"], system
    assert verifies["ehr"]["account_id"] == ehr_id
    assert verifies["voice"]["account_id"] == voice_id
    assert verifies["phone"]["account_id"] == extension.id
    # and straight from the systems themselves
    async with ehr_server.client() as http:
        assert (await http.get(f"/Users/{ehr_id}")).json()["active"] is False
    async with phone_server.client() as http:
        assert (await http.get(f"/Users/{voice_id}")).json()["active"] is False
    assert ringcentral.extensions[extension.id].status == "Disabled"
    assert ringcentral.holdings(extension.id) == set()

    # Evidence holds no secrets, no raw vendor bodies and no personal contact data: scan the
    # record and every file of an exported bundle.
    assert service.key is not None
    out = io.BytesIO()
    export_bundle(service.store, service.key, "fanout.test/evidence", out, now=datetime.now(UTC))
    with zipfile.ZipFile(out) as bundle:
        blobs = [raw] + [bundle.read(name) for name in bundle.namelist()]
    forbidden = [
        SECRET,
        SECRET.removeprefix("whsec_"),
        ehr_server.token,
        phone_server.token,
        CLIENT_SECRET,
        JWT,
        WORKER.email or "",
        "urn:ietf:params:scim",
        '"extensionNumber"',
        '"userName"',
        '"access_token"',
    ]
    for blob in blobs:
        for needle in forbidden:
            assert needle.encode() not in blob, needle
