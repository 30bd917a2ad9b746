"""The API authenticates every call and keeps roles apart; tokens are stored hashed."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.acceptance.service import Service

pytestmark = pytest.mark.acceptance

READ_ROUTES = [("GET", "/v1/runs"), ("GET", "/v1/runs/some-id")]
ADMIN_ROUTES = [("POST", "/v1/offboard")]


def call(svc: Service, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(
        method,
        svc.url + path,
        headers=headers,
        json={"worker_id": "W0030", "reason": "auth test", "dry_run": True},
        timeout=10,
    )


@pytest.mark.parametrize(("method", "path"), READ_ROUTES + ADMIN_ROUTES)
def test_no_token_or_a_wrong_token_is_refused(service: Service, method: str, path: str) -> None:
    for token in (None, "lct_not-a-real-token"):
        response = call(service, method, path, token)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_auditor_cannot_act(service: Service, method: str, path: str) -> None:
    response = call(service, method, path, service.auditor_token)
    assert response.status_code == 403
    assert "auditor" in response.json()["detail"]


def test_auditor_can_read_runs(service: Service) -> None:
    assert service.get("/v1/runs", token=service.auditor_token).status_code == 200


def test_tokens_are_stored_as_sha256_only(service: Service) -> None:
    raw = (service.workdir / "lifecycle.db").read_bytes()
    for token in (service.admin_token, service.auditor_token):
        assert token.encode() not in raw
    import sqlite3

    with sqlite3.connect(service.workdir / "lifecycle.db") as db:
        hashes = {h for (h,) in db.execute("SELECT token_sha256 FROM api_tokens")}
    assert hashlib.sha256(service.admin_token.encode()).hexdigest() in hashes


def test_openapi_documents_the_routes(service: Service) -> None:
    spec = service.get("/openapi.json", token="").json()
    assert {
        "/v1/hr/{source}/events",
        "/v1/offboard",
        "/v1/runs",
        "/v1/runs/{run_id}",
        "/v1/evidence/checkpoint",
        "/healthz",
        "/readyz",
        "/metrics",
    } <= spec["paths"].keys()


OPEN = {
    ("POST", "/v1/hr/{source}/events"),
    ("GET", "/v1/evidence/checkpoint"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/problems/{kind}"),  # what a problem type means
}


def test_every_route_but_the_open_ones_needs_a_token(service: Service) -> None:
    spec = service.get("/openapi.json", token="").json()
    routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert len(routes - OPEN) >= 10
    for method, path in sorted(routes - OPEN):
        url = path.replace("{run_id}", "x").replace("{name}", "scheduling-va")
        response = httpx.request(method, service.url + url, json={}, timeout=10)
        assert response.status_code == 401, (method, path, response.status_code)


def test_auditors_cannot_change_anything(service: Service) -> None:
    spec = service.get("/openapi.json", token="").json()
    writes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m != "get"} - OPEN
    assert writes
    for method, path in sorted(writes):
        url = path.replace("{name}", "scheduling-va")
        response = httpx.request(
            method,
            service.url + url,
            json={},
            timeout=10,
            headers={"Authorization": f"Bearer {service.auditor_token}"},
        )
        assert response.status_code == 403, (method, path, response.status_code)
