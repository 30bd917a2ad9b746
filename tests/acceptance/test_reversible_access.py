"""Reversible access over HTTP and through the CLI, against the running service (memory systems
persisted to state files): suspend, restore with a second admin's approval, reject, cancel,
retry, a second offboard, and playbooks refused on disabled workers."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.acceptance.service import Service, config_text

pytestmark = pytest.mark.acceptance
SYSTEMS = ("idp", "ehr", "phone")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    faults = {"ehr": [{"op": "disable", "mode": "permanent", "worker": "W0031", "times": 1}]}
    service = Service(tmp_path_factory.mktemp("access"), config_text(faults=faults))
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def second_admin(svc: Service) -> str:
    created = svc.cli("tokens", "create", "--role", "admin", "--name", "admin-2", check=True)
    return created.stdout.strip().splitlines()[-1]


def post(
    svc: Service, path: str, body: Mapping[str, object] | None = None, token: str | None = None
) -> httpx.Response:
    token = svc.admin_token if token is None else token
    return httpx.post(
        svc.url + path, json=body or {}, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def held(svc: Service, worker: str) -> dict[str, tuple[bool, frozenset[str]]]:
    return {
        s: (svc.account(s, worker)["enabled"], frozenset(svc.account(s, worker)["groups"]))
        for s in SYSTEMS
    }


def terminate(svc: Service, worker: str) -> dict[str, Any]:
    response = post(svc, "/v1/offboard", {"worker_id": worker, "reason": "contract_end"})
    assert response.status_code == 202, response.text
    run = svc.wait_run(response.json()["id"])
    assert run["status"] == "verified"
    return run


def record_of(svc: Service, run_id: str) -> dict[str, Any]:
    with sqlite3.connect(svc.workdir / "lifecycle.db") as db:
        (body,) = db.execute("SELECT body FROM evidence WHERE run_id = ?", (run_id,)).fetchone()
    data: dict[str, Any] = json.loads(body)
    return data


def worker_status(svc: Service, worker: str) -> str:
    response = svc.get(f"/v1/workers/{worker}")
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def test_a_wrong_termination_is_undone_exactly_with_a_second_admins_approval(
    svc: Service, second_admin: str
) -> None:
    before = held(svc, "W0020")
    terminated = terminate(svc, "W0020")
    assert {enabled for enabled, _ in held(svc, "W0020").values()} == {False}
    assert worker_status(svc, "W0020") == "terminated"

    # A second offboard names the existing termination instead of starting another.
    again = post(svc, "/v1/offboard", {"worker_id": "W0020", "reason": "again"})
    assert again.status_code == 200, again.text
    assert again.json()["already_terminated"] is True
    assert again.json()["run"]["id"] == terminated["id"]

    asked = post(svc, "/v1/restore", {"worker_id": "W0020", "reason": "wrong worker terminated"})
    assert asked.status_code == 202, asked.text
    restore = asked.json()
    assert restore["status"] == "awaiting_approval"
    assert restore["reverses"] == {
        "run_id": terminated["id"],
        "kind": "offboard",
        "seq": terminated["evidence_seq"],
    }
    assert {s: frozenset(g) for s, g in restore["snapshot"].items()} == {
        s: groups for s, (_, groups) in before.items()
    }
    listed = svc.get("/v1/approvals").json()["approvals"]
    assert restore["id"] in [a["id"] for a in listed]
    assert svc.get("/v1/approvals", token=svc.auditor_token).status_code == 403
    time.sleep(0.5)  # the executor polls every 0.2 s: nothing may run before the approval
    assert svc.get(f"/v1/runs/{restore['id']}").json()["status"] == "awaiting_approval"
    assert {enabled for enabled, _ in held(svc, "W0020").values()} == {False}

    own = post(svc, f"/v1/approvals/{restore['id']}/approve")
    assert own.status_code == 403, own.text
    assert own.headers["content-type"].startswith("application/problem+json")
    assert "cannot approve it" in own.json()["detail"]

    approved = post(svc, f"/v1/approvals/{restore['id']}/approve", token=second_admin)
    assert approved.status_code == 200, approved.text
    run = svc.wait_run(restore["id"])
    assert run["status"] == "verified", run
    assert held(svc, "W0020") == before  # enabled, and exactly the removed entitlements back
    assert worker_status(svc, "W0020") == "active"
    assert run["approval"]["requested_by"] == "admin:admin-1"
    assert run["approval"]["approved"]["by"] == "admin:admin-2"
    # W0020's job code maps to a playbook granting none of the demo groups: all for review.
    assert {(f["system"], f["entitlement"]) for f in run["findings"]} == {
        (s, g) for s, (_, groups) in before.items() for g in groups
    }
    record = record_of(svc, restore["id"])
    assert record["kind"] == "restore"
    assert record["reverses"] == terminated["evidence_seq"]
    assert record["approval"] == {"requested_by": "admin:admin-1", "approved_by": "admin:admin-2"}
    assert record["findings"] == run["findings"]

    # The termination's re-verifications are suppressed, visibly.
    runs = svc.get("/v1/runs?worker=W0020&limit=50").json()["runs"]
    reverify = [r for r in runs if r["kind"] == "reverify"]
    assert len(reverify) == 2 and {r["status"] for r in reverify} == {"cancelled"}
    assert all("being restored" in r["cancelled"]["reason"] for r in reverify)


def test_suspend_then_restore_through_the_cli(svc: Service, second_admin: str) -> None:
    before = held(svc, "W0021")
    suspended = svc.cli(
        "suspend", "W0021", "--reason", "laptop lost", "--json", token=svc.admin_token
    )
    assert suspended.returncode == 0, suspended.stderr
    run = json.loads(suspended.stdout)
    assert (run["kind"], run["status"]) == ("suspend", "verified")
    assert [s["action"] for s in run["steps"] if s["connector"] == "idp"] == [
        "disable",
        "revoke_sessions",
        "verify",
    ]
    assert {s: g for s, (_, g) in held(svc, "W0021").items()} == {
        s: g for s, (_, g) in before.items()
    }  # access kept
    assert {enabled for enabled, _ in held(svc, "W0021").values()} == {False}
    assert worker_status(svc, "W0021") == "suspended"
    assert record_of(svc, run["id"])["kind"] == "suspend"

    # Nothing is provisioned onto a suspended worker: 409 over the API, exit 1 on the CLI.
    refused = post(svc, "/v1/playbooks/scheduling-va/apply", {"worker_id": "W0021"})
    assert refused.status_code == 409, refused.text
    assert "suspended" in refused.json()["detail"]
    cli = svc.cli("playbook", "apply", "scheduling-va", "--worker", "W0021", token=svc.admin_token)
    assert cli.returncode == 1 and "suspended" in cli.stderr
    assert {enabled for enabled, _ in held(svc, "W0021").values()} == {False}

    asked = svc.cli("restore", "W0021", "--reason", "laptop found", token=svc.admin_token)
    assert asked.returncode == 0, asked.stderr
    assert "awaiting_approval" in asked.stdout and "approvals approve" in asked.stdout
    listed = svc.cli("approvals", "list", "--json", token=second_admin)
    [pending] = [a for a in json.loads(listed.stdout)["approvals"] if a["worker_id"] == "W0021"]
    mine = svc.cli("approvals", "approve", pending["id"], token=svc.admin_token)
    assert mine.returncode == 1 and "cannot approve it" in mine.stderr
    approved = svc.cli("approvals", "approve", pending["id"], "--json", token=second_admin)
    assert approved.returncode == 0, approved.stderr
    restored = json.loads(approved.stdout)
    assert restored["status"] == "verified"
    assert held(svc, "W0021") == before
    assert worker_status(svc, "W0021") == "active"
    restore_access = {s["status"] for s in restored["steps"] if s["action"] == "restore_access"}
    assert restore_access == {"not_applicable"}  # a suspension removed nothing


def test_a_rejected_restore_ends_cancelled_with_its_reason(svc: Service, second_admin: str) -> None:
    terminate(svc, "W0022")
    asked = post(svc, "/v1/restore", {"worker_id": "W0022", "reason": "wrong worker?"})
    run_id = asked.json()["id"]
    twice = post(svc, "/v1/restore", {"worker_id": "W0022", "reason": "again"})
    assert twice.status_code == 409
    no_reason = post(svc, f"/v1/approvals/{run_id}/reject", {}, token=second_admin)
    assert no_reason.status_code == 422
    rejected = svc.cli(
        "approvals", "reject", run_id, "--reason", "HR confirms", "--json", token=second_admin
    )
    assert rejected.returncode == 0, rejected.stderr
    run = json.loads(rejected.stdout)
    assert run["status"] == "cancelled"
    assert run["approval"]["rejected"]["by"] == "admin:admin-2"
    assert run["approval"]["rejected"]["reason"] == "HR confirms"
    assert {enabled for enabled, _ in held(svc, "W0022").values()} == {False}
    late = post(svc, f"/v1/approvals/{run_id}/approve", token=second_admin)
    assert late.status_code == 409


def test_a_future_dated_termination_is_cancelled_with_who_when_why(svc: Service) -> None:
    response = svc.send_event("W0023", effective_at=datetime.now(UTC) + timedelta(days=2))
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    assert svc.get(f"/v1/runs/{run_id}").json()["status"] == "pending"
    auditor = post(svc, f"/v1/runs/{run_id}/cancel", {"reason": "x"}, token=svc.auditor_token)
    assert auditor.status_code == 403
    cancelled = svc.cli(
        "runs", "cancel", run_id, "--reason", "contract extended", "--json", token=svc.admin_token
    )
    assert cancelled.returncode == 0, cancelled.stderr
    run = svc.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "cancelled"
    assert run["cancelled"]["by"] == "admin:admin-1"
    assert run["cancelled"]["reason"] == "contract extended" and run["cancelled"]["at"]
    again = post(svc, f"/v1/runs/{run_id}/cancel", {"reason": "again"})
    assert again.status_code == 409
    assert again.json()["title"] == "Conflict"
    assert again.json()["type"] == "/problems/state-conflict"
    assert {enabled for enabled, _ in held(svc, "W0023").values()} == {True}


def test_an_incomplete_run_is_retried_as_a_new_run(svc: Service) -> None:
    response = post(svc, "/v1/offboard", {"worker_id": "W0031", "reason": "contract_end"})
    first = svc.wait_run(response.json()["id"])
    assert first["status"] == "incomplete"  # the EHR refused the disable once
    finished = post(svc, f"/v1/runs/{first['id']}/cancel", {"reason": "too late"})
    assert finished.status_code == 409
    retried = svc.cli(
        "runs", "retry", first["id"], "--reason", "EHR fixed", "--json", token=svc.admin_token
    )
    assert retried.returncode == 0, retried.stderr
    retry = json.loads(retried.stdout)
    assert retry["retry_of"] == first["id"]
    assert (retry["actor"], retry["reason"]) == ("admin:admin-1", "EHR fixed")
    assert svc.wait_run(retry["id"])["status"] == "verified"
    assert svc.get(f"/v1/runs/{first['id']}").json()["retried_as"] == retry["id"]
    twice = post(svc, f"/v1/runs/{first['id']}/retry", {"reason": "again"})
    assert twice.status_code == 409
    assert {enabled for enabled, _ in held(svc, "W0031").values()} == {False}


def test_offboard_force_starts_another_termination(svc: Service) -> None:
    first = terminate(svc, "W0024")
    cli = svc.cli("offboard", "W0024", "--reason", "again", token=svc.admin_token)
    assert cli.returncode == 0, cli.stderr
    assert first["id"] in cli.stdout and "--force" in cli.stdout
    forced = post(svc, "/v1/offboard", {"worker_id": "W0024", "reason": "again", "force": True})
    assert forced.status_code == 202
    assert forced.json()["id"] != first["id"]
    assert svc.wait_run(forced.json()["id"])["status"] == "verified"


def test_a_rehire_reenables_and_applies_the_current_playbook(svc: Service) -> None:
    terminate(svc, "W0025")
    now = datetime.now(UTC)
    body = json.dumps(
        {
            "type": "worker.hired",
            "timestamp": now.isoformat(),
            "data": {"worker_id": "W0025", "job_code": "VA-INTAKE", "email": "w0025@x.org"},
        }
    ).encode()
    response = svc.send_event("W0025", body=body, msg_id=f"msg_{uuid.uuid4().hex}")
    assert response.status_code == 202, response.text
    run = svc.wait_run(response.json()["run_id"])
    assert (run["kind"], run["status"], run["playbook"]) == ("onboard", "verified", "intake-va")
    enable = {s["connector"]: s for s in run["steps"] if s["action"] == "enable"}
    assert enable["idp"]["status"] == "done"
    assert enable["idp"]["result"]["detail"]["revoke_sessions"] in ("done", "already")
    assert held(svc, "W0025")["idp"] == (True, frozenset({"va-intake"}))  # fresh, not the old
    assert held(svc, "W0025")["phone"][0] is False  # intake-va needs no phone: left off
    assert worker_status(svc, "W0025") == "active"
