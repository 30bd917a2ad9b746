"""A signed HR webhook over HTTP terminates a worker everywhere, verified and evidenced."""

from __future__ import annotations

import base64
import hashlib
import sqlite3

import pytest

from lifecycle.evidence.checkpoint import verify_checkpoint
from lifecycle.evidence.merkle import leaf_hash, root_hash
from tests.acceptance.service import ORIGIN, Service, event_body

pytestmark = pytest.mark.acceptance
SYSTEMS = ("ehr", "idp", "phone")


def test_signed_termination_is_revoked_everywhere_and_verified(service: Service) -> None:
    response = service.send_event("W0042")
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    run = service.wait_run(run_id)
    assert run["status"] == "verified"
    assert run["kind"] == "offboard"
    assert run["worker_id"] == "W0042"
    assert run["time_to_revoke_ms"] > 0
    assert run["evidence_seq"] is not None
    for system in SYSTEMS:
        account = service.account(system, "W0042")
        assert account["enabled"] is False
        assert account["groups"] == []
        verify = next(
            s for s in run["steps"] if s["connector"] == system and s["action"] == "verify"
        )
        assert verify["status"] == "done"
        assert verify["readback"]["enabled"] is False
    for step in run["steps"]:
        assert {
            "connector",
            "action",
            "status",
            "attempts",
            "started_at",
            "finished_at",
            "error",
            "readback",
        } <= step.keys()


def test_redelivered_event_returns_the_same_run_and_revokes_once(service: Service) -> None:
    body = event_body("W0043")  # a sender re-delivers the same message, newly signed
    first = service.send_event("W0043", msg_id="msg_redelivered", body=body)
    run_id = first.json()["run_id"]
    service.wait_run(run_id)
    again = service.send_event("W0043", msg_id="msg_redelivered", body=body)
    assert again.status_code == 202
    assert again.json()["run_id"] == run_id
    assert again.json()["duplicate"] is True
    for system in SYSTEMS:
        assert service.state(system)["calls"]["disable:W0043"] == 1


def test_checkpoint_is_signed_and_covers_every_record(service: Service) -> None:
    run = service.wait_run(service.send_event("W0044").json()["run_id"])
    response = service.get("/v1/evidence/checkpoint", token="")
    assert response.status_code == 200  # public by design
    verifier = (service.workdir / "keys" / "evidence.ed25519.pub").read_text().strip()
    head = verify_checkpoint(response.text, verifier, origin=ORIGIN)
    assert head.tree_size > run["evidence_seq"]
    with sqlite3.connect(service.workdir / "lifecycle.db") as db:
        rows = db.execute("SELECT body, leaf_hash FROM evidence ORDER BY seq").fetchall()
    leaves = [leaf_hash(bytes(body)) for body, _ in rows]
    assert leaves == [bytes(stored) for _, stored in rows]
    assert root_hash(leaves[: head.tree_size]) == head.root_hash
    record_hash = base64.b64encode(head.root_hash).decode()
    assert record_hash in response.text
    assert hashlib.sha256(b"").digest() != head.root_hash


def test_worker_without_any_account_is_recorded_as_such(service: Service) -> None:
    hired = service.send_event("W0100", event_type="worker.hired")
    assert hired.status_code == 202
    assert hired.json()["run_id"] is None  # joiners are playbook work; the roster learns W0100
    run = service.wait_run(service.send_event("W0100").json()["run_id"])
    assert run["status"] == "no_accounts"
    assert {s["status"] for s in run["steps"]} == {"no_account"}
    assert run["time_to_revoke_ms"] is None


def test_readiness_health_and_metrics_need_no_token(service: Service) -> None:
    assert service.get("/healthz", token="").json() == {"status": "ok"}
    ready = service.get("/readyz", token="").json()
    assert ready == {"ready": True, "checks": {"database": "ok", "evidence_key": "ok"}}
    service.wait_run(service.send_event("W0045").json()["run_id"])
    metrics = service.get("/metrics", token="").text
    assert 'lifecycle_runs{status="verified"}' in metrics
    assert "lifecycle_time_to_revoke_seconds_bucket" in metrics
    assert 'lifecycle_step_attempts_total{action="disable",connector="idp"}' in metrics
