"""Intake integrity over HTTP: an event id means one event, every source honours its tolerance,
and queries out of range are refused with a 4xx that says why."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.acceptance.service import SECRET, Service, config_text, event_body

pytestmark = pytest.mark.acceptance

STRICT = f"""
[hr.sources.strict]
kind = "standardwebhooks"
secret = "{SECRET}"
tolerance_seconds = 30
"""


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("intake"), config_text(extra=STRICT))
    service.start()
    yield service
    service.stop()


def inbox(svc: Service, event_id: str) -> list[tuple[str, str | None, str | None, str]]:
    with sqlite3.connect(Path(svc.workdir) / "lifecycle.db") as db:
        return db.execute(
            "SELECT worker_id, outcome, run_id, payload_sha256 FROM inbox "
            "WHERE source_event_id = ? ORDER BY received_at",
            (event_id,),
        ).fetchall()


def runs_of(svc: Service, worker: str) -> list[dict[str, object]]:
    runs: list[dict[str, object]] = svc.get(f"/v1/runs?worker={worker}").json()["runs"]
    return runs


def test_a_reused_event_id_with_another_payload_is_a_conflict_not_a_duplicate(
    svc: Service,
) -> None:
    first = svc.send_event("W0040", msg_id="dup1")
    assert first.status_code == 202
    assert first.json()["outcome"] == "run"
    svc.wait_run(first.json()["run_id"])

    clash = event_body("W0041")
    second = svc.send_event("W0041", msg_id="dup1", body=clash)
    assert second.status_code == 409, second.text
    assert second.headers["content-type"].startswith("application/problem+json")
    assert "payload differs" in second.json()["detail"]
    assert runs_of(svc, "W0041") == []  # nothing pretended to revoke W0041
    rows = inbox(svc, "dup1")
    assert [(w, o) for w, o, _, _ in rows] == [("W0040", "run"), ("W0041", "conflict")]
    assert rows[1][2] is None
    log = svc.log()
    assert "ALERT hr_event_conflict" in log
    assert "W0041" in log

    # The same conflicting delivery again: refused again, stored once, alerted once.
    again = svc.send_event("W0041", msg_id="dup1", body=clash)
    assert again.status_code == 409
    assert len(inbox(svc, "dup1")) == 2
    assert svc.log().count("ALERT hr_event_conflict") == 1


def test_a_true_redelivery_still_returns_the_first_run(svc: Service) -> None:
    body = event_body("W0039")
    first = svc.send_event("W0039", msg_id="redelivered-1", body=body)
    again = svc.send_event("W0039", msg_id="redelivered-1", body=body)
    assert again.status_code == 202
    assert again.json()["duplicate"] is True
    assert again.json()["run_id"] == first.json()["run_id"]


def test_the_cli_test_event_with_a_reused_id_is_refused(svc: Service) -> None:
    ok = svc.cli("hr", "send-test-event", "--worker", "W0038", "--event-id", "dup-cli")
    assert ok.returncode == 0, ok.stderr
    clash = svc.cli("hr", "send-test-event", "--worker", "W0037", "--event-id", "dup-cli")
    assert clash.returncode == 1
    assert "409" in clash.stdout + clash.stderr
    assert runs_of(svc, "W0037") == []


def test_every_source_honours_its_configured_tolerance(svc: Service) -> None:
    stale = datetime.now(UTC) - timedelta(seconds=90)  # inside the default 300 s, not 30 s
    refused = svc.send_event("W0036", source="strict", at=stale)
    assert refused.status_code == 401
    assert "30 s" in refused.json()["detail"]
    accepted = svc.send_event("W0036", source="demo", at=stale)
    assert accepted.status_code == 202


def test_ignored_events_say_why(svc: Service) -> None:
    answer = svc.send_event("W0035", event_type="worker.updated")
    assert answer.status_code == 202
    assert answer.json()["outcome"] == "ignored"
    assert "starts no run" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/v1/runs?offset=1180591620717411303424", "less than or equal"),  # 2**70
        ("/v1/runs?limit=-1", "greater than or equal"),
        ("/v1/evidence/bundle?previous_size=1180591620717411303424", "less than or equal"),
    ],
)
def test_unbounded_numbers_in_queries_are_422(svc: Service, path: str, words: str) -> None:
    response = svc.get(path, token=svc.auditor_token if "evidence" in path else None)
    assert response.status_code == 422, response.text
    assert words in response.text


def test_a_previous_size_beyond_the_log_names_the_log_size(svc: Service) -> None:
    svc.wait_run(svc.send_event("W0034").json()["run_id"])
    size = int(svc.get("/v1/evidence/checkpoint", token="").text.splitlines()[1])
    response = svc.get(f"/v1/evidence/bundle?previous_size={size + 1000}", token=svc.auditor_token)
    assert response.status_code == 422, response.text
    assert f"log's size is {size}" in response.json()["detail"]


def test_deeply_nested_json_on_an_admin_route_is_400(svc: Service) -> None:
    for depth in (2_000, 100_000):
        response = httpx.post(
            svc.url + "/v1/offboard",
            content=b"[" * depth + b"]" * depth,
            headers={
                "Authorization": f"Bearer {svc.admin_token}",
                "content-type": "application/json",
            },
            timeout=10,
        )
        assert response.status_code == 400, (depth, response.text)
