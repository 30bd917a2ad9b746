"""Workers and runs as an operator reads them: the API, and the CLI's tables and run view."""

from __future__ import annotations

import json

import pytest

from tests.acceptance.service import Service

pytestmark = pytest.mark.acceptance


def test_workers_are_searched_paged_and_shown_with_accounts_and_runs(service: Service) -> None:
    run = service.wait_run(service.send_event("W0045").json()["run_id"])

    found = service.get("/v1/workers?q=w004&limit=3&offset=1", service.auditor_token).json()
    assert [w["worker_id"] for w in found["workers"]] == ["W0041", "W0042", "W0043"]
    assert service.get("/v1/workers?status=terminated").json()["workers"][0]["status"] == (
        "terminated"
    )
    shown = service.get("/v1/workers/W0045", service.auditor_token).json()
    assert shown["status"] == "terminated"
    assert {a["system"] for a in shown["accounts"]} == {"idp", "ehr", "phone"}
    assert all(a["account_id"] for a in shown["accounts"])
    assert [r["id"] for r in shown["runs"]] == [run["id"]]
    assert service.get("/v1/workers/W9999").status_code == 404

    listed = service.cli("workers", "list", "W004", token=service.auditor_token, check=True)
    for header in ("worker", "name", "email", "status"):
        assert header in listed.stdout
    assert "W0045" in listed.stdout
    show = service.cli("workers", "show", "W0045", token=service.auditor_token, check=True)
    assert "terminated" in show.stdout
    assert run["id"] in show.stdout


def test_runs_show_has_read_back_removed_access_errors_and_timings(service: Service) -> None:
    run = service.wait_run(service.send_event("W0046").json()["run_id"])

    shown = service.cli("runs", "show", run["id"], token=service.auditor_token, check=True)

    assert "time to revoke:" in shown.stdout
    assert "read-back: " in shown.stdout
    assert "enabled=False" in shown.stdout
    assert "removed: " in shown.stdout
    assert " ms" in shown.stdout
    assert "\x1b[" not in shown.stdout  # no colour off a terminal
    listed = service.cli("runs", "list", "--worker", "W0046", token=service.auditor_token,
                         check=True)  # fmt: skip
    assert "revoked in" in listed.stdout
    assert "status" in listed.stdout  # a header row
    data = json.loads(
        service.cli("runs", "show", run["id"], "--json", token=service.auditor_token).stdout
    )
    assert data["id"] == run["id"]
