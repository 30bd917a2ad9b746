"""HR sources as the vendors really send them, over HTTP to the running service: BambooHR
(event-based JSON and form posts, field-based, its API unreachable during a termination),
Deel, Gusto, HiBob and Rippling, each vendor's bad signature and replay, and the inbox in the
API, the CLI and /metrics. Request bodies and headers follow each vendor's documented examples
(tests/unit/hr/vendors.py cites the pages); a local HTTP double stands in for BambooHR's API
(tests/acceptance/bamboohr_double.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.bamboohr_double import BambooHrDouble
from tests.acceptance.service import Service, config_text
from tests.unit.hr.vendors import (
    bamboo_employee,
    bamboo_entry,
    bamboo_event,
    bamboo_event_form,
    bamboo_fields,
    bamboo_headers,
    deel_headers,
    deel_terminated,
    dumps,
    gusto_event,
    gusto_headers,
    hibob_event,
    hibob_headers,
    rippling_event,
    rippling_headers,
)

pytestmark = pytest.mark.acceptance

BAMBOO_SECRET = "bamboo-private-key"
BAMBOO_KEY = "bamboo-api-key"
DEEL_KEY = "deel-signing-key"
GUSTO_TOKEN = "6590f590-3dba-495e-9bea-c361e1e2efc0"
HIBOB_SECRET = "hibob-webhook-secret"
RIPPLING_TOKEN = "rippling-static-token"
SYSTEMS = ("ehr", "idp", "phone")
YESTERDAY = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()


def sources(double: BambooHrDouble) -> str:
    return f"""
[hr]
retry_poll_seconds = 0.3

[hr.sources.bamboohr]
kind = "bamboohr"
secret = "{BAMBOO_SECRET}"
api_key = "{BAMBOO_KEY}"
api_base_url = "{double.url}"
lookup_attempts = 2
lookup_timeout_seconds = 2
retry_initial_seconds = 0.5
retry_max_seconds = 1
escalate_after_seconds = 2

[hr.sources.deel]
kind = "deel"
secret = "{DEEL_KEY}"

[hr.sources.gusto]
kind = "gusto"
secret = "file:./gusto.token"

[hr.sources.hibob]
kind = "hibob"
secret = "{HIBOB_SECRET}"

