"""Console sessions over the real app (in process, no background work): cookie flags, the idle
timeout, sign-out, the token's revocation ending its sessions, and what the database keeps."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from lifecycle.auth import Role, new_token, token_hash
from lifecycle.service import Service
from lifecycle.services.tokens import create_token, revoke_token
from lifecycle.settings import Settings
from lifecycle.web import create_app

pytestmark = pytest.mark.anyio

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def build(tmp_path: Path, clock: Clock, **console: object) -> Service:
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        service={
            "database_url": f"sqlite:///{tmp_path}/lifecycle.db",
            "evidence_key": f"{tmp_path}/keys/evidence.ed25519",
            "demo": True,
        },
        connectors={"idp": {"kind": "memory", "seed_workers": 3}},
        demo={"workers": 3},
        console=console,
    )
    return Service.build(settings, clock=clock, base_dir=tmp_path)


@pytest.fixture
def service(tmp_path: Path, clock: Clock) -> Iterator[Service]:
    svc = build(tmp_path, clock)
    yield svc
    svc.store.dispose()


def client_for(service: Service, base_url: str = "http://console") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(service, background=False))
    return httpx.AsyncClient(transport=transport, base_url=base_url)


def add_token(service: Service, role: str, name: str) -> str:
    token = new_token()
    service.store.add_token(name, role, token_hash(token), T0)
    return token


async def sign_in(client: httpx.AsyncClient, token: str) -> str:
    """Sign in through the form; returns the session cookie's Set-Cookie header."""
    page = await client.get("/console/sign-in")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    answer = await client.post(
        "/console/sign-in", data={"csrf_token": csrf.group(1), "token": token}
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/console/overview"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if "lifecycle_session=" in c)
    return cookie


async def test_the_session_cookie_is_httponly_strict_and_secure_over_tls(
    service: Service, tmp_path: Path
) -> None:
    token = add_token(service, "admin", "a")
    async with client_for(service, "https://console") as c:
        cookie = await sign_in(c, token)
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "secure", "samesite=strict", "path=/console"} <= flags
    assert token not in cookie


async def test_x_forwarded_proto_counts_only_when_configured(tmp_path: Path, clock: Clock) -> None:
    for trusted in (False, True):
        svc = build(tmp_path / str(trusted), clock, trust_forwarded_proto=trusted)
        try:
            async with client_for(svc) as client:
                page = await client.get("/console/sign-in", headers={"X-Forwarded-Proto": "https"})
            cookie = page.headers["set-cookie"]
            assert "httponly" in cookie.lower()
            assert ("secure" in cookie.lower()) is trusted
        finally:
            svc.store.dispose()


async def test_a_session_ends_after_the_idle_timeout(service: Service, clock: Clock) -> None:
    token = add_token(service, "auditor", "au")
    client = client_for(service)
    await sign_in(client, token)
    clock.now += timedelta(minutes=14)
    assert (await client.get("/console/workers")).status_code == 200
    clock.now += timedelta(minutes=14)  # 14 min after the last request: still alive
    assert (await client.get("/console/workers")).status_code == 200
    clock.now += timedelta(minutes=15, seconds=1)
    gone = await client.get("/console/workers")
    assert gone.status_code == 303
    assert gone.headers["location"] == "/console/sign-in"
    # Dead for good: coming back at once does not revive it.
    assert (await client.get("/console/workers")).status_code == 303


async def test_the_idle_timeout_is_configurable(tmp_path: Path, clock: Clock) -> None:
    svc = build(tmp_path, clock, session_idle_minutes=5)
    try:
        token = add_token(svc, "admin", "a")
        client = client_for(svc)
        await sign_in(client, token)
        clock.now += timedelta(minutes=5, seconds=1)
        assert (await client.get("/console/runs")).status_code == 303
    finally:
        svc.store.dispose()


async def test_revoking_the_token_ends_its_sessions(service: Service, clock: Clock) -> None:
    token = add_token(service, "admin", "a")
    client = client_for(service)
    await sign_in(client, token)
    assert (await client.get("/console/runs")).status_code == 200
    revoke_token(service.store, "a", clock.now)
    answer = await client.get("/console/runs")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/sign-in"


async def test_a_token_expiring_ends_its_sessions_and_cannot_sign_in(
    service: Service, clock: Clock
) -> None:
    issued = create_token(
        service.store, "short", Role.AUDITOR, clock.now, expires_at=clock.now + timedelta(hours=1)
    )
    client = client_for(service)
    await sign_in(client, issued.secret)
    clock.now += timedelta(minutes=10)
    assert (await client.get("/console/runs")).status_code == 200
    clock.now += timedelta(minutes=50)  # the token's expiry; the session was not idle
    assert (await client.get("/console/runs")).status_code == 303
    page = await client.get("/console/sign-in")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    again = await client.post(
        "/console/sign-in", data={"csrf_token": csrf.group(1), "token": issued.secret}
    )
    assert again.status_code == 401
    assert "unknown, revoked or expired" in again.text


async def test_the_database_keeps_neither_the_token_nor_the_session_id(
    service: Service, tmp_path: Path
) -> None:
    token = add_token(service, "admin", "a")
    client = client_for(service)
    cookie = await sign_in(client, token)
    session_id = cookie.split(";")[0].split("=", 1)[1]
    with sqlite3.connect(tmp_path / "lifecycle.db") as db:
        rows = db.execute("SELECT * FROM console_sessions").fetchall()
    assert len(rows) == 1
    stored = " ".join(str(v) for v in rows[0])
    assert token not in stored
    assert session_id not in stored
    assert token_hash(token) in stored


async def test_sign_out_needs_the_csrf_token_and_ends_the_session(service: Service) -> None:
    token = add_token(service, "admin", "a")
    client = client_for(service)
    await sign_in(client, token)
    assert (await client.post("/console/sign-out")).status_code == 403
    page = await client.get("/console/overview")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf is not None
    out = await client.post("/console/sign-out", data={"csrf_token": csrf.group(1)})
    assert out.status_code == 303
    client.cookies.clear()
    assert (await client.get("/console/overview")).status_code == 303


async def test_sign_in_without_the_form_token_is_refused(service: Service) -> None:
    token = add_token(service, "admin", "a")
    client = client_for(service)
    answer = await client.post("/console/sign-in", data={"token": token})
    assert answer.status_code == 403
    assert "lifecycle_session" not in answer.headers.get("set-cookie", "")


async def test_a_polled_fragment_of_an_ended_session_answers_401(service: Service) -> None:
    client = client_for(service)
    answer = await client.get("/console/overview/live", headers={"X-Console-Live": "1"})
    assert answer.status_code == 401
