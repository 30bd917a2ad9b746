"""Every kind of bad HR input gets a clear problem+json error and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.acceptance.service import Service, event_body

pytestmark = pytest.mark.acceptance


def oversized(svc: Service) -> httpx.Response:
    body = json.dumps(
        {
            "type": "worker.terminated",
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {"worker_id": "W0001", "reason": "x" * (1024 * 1024)},
        }
    ).encode()
    return svc.send_event("W0001", body=body)


def oversized_chunked(svc: Service) -> httpx.Response:
    def chunks() -> object:
        for _ in range(20):
            yield b"x" * 65536  # 1.25 MiB, no Content-Length

    return httpx.post(f"{svc.url}/v1/hr/demo/events", content=chunks(), timeout=10)


def nested(depth: int) -> Callable[[Service], httpx.Response]:
    """A signed body of JSON arrays nested ``depth`` deep (a parser-recursion attack)."""
    return lambda s: s.send_event("W0001", body=b"[" * depth + b"]" * depth)


CASES: dict[str, tuple[Callable[[Service], httpx.Response], int, str]] = {
    "bad signature": (
        lambda s: s.send_event("W0001", secret="whsec_d3Jvbmctc2VjcmV0"),
        401,
        "signature",
    ),
    "stale timestamp": (
        lambda s: s.send_event("W0001", at=datetime.now(UTC) - timedelta(minutes=10)),
        401,
        "timestamp",
    ),
    "unsigned": (
        lambda s: httpx.post(f"{s.url}/v1/hr/demo/events", json={"type": "x"}),
        401,
        "headers",
    ),
    "unknown source": (lambda s: s.send_event("W0001", source="workday"), 404, "workday"),
    "malformed json": (lambda s: s.send_event("W0001", body=b'{"type": "worker.term'), 422, "JSON"),
    "wrong schema": (lambda s: s.send_event("W0001", event_type="worker.promoted"), 422, "schema"),
    "hostile worker id": (lambda s: s.send_event("*)(uid=*"), 422, "worker id"),
    "nested 2,000 deep": (nested(2_000), 400, "nested too deeply"),
    "nested 100,000 deep": (nested(100_000), 400, "nested too deeply"),
    "invalid utf-8": (
        lambda s: s.send_event("W0001", body=b'{"type": "worker.terminated\xff"}'),
        400,
        "UTF-8",
    ),
    "another content type": (
        lambda s: s.send_event("W0001", content_type="application/x-www-form-urlencoded"),
        415,
        "application/json",
    ),
    "oversized body": (oversized, 413, "larger than"),
    "oversized chunked body": (oversized_chunked, 413, "larger than"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_and_stores_nothing(service: Service, case: str) -> None:
    send, status, words = CASES[case]
    before = (service.count("runs"), service.count("inbox"), service.count("workers"))
    response = send(service)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert words.lower() in problem["detail"].lower()
    assert (service.count("runs"), service.count("inbox"), service.count("workers")) == before


def test_oversized_bodies_are_refused_on_every_route_before_auth(service: Service) -> None:
    big = b"{" + b" " * (1024 * 1024 + 10) + b"}"
    for path in ("/v1/offboard", "/v1/policy/enforce", "/v1/reconcile"):
        response = httpx.post(
            service.url + path,
            content=big,
            timeout=10,
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 413, (path, response.status_code)


def test_termination_of_an_unknown_worker_is_refused_recorded_and_alerted(
    service: Service,
) -> None:
    """A clear 4xx to the sender (its delivery log shows the failure), and never dropped: the
    inbox keeps it ``unmapped`` (no run, no roster change) and an alert goes out at once."""
    before = (service.count("runs"), service.count("inbox"), service.count("workers"))
    body = event_body("W9876")
    response = service.send_event("W9876", msg_id="unknown-1", body=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "W9876" in response.json()["detail"]
    assert "unmapped" in response.json()["detail"]
    assert "ALERT unknown_worker_termination" in service.log()
    assert "W9876" in service.log()
    runs, events, workers = before
    assert (service.count("runs"), service.count("inbox"), service.count("workers")) == (
        runs,
        events + 1,
        workers,
    )
    # A retrying sender: refused again, alerted once, stored once.
    again = service.send_event("W9876", msg_id="unknown-1", body=body)
    assert again.status_code == 422
    assert service.log().count("ALERT unknown_worker_termination") == 1
    assert service.count("inbox") == events + 1


def test_transfer_of_an_unknown_worker_is_stored_ignored(service: Service) -> None:
    response = service.send_event("W9999", event_type="worker.transferred")
    assert response.status_code == 202
    assert response.json()["outcome"] == "ignored"
    assert "W9999" in response.json()["detail"]