[hr.sources.rippling]
kind = "rippling"
secret = "{RIPPLING_TOKEN}"
"""


@pytest.fixture(scope="module")
def double() -> Iterator[BambooHrDouble]:
    bamboo = BambooHrDouble(BAMBOO_KEY)
    for n in range(20, 30):
        bamboo.employees[str(1000 + n)] = bamboo_employee(
            str(1000 + n), email=f"w00{n}@example.org", termination_date=YESTERDAY
        )
    bamboo.start()
    yield bamboo
    bamboo.stop()


@pytest.fixture(scope="module")
def hr_service(
    tmp_path_factory: pytest.TempPathFactory, double: BambooHrDouble
) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("hr"), config_text(extra=sources(double)))
    svc.start()
    yield svc
    svc.stop()


def post(svc: Service, source: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{svc.url}/v1/hr/{source}/events", content=body, headers=headers, timeout=10)


def bamboo(svc: Service, payload: dict[str, Any] | bytes, *, form: bool = False) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return post(svc, "bamboohr", body, bamboo_headers(body, BAMBOO_SECRET, form=form))


def verified(svc: Service, response: httpx.Response, worker: str) -> dict[str, Any]:
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["outcome"] == "run", answer
    run = svc.wait_run(answer["run_id"])
    assert (run["status"], run["kind"], run["worker_id"]) == ("verified", "offboard", worker)
    for system in SYSTEMS:
        assert svc.account(system, worker)["enabled"] is False
    return run


def inbox(svc: Service, **params: str) -> list[dict[str, Any]]:
    response = svc.get("/v1/hr/events?" + "&".join(f"{k}={v}" for k, v in params.items()))
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def eventually(check: Callable[[], bool], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def counts(svc: Service) -> tuple[int, int]:
    return svc.count("inbox"), svc.count("runs")


# --------------------------------------------------------------------------- BambooHR


def test_bamboohr_status_terminated_via_event_based_json(hr_service: Service) -> None:
    run = verified(hr_service, bamboo(hr_service, bamboo_event("1020")), "W0020")
    assert run["effective_at"].startswith(YESTERDAY)


def test_bamboohr_status_terminated_via_form_post(hr_service: Service) -> None:
    verified(hr_service, bamboo(hr_service, bamboo_event_form("1021"), form=True), "W0021")


def test_bamboohr_field_based_payload(hr_service: Service) -> None:
    payload = bamboo_fields(
        bamboo_entry(
            "1022",
            fields={"Employment Status": "Terminated", "Work Email": "w0022@example.org"},
        ),
        bamboo_entry("1023", ("Home Phone",), {"Home Phone": "555-0100"}),
    )
    response = bamboo(hr_service, payload)
    assert response.status_code == 202, response.text
    first, second = response.json()["events"]
    assert (first["outcome"], second["outcome"]) == ("run", "ignored")
    assert "Home Phone" in second["detail"]
    run = hr_service.wait_run(first["run_id"])
    assert (run["status"], run["worker_id"]) == ("verified", "W0022")


def test_bamboohr_field_that_matters_to_nothing_is_ignored(hr_service: Service) -> None:
    response = bamboo(hr_service, bamboo_event("1024", ("homePhone",)))
    assert response.status_code == 202
    assert response.json()["outcome"] == "ignored"
    (row,) = [
        e
        for e in inbox(hr_service, source="bamboohr", outcome="ignored")
        if e["id"] == response.json()["event_id"]
    ]
    assert "homePhone" in row["detail"]


def test_bamboohr_bad_signature_and_replay(hr_service: Service) -> None:
    before = counts(hr_service)
    body = json.dumps(bamboo_event("1025")).encode()
    response = post(hr_service, "bamboohr", body, bamboo_headers(body, "not-the-key"))
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    old = str(int((datetime.now(UTC) - timedelta(minutes=10)).timestamp()))
    replay = post(hr_service, "bamboohr", body, bamboo_headers(body, BAMBOO_SECRET, stamp=old))
    assert replay.status_code == 401
    assert "300 s" in replay.json()["detail"]
    assert counts(hr_service) == before


def test_bamboohr_unreachable_during_a_termination_is_stored_retried_then_verified(
    tmp_path: Path,
) -> None:
    double = BambooHrDouble(BAMBOO_KEY)
    double.employees["1040"] = bamboo_employee(
        "1040", email="w0040@example.org", termination_date=YESTERDAY
    )
    svc = Service(tmp_path, config_text(extra=sources(double)))
    svc.start()
    try:
        response = bamboo(svc, bamboo_event("1040"))  # the double is not running
        assert response.status_code == 202, response.text
        answer = response.json()
        assert (answer["outcome"], answer["run_id"]) == ("pending", None)
        assert "ConnectError" in answer["detail"]
        (row,) = inbox(svc, outcome="pending")
        assert row["id"] == answer["event_id"]
        # Retried from the store, still unreachable: escalated once it is overdue.
        assert eventually(lambda: "ALERT hr_lookup_overdue" in svc.log())
        assert inbox(svc, outcome="pending")[0]["attempts"] >= 2
        svc.stop(kill=True)  # the pending delivery survives a crash

        double.start()
        svc.start()
        assert eventually(lambda: inbox(svc, outcome="run") != [])
        (row,) = inbox(svc, outcome="run")
        assert row["id"] == answer["event_id"]  # the same inbox row, now decided
        run = svc.wait_run(row["run_id"])
        assert (run["status"], run["worker_id"]) == ("verified", "W0040")
        assert any(r.startswith("/api/v1/employees/1040?") for r in double.requests)
        assert inbox(svc, outcome="pending") == []
    finally:
        svc.stop()
        double.stop()


# --------------------------------------------------------------------------- the others


def test_deel_contract_terminated_is_a_termination(hr_service: Service) -> None:
    body = dumps(deel_terminated("W0026", tracking_id="trk-w0026", completion_date=YESTERDAY))
    response = post(hr_service, "deel", body, deel_headers(body, DEEL_KEY))
    verified(hr_service, response, "W0026")
    before = counts(hr_service)
    bad = post(hr_service, "deel", body, deel_headers(body, "wrong-key"))
    assert bad.status_code == 401
    stale = dumps(
        deel_terminated("W0026", tracking_id="trk-old", sent=datetime.now(UTC) - timedelta(hours=1))
    )
    assert post(hr_service, "deel", stale, deel_headers(stale, DEEL_KEY)).status_code == 401
    assert counts(hr_service) == before
    again = post(hr_service, "deel", body, deel_headers(body, DEEL_KEY))  # a re-delivery
    assert again.json()["duplicate"] is True
    assert again.json()["run_id"] == response.json()["run_id"]


def test_gusto_handshake_then_termination_effective(hr_service: Service) -> None:
    handshake = post(
        hr_service,
        "gusto",
        dumps({"verification_token": GUSTO_TOKEN}),
        {"Content-Type": "application/json"},
    )
    assert handshake.status_code == 200
    assert (hr_service.workdir / "gusto.token").read_text().strip() == GUSTO_TOKEN
    assert GUSTO_TOKEN not in hr_service.log()
    body = dumps(gusto_event(entity_uuid="W0027", uuid="b7f6d4f0-0027-4c3e-9d4a-000000000027"))
    response = post(hr_service, "gusto", body, gusto_headers(body, GUSTO_TOKEN))
    run = verified(hr_service, response, "W0027")
    before = counts(hr_service)
    assert post(hr_service, "gusto", body, gusto_headers(body, "forged")).status_code == 401
    replay = post(hr_service, "gusto", body, gusto_headers(body, GUSTO_TOKEN))
    assert replay.status_code == 202
    assert (replay.json()["duplicate"], replay.json()["run_id"]) == (True, run["id"])
    assert counts(hr_service) == before


def test_hibob_ping_then_employee_left(hr_service: Service) -> None:
    ping = post(hr_service, "hibob", b"Ping test", {"Content-Type": "text/plain"})
    assert ping.status_code == 200
    body = dumps(hibob_event("employee.left", "W0028", triggered_at=datetime.now(UTC).isoformat()))
    response = post(hr_service, "hibob", body, hibob_headers(body, HIBOB_SECRET))
    run = verified(hr_service, response, "W0028")
    before = counts(hr_service)
    assert post(hr_service, "hibob", body, hibob_headers(body, "wrong")).status_code == 401
    replay = post(hr_service, "hibob", body, hibob_headers(body, HIBOB_SECRET))
    assert (replay.json()["duplicate"], replay.json()["run_id"]) == (True, run["id"])
    assert counts(hr_service) == before


def test_rippling_employee_deleted_with_its_bearer_token(hr_service: Service) -> None:
    body = rippling_event("EmployeeDeleted", "W0029")
    response = post(hr_service, "rippling", body, rippling_headers(RIPPLING_TOKEN))
    run = verified(hr_service, response, "W0029")
    before = counts(hr_service)
    assert post(hr_service, "rippling", body, rippling_headers("guess")).status_code == 401
    assert post(hr_service, "rippling", body, {}).status_code == 401
    replay = post(hr_service, "rippling", body, rippling_headers(RIPPLING_TOKEN))
    assert (replay.json()["duplicate"], replay.json()["run_id"]) == (True, run["id"])
    assert counts(hr_service) == before


# --------------------------------------------------------------------------- the inbox


def test_unmapped_termination_is_stored_alerted_and_listed(hr_service: Service) -> None:
    body = rippling_event("EmployeeDeleted", "R-unknown-7")
    response = post(hr_service, "rippling", body, rippling_headers(RIPPLING_TOKEN))
    assert response.status_code == 422  # told, and kept: the inbox row below, the alert
    assert "unmapped" in response.json()["detail"]
    assert "ALERT unknown_worker_termination" in hr_service.log()
    rows = inbox(hr_service, source="rippling", outcome="unmapped")
    assert [r["worker_id"] for r in rows] == ["R-unknown-7"]
    cli = hr_service.cli(
        "hr",
        "events",
        "--outcome",
        "unmapped",
        "--source",
        "rippling",
        "--json",
        token=hr_service.admin_token,
    )
    assert cli.returncode == 0, cli.stderr
    assert [e["worker_id"] for e in json.loads(cli.stdout)["events"]] == ["R-unknown-7"]
    human = hr_service.cli("hr", "events", "--source", "rippling", token=hr_service.admin_token)
    assert human.returncode == 0 and "unmapped" in human.stdout


def test_inbox_needs_an_admin_and_metrics_count_by_source_and_outcome(
    hr_service: Service,
) -> None:
    assert hr_service.get("/v1/hr/events", token=hr_service.auditor_token).status_code == 403
    assert hr_service.get("/v1/hr/events", token="").status_code == 401
    assert hr_service.get("/v1/hr/events?outcome=lost").status_code == 422
    assert hr_service.get("/v1/hr/events?offset=1180591620717411303424").status_code == 422
    metrics = httpx.get(f"{hr_service.url}/metrics", timeout=10).text
    assert 'lifecycle_hr_events{outcome="run",source="bamboohr"}' in metrics
    assert 'lifecycle_hr_events{outcome="ignored",source="bamboohr"}' in metrics
