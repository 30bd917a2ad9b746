"""Joiner/mover, policy, roster and reconciliation through the real CLI and HTTP API."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.acceptance.service import Service, config_text

pytestmark = pytest.mark.acceptance

SCHEDULER = """
[scheduler]
reverify_after_minutes = [0]
reverify_every_seconds = 1
"""


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("roles"), config_text(extra=SCHEDULER))
    service.start()
    yield service
    service.stop()


def post(
    svc: Service, path: str, body: Mapping[str, object], token: str | None = None
) -> httpx.Response:
    token = svc.admin_token if token is None else token
    return httpx.post(
        svc.url + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def hr(svc: Service, event_type: str, worker: str, job_code: str) -> dict[str, object]:
    now = datetime.now(UTC)
    body = json.dumps(
        {
            "type": event_type,
            "timestamp": now.isoformat(),
            "data": {"worker_id": worker, "job_code": job_code, "email": f"{worker}@x.org"},
        }
    ).encode()
    response = svc.send_event(worker, body=body, msg_id=f"msg_{uuid.uuid4().hex}")
    assert response.status_code == 202, response.text
    result: dict[str, object] = response.json()
    return result


def groups(svc: Service, system: str, worker: str) -> set[str]:
    return set(svc.account(system, worker)["groups"])


def test_hr_hire_and_transfer_run_the_playbooks(svc: Service) -> None:
    hired = hr(svc, "worker.hired", "W0200", "VA-INTAKE")
    run = svc.wait_run(str(hired["run_id"]))
    assert (run["kind"], run["status"], run["playbook"]) == ("onboard", "verified", "intake-va")
    assert len(run["playbook_sha256"]) == 64
    assert groups(svc, "idp", "W0200") == {"va-intake"}
    assert groups(svc, "ehr", "W0200") == {"ehr-intake"}
    assert not [a for a in svc.state("phone")["accounts"] if a["worker_id"] == "W0200"]

    moved = hr(svc, "worker.transferred", "W0200", "VA-CALLBACK")
    run = svc.wait_run(str(moved["run_id"]))
    assert (run["kind"], run["status"], run["playbook"]) == ("transfer", "verified", "callback-va")
    assert groups(svc, "idp", "W0200") == {"va-callback"}
    assert groups(svc, "phone", "W0200") == {"queue-callback"}
    removed = [
        s["result"]["removed"]
        for s in run["steps"]
        if s["connector"] == "ehr" and s["action"] == "remove_entitlements"
    ]
    assert removed == [["ehr-intake"]]


def test_playbook_plan_changes_nothing_and_apply_executes_it(svc: Service) -> None:
    before = svc.state("idp")["calls"].get("apply_entitlements", 0)
    plan = svc.cli("playbook", "plan", "scheduling-va", "--worker", "W0001", token=svc.admin_token)
    assert plan.returncode == 0, plan.stderr
    # W0001's job code maps to billing-va: a move; seeded groups no playbook owns are kept
    assert "transfer of W0001 to scheduling-va (from billing-va)" in plan.stdout
    assert "idp: +va-scheduling" in plan.stdout
    assert "phone: +queue-scheduling" in plan.stdout
    assert svc.state("idp")["calls"].get("apply_entitlements", 0) == before
    assert "va-scheduling" not in groups(svc, "idp", "W0001")

    as_json = json.loads(
        svc.cli(
            "playbook", "plan", "intake-va", "--worker", "W0001", "--json", token=svc.admin_token
        ).stdout
    )
    phone = next(s for s in as_json["systems"] if s["system"] == "phone")
    assert phone["create"] is False and phone["add"] == []

    applied = svc.cli(
        "playbook", "apply", "scheduling-va", "--worker", "W0001", "--json", token=svc.admin_token
    )
    assert applied.returncode == 0, applied.stderr
    run = json.loads(applied.stdout)
    assert (run["kind"], run["status"]) == ("transfer", "verified")
    assert "va-scheduling" in groups(svc, "idp", "W0001")
    assert "ehr-scheduling" in groups(svc, "ehr", "W0001")


def test_playbook_api_needs_an_admin_and_a_known_playbook_and_worker(svc: Service) -> None:
    body = {"worker_id": "W0002"}
    assert post(svc, "/v1/playbooks/billing-va/apply", body, svc.auditor_token).status_code == 403
    missing = post(svc, "/v1/playbooks/nurse/plan", body)
    assert missing.status_code == 404 and "known:" in missing.json()["detail"]
    assert post(svc, "/v1/playbooks/billing-va/plan", {"worker_id": "W9999"}).status_code == 404
    listed = svc.get("/v1/playbooks", svc.auditor_token).json()["playbooks"]
    assert {p["name"] for p in listed} == {
        "scheduling-va",
        "billing-va",
        "callback-va",
        "intake-va",
    }


def test_policy_check_enforce_and_findings(svc: Service) -> None:
    check = svc.cli("policy", "check", token=svc.admin_token)
    assert check.returncode == 1  # the systems keep 90 days; the VA playbooks say 45
    failing = [line for line in check.stdout.splitlines() if line.startswith("FINDING")]
    assert {line.split()[1] for line in failing} == {"idp", "ehr", "phone"}
    assert all("inactive_disable_days" in line and "actual 90" in line for line in failing)
    dry = svc.cli("policy", "enforce", "--dry-run", "--json", token=svc.admin_token)
    assert dry.returncode == 0 and json.loads(dry.stdout)["run_ids"] == []
    assert svc.state("ehr")["policy"]["inactive_disable_days"] == 90
    enforced = svc.cli("policy", "enforce", "--json", token=svc.admin_token)
    assert enforced.returncode == 0, enforced.stdout + enforced.stderr
    [run_id] = json.loads(enforced.stdout)["run_ids"]
    assert svc.wait_run(run_id)["status"] == "verified"
    assert svc.state("ehr")["policy"]["inactive_disable_days"] == 45
    findings = svc.get("/v1/policy/findings", svc.auditor_token).json()
    assert findings["compliant"] is True
    row = next(
        f
        for f in findings["findings"]
        if f["system"] == "idp" and f["control"] == "lockout_threshold"
    )
    assert row["expected"] == 5 and row["actual"] == 5
    assert row["expected_source"] == "config [policy]"
    assert row["actual_source"] == "memory:idp.policy.lockout_threshold"


def test_roster_import_and_reconciliation(svc: Service) -> None:
    roster = svc.workdir / "roster.csv"
    roster.write_text(
        "worker_id,name,email,job_code,engagement,vendor,status\n"
        "W0030,T. Left,w0030@example.org,VA-SCHED,contractor,Acme,terminated\n"
        "W0031,Bad Row,nope,VA-SCHED,contractor,Acme,active\n"
    )
    imported = svc.cli("hr", "import", str(roster))
    assert imported.returncode == 1  # a rejected row
    assert "1 updated" in imported.stdout
    assert "line 3: email" in imported.stderr
    report = json.loads(svc.cli("reconcile", "--json", token=svc.admin_token).stdout)
    orphans = {(o["system"], o["owner"]) for o in report["orphans"]}
    assert {("idp", "W0030"), ("ehr", "W0030"), ("phone", "W0030")} <= orphans
    assert svc.account("idp", "W0030")["enabled"] is True  # reported, not disabled
    disabled = json.loads(svc.cli("reconcile", "--disable", "--json", token=svc.admin_token).stdout)
    assert all(o["run_id"] for o in disabled["orphans"])
    assert svc.account("idp", "W0030")["enabled"] is False


def test_scheduler_reverifies_terminations_in_the_running_service(svc: Service) -> None:
    run = svc.wait_run(svc.send_event("W0040").json()["run_id"])
    assert run["status"] == "verified"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        runs = svc.get("/v1/runs?worker=W0040").json()["runs"]
        reverify = [r for r in runs if r["actor"] == "scheduler:reverify"]
        if reverify and reverify[0]["status"] == "verified":
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"no re-verification of W0040 within 20 s:\n{svc.log()[-3000:]}")


def test_bad_playbooks_stop_the_service_with_file_and_line(tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    (books / "bad-va.yaml").write_text("name: bad-va\nsystems:\n  idp:\n    entitlements: 7\n")
    service = Service(tmp_path, config_text(extra=f'[playbooks]\ndirectory = "{books}"\n'))
    (tmp_path / "lifecycle.toml").write_text(service.config)
    result = service.cli("playbook", "list")
    assert result.returncode == 1
    assert "bad-va.yaml:4: systems.idp.entitlements" in result.stderr
    served = service.cli("serve", "--port", str(service.port), timeout=30)
    assert served.returncode == 1
    assert "bad-va.yaml:4: systems.idp.entitlements: Input should be a valid list" in (
        served.stderr
    )
