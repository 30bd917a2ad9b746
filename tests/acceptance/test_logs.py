"""Logs say what failed: ``serve --log-format json`` writes one JSON object per line, lines about
a run carry its run, worker, system, action, attempt and error class, and no line carries a
secret, a token or a vendor body."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.acceptance.service import SECRET, Service, config_text

pytestmark = pytest.mark.acceptance


@pytest.fixture
def json_service(tmp_path: Any) -> Iterator[Service]:
    svc = Service(
        tmp_path,
        config_text(
            faults={
                "ehr": [{"op": "disable", "mode": "transient", "worker": "W0011", "times": 1}],
                "phone": [{"op": "remove_access", "mode": "permanent", "worker": "W0011"}],
            }
        ),
    )
    os.environ["LIFECYCLE_LOG_FORMAT"] = "json"
    try:
        svc.start()
    finally:
        del os.environ["LIFECYCLE_LOG_FORMAT"]
    yield svc
    svc.stop(kill=True)


def lines(svc: Service) -> list[dict[str, Any]]:
    return [json.loads(line) for line in svc.log().splitlines() if line.strip()]


def test_json_lines_carry_the_run_fields_and_no_secret(json_service: Service) -> None:
    svc = json_service
    run = svc.wait_run(svc.send_event("W0011").json()["run_id"])
    assert run["status"] == "incomplete"  # phone refused remove_access
    records = lines(svc)  # every line parses: one JSON object per line
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert not any("\x1b[" in line for line in svc.log().splitlines())  # no terminal colour

    retry = next(r for r in records if r["logger"] == "lifecycle.retry")
    assert retry["level"] == "WARNING"
    assert {k: retry.get(k) for k in ("run_id", "worker_id", "system", "action", "attempt")} == {
        "run_id": run["id"],
        "worker_id": "W0011",
        "system": "ehr",
        "action": "disable",
        "attempt": 1,
    }
    assert retry["error_class"] == "TransientConnectorError"

    alert = next(r for r in records if r["message"].startswith("ALERT step_failed"))
    assert (alert["run_id"], alert["system"], alert["action"]) == (
        run["id"],
        "phone",
        "remove_access",
    )
    assert alert["error_class"] == "PermanentConnectorError"
    finished = next(r for r in records if r["message"].startswith(f"run {run['id']} finished"))
    assert (finished["worker_id"], finished["status"]) == ("W0011", "incomplete")

    text = svc.log()
    for secret in (SECRET, SECRET.removeprefix("whsec_"), svc.admin_token, svc.auditor_token):
        assert secret not in text
    assert "Bearer" not in text


def test_text_lines_carry_the_run_fields(fresh_service: Service) -> None:
    svc = fresh_service
    svc.config = config_text(
        faults={"idp": [{"op": "revoke_sessions", "mode": "transient", "times": 1}]}
    )
    svc.start()
    run = svc.wait_run(svc.send_event("W0012").json()["run_id"])
    assert run["status"] == "verified"
    retry = next(line for line in svc.log().splitlines() if "lifecycle.retry" in line)
    for field in (
        f"run_id={run['id']}",
        "worker_id=W0012",
        "system=idp",
        "action=revoke_sessions",
        "attempt=1",
        "error_class=TransientConnectorError",
    ):
        assert field in retry, retry
