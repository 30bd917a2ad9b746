"""Console pages in process: HTML errors (not the API's problem+json), the upload limit of the
bundle verifier, roles on pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from lifecycle.service import Service
from tests.console.test_sessions import Clock, add_token, build, client_for, sign_in

pytestmark = pytest.mark.anyio


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = build(tmp_path, Clock())
    svc.settings.service.max_body_bytes = 4096
    yield svc
    svc.store.dispose()


async def test_a_bundle_larger_than_the_api_body_limit_can_be_verified(service: Service) -> None:
    token = add_token(service, "auditor", "au")
    async with client_for(service) as client:
        await sign_in(client, token)
        page = await client.get("/console/evidence")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf is not None
        junk = b"PK" + b"\0" * 20_000  # larger than max_body_bytes, and no zip
        answer = await client.post(
            "/console/evidence/verify",
            data={"csrf_token": csrf.group(1)},
            files={"bundle": ("big.zip", junk, "application/zip")},
        )
        assert answer.status_code == 422
        assert "Verification FAILED" in answer.text
        assert "not a readable zip bundle" in answer.text
        # Elsewhere the service's limit holds.
        other = await client.post(
            "/console/sign-out", data={"csrf_token": csrf.group(1), "pad": "x" * 20_000}
        )
        assert other.status_code == 413


async def test_errors_are_pages_and_roles_hold_on_every_page(service: Service) -> None:
    token = add_token(service, "auditor", "au")
    async with client_for(service) as client:
        await sign_in(client, token)
        missing = await client.get("/console/workers/NOPE")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/html")
        assert "is not in the workforce roster" in missing.text
        for path in ("/console/workers/W0001/offboard", "/console/hr"):
            refused = await client.get(path)
            assert refused.status_code == 403, path
            assert "needs admin" in refused.text
        page = await client.get("/console/workers/W0001")
        assert page.status_code == 200
        assert "/offboard" not in page.text
        assert page.headers["content-security-policy"].startswith("default-src 'self'")


async def test_an_action_the_state_forbids_is_a_409_page_and_a_missing_reason_a_422(
    service: Service,
) -> None:
    worker = service.store.get_worker("W0002")
    assert worker is not None
    service.store.upsert_worker(replace(worker, status="terminated"))
    token = add_token(service, "admin", "ad")
    async with client_for(service) as client:
        await sign_in(client, token)
        page = await client.get("/console/workers/W0002/suspend")
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert csrf is not None
        no_reason = await client.post(
            "/console/workers/W0002/suspend", data={"csrf_token": csrf.group(1)}
        )
        assert no_reason.status_code == 422
        assert "a reason is required" in no_reason.text
        conflict = await client.post(
            "/console/workers/W0002/suspend",
            data={"csrf_token": csrf.group(1), "reason": "incident"},
        )
        assert conflict.status_code == 409
        assert "Not possible now" in conflict.text
        assert "is terminated" in conflict.text
    assert service.store.list_runs(worker_id="W0002") == []
