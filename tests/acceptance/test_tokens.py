"""API tokens as an operator manages them: create (a name once; --rotate to replace), list,
revoke, expire, on the CLI and the API; a 401 says how to get and pass a token."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.acceptance.service import Service

pytestmark = pytest.mark.acceptance


def _create(service: Service, *args: str) -> str:
    done = service.cli("tokens", "create", *args, check=True)
    return done.stdout.strip().splitlines()[-1]


def _get(service: Service, path: str, token: str) -> httpx.Response:
    return httpx.get(service.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_duplicate_name_is_refused_with_a_hint_and_rotate_replaces_it(
    service: Service,
) -> None:
    old = _create(service, "--role", "auditor", "--name", "rotating")

    dup = service.cli("tokens", "create", "--role", "auditor", "--name", "rotating")
    assert dup.returncode == 1
    assert dup.stdout == ""
    assert "already exists" in dup.stderr
    assert "--rotate" in dup.stderr

    new = _create(service, "--role", "auditor", "--name", "rotating", "--rotate")

    assert _get(service, "/v1/runs", new).status_code == 200
    refused = _get(service, "/v1/runs", old)
    assert refused.status_code == 401
    assert "unknown or revoked" in refused.json()["detail"]


def test_tokens_list_and_revoke_on_the_cli(service: Service) -> None:
    token = _create(service, "--role", "auditor", "--name", "to-revoke")
    assert _get(service, "/v1/runs", token).status_code == 200

    listed = service.cli("tokens", "list", check=True)
    assert "to-revoke" in listed.stdout
    for header in ("id", "name", "role", "state", "created", "expires", "last used"):
        assert header in listed.stdout
    as_json = json.loads(service.cli("tokens", "list", "--json", check=True).stdout)["tokens"]
    mine = next(t for t in as_json if t["name"] == "to-revoke")
    assert mine["state"] == "active"
    assert mine["last_used_at"] is not None
    assert not any("sha256" in key or "hash" in key for key in mine)

    revoked = service.cli("tokens", "revoke", "to-revoke", check=True)
    assert "revoked token 'to-revoke'" in revoked.stdout
    assert _get(service, "/v1/runs", token).status_code == 401
    assert service.cli("tokens", "revoke", "nobody-at-all").returncode == 1


def test_admins_list_and_revoke_tokens_through_the_api(service: Service) -> None:
    token = _create(service, "--role", "auditor", "--name", "api-revoked")
    listed = _get(service, "/v1/tokens", service.admin_token)
    assert listed.status_code == 200
    entry = next(t for t in listed.json()["tokens"] if t["name"] == "api-revoked")
    assert set(entry) == {
        "id", "name", "role", "state", "created_at", "expires_at", "last_used_at", "revoked_at",
    }  # fmt: skip
    assert _get(service, "/v1/tokens", service.auditor_token).status_code == 403

    revoked = httpx.post(
        f"{service.url}/v1/tokens/{entry['id']}/revoke",
        headers={"Authorization": f"Bearer {service.admin_token}"},
        timeout=10,
    )

    assert revoked.status_code == 200
    assert revoked.json()["state"] == "revoked"
    assert _get(service, "/v1/runs", token).status_code == 401
    missing = httpx.post(
        f"{service.url}/v1/tokens/999999/revoke",
        headers={"Authorization": f"Bearer {service.admin_token}"},
        timeout=10,
    )
    assert missing.status_code == 404


def test_an_expired_token_is_refused_saying_so(service: Service) -> None:
    # The CLI itself takes seconds to start on a loaded machine: leave it time to.
    soon = (datetime.now(UTC) + timedelta(seconds=15)).replace(microsecond=0)
    at = soon.strftime("%Y-%m-%dT%H:%M:%S")  # UTC, as --expires-at reads a time without zone
    token = _create(service, "--role", "auditor", "--name", "short-lived", "--expires-at", at)
    assert _get(service, "/v1/runs", token).status_code == 200
    lasting = _create(service, "--role", "auditor", "--name", "month", "--expires-in", "30d")
    assert _get(service, "/v1/runs", lasting).status_code == 200

    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.5)  # past the expiry
    refused = _get(service, "/v1/runs", token)

    assert refused.status_code == 401
    assert "expired at" in refused.json()["detail"]
    assert service.cli("tokens", "create", "--role", "admin", "--name", "x", "--expires-in",
                       "soon").returncode == 2  # fmt: skip


def test_a_401_says_how_to_get_and_pass_a_token(service: Service) -> None:
    response = httpx.get(f"{service.url}/v1/runs", timeout=10)

    assert response.status_code == 401
    problem = response.json()
    assert problem["type"] == "/problems/not-authenticated"
    assert problem["title"] == "Unauthorized"
    assert "lifecycle tokens create --role admin --name NAME" in problem["detail"]
    assert "Authorization: Bearer" in problem["detail"]
    cli = service.cli("runs", "list")
    assert cli.returncode == 1
    assert "no token given" in cli.stderr
