"""HR deliveries are served by an ASGI layer in front of FastAPI (``FastIntake``: the route's
routing, dependency and exception layers cost as much CPU as storing the event). Its answers
must be the route's own: the same requests, sent to an app with it and to one without it
(each on a store of its own), get the same status, content type and body, for accepted
events and for every kind of bad input."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from starlette.types import Receive, Scope, Send

from lifecycle.service import Service
from lifecycle.settings import Settings
from lifecycle.web import create_app
from lifecycle.web.routers.hr import FastIntake

pytestmark = [pytest.mark.acceptance, pytest.mark.anyio]
SECRET = "whsec_ZmFzdC1pbnRha2UtdGVzdA=="
LIMIT = 4096
VARIES = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d{4}-\d\d-\d\dT[\d:.]+\+00:00|[0-9a-f]{64}")
"""Inbox ids, receipt times and payload digests (keyed per installation) in a detail."""


def settings(tmp: Path) -> Settings:
    return Settings(
        **{
            "service": {
                "database_url": f"sqlite:///{tmp}/lifecycle.db",
                "evidence_key": f"{tmp}/keys/evidence.ed25519",
                "log_origin": "fast.test/evidence",
                "demo": True,
                "max_body_bytes": LIMIT,
            },
            "demo": {"workers": 20, "domain": "clinic.example"},
            "hr": {"sources": {"demo": {"kind": "standardwebhooks", "secret": SECRET}}},
            "connectors": {"idp": {"kind": "memory", "seed_workers": 20}},
        }
    )


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[tuple[Service, Service]]:
    built = []
    for name in ("fast", "route"):
        (tmp_path / name).mkdir()
        built.append(Service.build(settings(tmp_path / name)))
    yield built[0], built[1]
    for service in built:
        await service.aclose()


def signed(data: dict[str, Any], msg_id: str, kind: str = "worker.terminated") -> dict[str, Any]:
    now = datetime.now(UTC)
    return signed_body(
        json.dumps({"type": kind, "timestamp": now.isoformat(), "data": data}), msg_id
    )


def signed_body(body: str, msg_id: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(SECRET).sign(msg_id, now, body),
    }
    return {"content": body, "headers": headers}


async def chunks(size: int) -> AsyncIterator[bytes]:
    for _ in range(size // 1024):
        yield b" " * 1024


def cases() -> list[tuple[str, str, str, dict[str, Any]]]:
    good = signed({"worker_id": "W0001"}, "msg_1")
    forged = signed({"worker_id": "W0002"}, "msg_2")
    forged["headers"]["webhook-signature"] = "v1,AAAA"
    return [
        ("accepted", "POST", "/v1/hr/demo/events", good),
        ("re-delivered", "POST", "/v1/hr/demo/events", good),
        ("conflict", "POST", "/v1/hr/demo/events", signed({"worker_id": "W0003"}, "msg_1")),
        ("bad signature", "POST", "/v1/hr/demo/events", forged),
        ("not json", "POST", "/v1/hr/demo/events", signed_body("{nope", "m6")),
        ("not the schema", "POST", "/v1/hr/demo/events", signed_body('{"type": 1}', "m7")),
        ("unknown worker", "POST", "/v1/hr/demo/events", signed({"worker_id": "W9999"}, "m9")),
        ("unknown source", "POST", "/v1/hr/nobody/events", signed({"worker_id": "W0004"}, "m4")),
        ("long source", "POST", f"/v1/hr/{'x' * 65}/events", signed({"worker_id": "W1"}, "m5")),
        ("declared too large", "POST", "/v1/hr/demo/events", {"content": b"x" * (LIMIT + 1)}),
        ("streamed too large", "POST", "/v1/hr/demo/events", {"content": chunks(LIMIT * 2)}),
        ("not a post", "GET", "/v1/hr/demo/events/x", {}),
    ]


def comparable(response: httpx.Response) -> tuple[int, str, Any]:
    body = response.json()
    for item in (body, *body.get("events", [])) if isinstance(body, dict) else ():
        for key in ("event_id", "run_id"):  # random ids: only whether there is one
            if item.get(key) is not None:
                item[key] = "<id>"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):  # ids, times, digests
        body["detail"] = VARIES.sub("<varies>", detail)
    return response.status_code, response.headers.get("content-type", ""), body


async def test_the_fast_path_answers_exactly_as_the_route(
    services: tuple[Service, Service],
) -> None:
    fast, route = services
    apps = (
        create_app(fast, background=False),
        create_app(route, background=False, fast_intake=False),
    )
    answers: list[list[tuple[int, str, Any]]] = [[], []]
    for i, app in enumerate(apps):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lifecycle") as http:
            for _, method, path, request in cases():
                answers[i].append(comparable(await http.request(method, path, **request)))
    for (name, *_), mine, theirs in zip(cases(), *answers, strict=True):
        assert mine == theirs, name
    statuses = dict(zip([c[0] for c in cases()], [a[0] for a in answers[0]], strict=True))
    assert statuses == {
        "accepted": 202,
        "re-delivered": 202,
        "conflict": 409,
        "bad signature": 401,
        "not json": 422,
        "not the schema": 422,
        "unknown worker": 422,
        "unknown source": 404,
        "long source": 422,
        "declared too large": 413,
        "streamed too large": 413,
        "not a post": 404,
    }


async def test_deliveries_do_not_reach_the_app_and_everything_else_does(
    services: tuple[Service, Service],
) -> None:
    fast, _ = services
    passed: list[tuple[str, str]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        passed.append((scope["method"], scope["path"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    transport = httpx.ASGITransport(app=FastIntake(app, fast))
    async with httpx.AsyncClient(transport=transport, base_url="http://lifecycle") as http:
        accepted = await http.post("/v1/hr/demo/events", **signed({"worker_id": "W0005"}, "m5"))
        assert accepted.status_code == 202
        assert accepted.json()["outcome"] == "run"
        await http.get("/v1/hr/events")
        await http.post(f"/v1/hr/{'y' * 65}/events")
        await http.post("/v1/hr/demo/events/more")
    assert passed == [
        ("GET", "/v1/hr/events"),
        ("POST", f"/v1/hr/{'y' * 65}/events"),
        ("POST", "/v1/hr/demo/events/more"),
    ]
