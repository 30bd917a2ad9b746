"""The real ``lifecycle`` CLI as an admin would use it."""

from __future__ import annotations

import json

import pytest

from tests.acceptance.service import Service

pytestmark = pytest.mark.acceptance


def test_offboard_waits_for_verification_and_shows_progress(service: Service) -> None:
    result = service.cli(
        "offboard", "W0020", "--reason", "contract ended", token=service.admin_token
    )
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stdout
    assert "idp" in result.stderr  # the live progress table
    for system in ("idp", "ehr", "phone"):
        assert service.account(system, "W0020")["enabled"] is False


def test_offboard_json_output(service: Service) -> None:
    result = service.cli("offboard", "W0021", "--reason", "x", "--json", token=service.admin_token)
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "verified"
    assert run["actor"] == "admin:admin-1"


def test_dry_run_changes_nothing(service: Service) -> None:
    result = service.cli(
        "offboard", "W0022", "--reason", "x", "--dry-run", token=service.admin_token
    )
    assert result.returncode == 0, result.stderr
    assert "would disable" in result.stdout
    assert all(service.account(s, "W0022")["enabled"] for s in ("idp", "ehr", "phone"))
    assert service.state("idp")["calls"].get("disable:W0022", 0) == 0


def test_offboard_needs_an_admin_token(service: Service) -> None:
    result = service.cli("offboard", "W0023", "--reason", "x", token=service.auditor_token)
    assert result.returncode == 1
    assert "403" in result.stderr


def test_send_test_event_and_runs_list(service: Service) -> None:
    sent = service.cli("hr", "send-test-event", "--worker", "W0024", "--json", check=True)
    run_id = json.loads(sent.stdout)["run_id"]
    service.wait_run(run_id)
    listed = service.cli(
        "runs", "list", "--worker", "W0024", token=service.auditor_token, check=True
    )
    assert run_id in listed.stdout
    assert "verified" in listed.stdout
    shown = service.cli("runs", "show", run_id, token=service.auditor_token, check=True)
    assert "time to revoke" in shown.stdout


def test_tokens_create_prints_the_token_alone_on_the_last_line(service: Service) -> None:
    result = service.cli(
        "tokens", "create", "--role", "auditor", "--name", "auditor-cli", check=True
    )
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("lct_")
    assert " " not in token
    dup = service.cli("tokens", "create", "--role", "auditor", "--name", "auditor-cli")
    assert dup.returncode == 1
    assert "already exists" in dup.stderr


def test_keys_init_refuses_to_replace_the_key(service: Service) -> None:
    result = service.cli("keys", "init")
    assert result.returncode == 1
    assert "refusing" in result.stderr


def test_usage_errors_exit_2(service: Service) -> None:
    assert service.cli("offboard").returncode == 2
    assert service.cli("tokens", "create", "--role", "root", "--name", "x").returncode == 2
