"""The full round trip on real systems: ``lifecycle serve`` connected to the Samba AD DC, slapd
and a scim2-server terminates a worker, a restore requested by one admin and approved by
another gives back exactly what the termination removed, and each server, read directly,
shows the account on and its groups back. Needs the session's real servers (Samba binds fixed
ports: run under ``flock /tmp/lifecycle-samba.lock``)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import httpx
import pytest

from connectors.base import Worker
from tests.acceptance.service import SECRET, Service
from tests.integration.ldap.fixtures import Directory, build
from tests.integration.scim.fixtures import ScimServer, seed_user

pytestmark = [pytest.mark.acceptance, pytest.mark.integration]
UF_ACCOUNTDISABLE = 0x2


def _toml(options: dict[str, Any]) -> str:
    return "\n".join(f"{key} = {json.dumps(value)}" for key, value in options.items())


@pytest.fixture
def real_service(
    tmp_path: Any, ad: Directory, openldap: Directory, scim_servers: dict[str, ScimServer]
) -> Iterator[Service]:
    ehr = scim_servers["ehr"]
    config = "\n".join(
        [
            "[service]",
            'database_url = "sqlite:///./lifecycle.db"',
            'evidence_key = "./keys/evidence.ed25519"',
            'log_origin = "roundtrip.lifecycle.local/evidence"',
            "demo = true",
            "poll_seconds = 0.2",
            "step_timeout_seconds = 20",
            "[demo]",
            "workers = 0",
            "[hr.sources.demo]",
            'kind = "standardwebhooks"',
            f'secret = "{SECRET}"',
            "[connectors.ad]",
            _toml(ad.options),
            "[connectors.ldap]",
            _toml(openldap.options),
            "[connectors.ehr]",
            _toml({"kind": "scim", "base_url": ehr.base_url, "token": ehr.token}),
            "",
        ]
    )
    service = Service(tmp_path, config)
    service.start()
    yield service
    service.stop()


def post(svc: Service, path: str, body: dict[str, Any], token: str) -> httpx.Response:
    return httpx.post(
        svc.url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def ldap_state(directory: Directory, worker: Worker) -> tuple[bool, frozenset[str]]:
    """Enabled and groups, as a connector of the test's own (not the service's) reads them,
    the enabled flag cross-checked against the raw attribute."""

    async def read() -> tuple[bool, frozenset[str], str]:
        async with build(directory, name=f"check-{directory.kind}") as connector:
            account = await connector.find_account(worker)
            assert account is not None
            state = await connector.read_state(account)
            return state.enabled, state.entitlements, account.account_id

    enabled, groups, _ = anyio.run(read)
    dn_attr = "userAccountControl" if directory.kind == "ad" else "pwdAccountLockedTime"
    dn = _dn(directory, worker)
    raw = directory.admin.attributes(dn, [dn_attr])
    if directory.kind == "ad":
        raw_enabled = not int(raw["useraccountcontrol"][0]) & UF_ACCOUNTDISABLE
    else:
        raw_enabled = not raw.get("pwdaccountlockedtime")
    assert raw_enabled == enabled
    return enabled, groups


def _dn(directory: Directory, worker: Worker) -> str:
    if directory.kind == "ad":
        return f"CN={worker.worker_id},{directory.users_ou}"
    return f"uid={worker.worker_id},{directory.users_ou}"


def scim_state(server: ScimServer, user_id: str) -> tuple[bool, frozenset[str]]:
    async def read() -> tuple[bool, frozenset[str]]:
        async with server.client() as http:
            user = (await http.get(f"/Users/{user_id}")).json()
            groups = (await http.get("/Groups", params={"count": 1000})).json()["Resources"]
        held = {
            g["displayName"]
            for g in groups
            if any(m.get("value") == user_id for m in g.get("members") or [])
        }
        return bool(user["active"]), frozenset(held)

    return anyio.run(read)


def test_terminate_then_restore_with_approval_on_samba_slapd_and_scim(
    real_service: Service, ad: Directory, openldap: Directory, scim_servers: dict[str, ScimServer]
) -> None:
    svc, ehr = real_service, scim_servers["ehr"]
    suffix = uuid.uuid4().hex[:8]
    worker = Worker(worker_id=f"R{suffix}", email=f"r{suffix}@example.org", name=f"R {suffix}")
    ad.admin.add_user(ad.users_ou, worker.worker_id, email=worker.email, groups=ad.groups[:2])
    openldap.admin.add_user(
        openldap.users_ou, worker.worker_id, email=worker.email, groups=openldap.groups[:2]
    )
    user_id = anyio.run(lambda: seed_user(ehr, worker, ["ehr-scheduling", "all-staff"]))
    # The worker joins the roster through an HR hire (no playbook maps their job: nothing runs).
    hire = json.dumps(
        {
            "type": "worker.hired",
            "timestamp": "2026-12-01T00:00:00+00:00",
            "data": {"worker_id": worker.worker_id, "email": worker.email},
        }
    ).encode()
    assert svc.send_event(worker.worker_id, body=hire).status_code == 202
    before = {
        "ad": ldap_state(ad, worker),
        "ldap": ldap_state(openldap, worker),
        "ehr": scim_state(ehr, user_id),
    }
    assert before["ad"] == (True, frozenset(ad.groups[:2]))
    assert before["ldap"] == (True, frozenset(openldap.groups[:2]))
    assert before["ehr"] == (True, frozenset({"ehr-scheduling", "all-staff"}))

    started = post(
        svc, "/v1/offboard", {"worker_id": worker.worker_id, "reason": "error"}, svc.admin_token
    )
    assert started.status_code == 202, started.text
    terminated = svc.wait_run(started.json()["id"], timeout=120)
    assert terminated["status"] == "verified", terminated
    after = {
        "ad": ldap_state(ad, worker),
        "ldap": ldap_state(openldap, worker),
        "ehr": scim_state(ehr, user_id),
    }
    assert after == {name: (False, frozenset()) for name in before}

    second = svc.cli("tokens", "create", "--role", "admin", "--name", "admin-2", check=True)
    second_admin = second.stdout.strip().splitlines()[-1]
    asked = post(
        svc,
        "/v1/restore",
        {"worker_id": worker.worker_id, "reason": "wrong worker"},
        svc.admin_token,
    )
    assert asked.status_code == 202, asked.text
    restore = asked.json()
    assert restore["status"] == "awaiting_approval"
    own = post(svc, f"/v1/approvals/{restore['id']}/approve", {}, svc.admin_token)
    assert own.status_code == 403
    approved = post(svc, f"/v1/approvals/{restore['id']}/approve", {}, second_admin)
    assert approved.status_code == 200, approved.text
    run = svc.wait_run(restore["id"], timeout=120)
    assert run["status"] == "verified", [
        (s["connector"], s["action"], s["status"], s["error"]) for s in run["steps"]
    ]

    restored = {
        "ad": ldap_state(ad, worker),
        "ldap": ldap_state(openldap, worker),
        "ehr": scim_state(ehr, user_id),
    }
    assert restored == before  # on again, with exactly the groups the termination took
    verify = {s["connector"]: s["readback"] for s in run["steps"] if s["action"] == "verify"}
    assert {name: rb["enabled"] for name, rb in verify.items()} == dict.fromkeys(before, True)

    record = json.loads(db_body(svc, restore["id"]))
    assert record["kind"] == "restore"
    assert record["reverses"] == terminated["evidence_seq"]
    assert record["approval"] == {"requested_by": "admin:admin-1", "approved_by": "admin:admin-2"}
    removed = {
        a["system"]: set(a["removed"])
        for a in json.loads(db_body(svc, terminated["id"]))["actions"]
        if a["op"] == "remove_access"
    }
    added = {a["system"]: set(a["added"]) for a in record["actions"] if a["op"] == "restore_access"}
    assert added == removed  # exactly the snapshot
    assert all(removed.values())


def db_body(svc: Service, run_id: str) -> bytes:
    with sqlite3.connect(svc.workdir / "lifecycle.db") as db:
        (body,) = db.execute("SELECT body FROM evidence WHERE run_id = ?", (run_id,)).fetchone()
    return bytes(body)
