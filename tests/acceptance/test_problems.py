"""The API describes itself truthfully: problem types and titles, 405 with Allow, the OpenAPI
document's error responses, /metrics as text, and the problem pages it links to."""

from __future__ import annotations

from http import HTTPStatus

import httpx
import pytest

from tests.acceptance.service import Service

pytestmark = pytest.mark.acceptance


def test_errors_have_a_stable_type_and_the_reason_phrase_as_title(service: Service) -> None:
    cases = [
        (service.get("/v1/runs/no-such-run"), 404, "/problems/not-found"),
        (service.get("/v1/tokens", service.auditor_token), 403, "/problems/forbidden"),
        (service.get("/v1/runs?limit=0"), 422, "/problems/validation"),
        (service.get("/v1/nothing-here"), 404, "/problems/not-found"),
    ]
    for response, status, kind in cases:
        title = HTTPStatus(status).phrase  # "Not Found", never a Python class name
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert (body["type"], body["title"], body["status"]) == (kind, title, status)
        page = httpx.get(service.url + body["type"], timeout=10)
        assert page.status_code == 200
        assert str(status) in page.text


def test_a_wrong_method_is_405_with_allow(service: Service) -> None:
    response = httpx.delete(
        f"{service.url}/v1/runs",
        headers={"Authorization": f"Bearer {service.admin_token}"},
        timeout=10,
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json()["type"] == "/problems/method-not-allowed"


def test_an_oversized_body_is_413_payload_too_large(service: Service) -> None:
    response = httpx.post(
        f"{service.url}/v1/offboard",
        content=b"x" * (2 * 1024 * 1024),
        headers={"Authorization": f"Bearer {service.admin_token}"},
        timeout=10,
    )
    assert response.status_code == 413
    assert response.json()["title"] == HTTPStatus(413).phrase
    assert response.json()["type"] == "/problems/payload-too-large"


def test_the_openapi_document_declares_problems_and_metrics_as_text(service: Service) -> None:
    document = service.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert "Problem" in schemas
    assert "HTTPValidationError" not in schemas

    runs = document["paths"]["/v1/runs/{run_id}"]["get"]["responses"]
    for status in ("401", "403", "404", "413", "422"):
        assert list(runs[status]["content"]) == ["application/problem+json"], status
    offboard = document["paths"]["/v1/offboard"]["post"]["responses"]
    assert {"200", "202", "404", "413", "422"} <= set(offboard)
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    scraped = httpx.get(f"{service.url}/metrics", timeout=10)
    assert scraped.headers["content-type"].startswith("text/plain")
    assert service.get("/docs").status_code == 200
