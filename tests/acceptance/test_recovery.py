"""Durability across crashes and restarts: kill -9 mid-run, future-dated terminations, alerts."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from tests.acceptance.service import Service, config_text
from tests.servers import free_port

pytestmark = pytest.mark.acceptance


def test_killed_mid_run_the_restarted_service_finishes_without_redoing_steps(
    fresh_service: Service,
) -> None:
    svc = fresh_service
    svc.config = config_text(latency={"idp": 10, "ehr": 10, "phone": 700}, lease_seconds=1.5)
    svc.start()
    run_id = svc.send_event("W0007").json()["run_id"]
    deadline = time.monotonic() + 20
    while True:  # wait until idp and ehr are verified while phone is still mid-chain
        run = svc.get(f"/v1/runs/{run_id}").json()
        done = {(s["connector"], s["action"]) for s in run["steps"] if s["status"] == "done"}
        if {("idp", "verify"), ("ehr", "verify")} <= done:
            break
        assert time.monotonic() < deadline, run
        time.sleep(0.05)
    assert ("phone", "verify") not in done
    svc.stop(kill=True)  # SIGKILL: no cleanup, the lease is left behind

    svc.start()
    run = svc.wait_run(run_id, timeout=30)
    assert run["status"] == "verified"
    for system in ("idp", "ehr"):  # confirmed before the crash: not done again
        calls = svc.state(system)["calls"]
        assert calls["disable:W0007"] == 1
        assert calls["remove_access:W0007"] == 1
    assert svc.account("phone", "W0007")["enabled"] is False
    assert svc.count("evidence") == 1


def test_a_call_left_unconfirmed_by_a_crash_counts_as_an_attempt(fresh_service: Service) -> None:
    svc = fresh_service
    svc.config = config_text(latency={"idp": 10, "ehr": 10, "phone": 1500}, lease_seconds=1.5)
    svc.start()
    run_id = svc.send_event("W0009").json()["run_id"]
    deadline = time.monotonic() + 20
    while True:  # a phone call is on the wire: its attempt is recorded, its outcome is not
        run = svc.get(f"/v1/runs/{run_id}").json()
        in_flight = [
            s for s in run["steps"] if s["connector"] == "phone" and s["status"] == "pending"
        ]
        sent = [s for s in in_flight if s["attempts"] == 1]
        if sent:
            break
        assert time.monotonic() < deadline, run
        time.sleep(0.05)
    svc.stop(kill=True)

    svc.start()
    run = svc.wait_run(run_id, timeout=30)
    assert run["status"] == "verified"
    again = next(
        s for s in run["steps"] if (s["connector"], s["action"]) == ("phone", sent[0]["action"])
    )
    assert again["attempts"] == 2  # the one the crash cut off, and the one after the restart


def test_future_dated_termination_fires_on_time_after_a_restart(fresh_service: Service) -> None:
    svc = fresh_service
    svc.start()
    effective = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=12)
    response = svc.send_event("W0008", effective_at=effective)
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    assert svc.get(f"/v1/runs/{run_id}").json()["status"] == "pending"
    svc.stop()
    assert datetime.now(UTC) < effective, "machine too slow: the service outlived the wait"
    svc.start()
    run = svc.wait_run(run_id, timeout=40)
    assert run["status"] == "verified"
    assert datetime.fromisoformat(run["started_at"]) >= effective  # not a moment early
    assert run["effective_at"] == effective.isoformat().replace("+00:00", "Z")
    assert svc.account("idp", "W0008")["enabled"] is False


class _Alerts(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        _Alerts.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_permanent_failure_escalates_to_the_alert_webhook(fresh_service: Service) -> None:
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), _Alerts)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        svc = fresh_service
        svc.config = config_text(
            faults={"ehr": [{"op": "disable", "mode": "permanent", "worker": "W0009"}]},
            alert_url=f"http://127.0.0.1:{port}/alerts",
        )
        svc.start()
        run = svc.wait_run(svc.send_event("W0009").json()["run_id"], timeout=30)
        assert run["status"] == "incomplete"
        failed = [s for s in run["steps"] if s["status"] == "failed"]
        assert ("ehr", "disable") in {(s["connector"], s["action"]) for s in failed}
        assert svc.account("idp", "W0009")["enabled"] is False  # the others still went off
        deadline = time.monotonic() + 5
        while not any(a["kind"] == "run_incomplete" for a in _Alerts.received):
            assert time.monotonic() < deadline, _Alerts.received
            time.sleep(0.05)
        kinds = {a["kind"] for a in _Alerts.received}
        assert {"step_failed", "run_incomplete"} <= kinds
        assert any("W0009" in a["message"] for a in _Alerts.received)
        assert "ALERT step_failed" in svc.log()
    finally:
        server.shutdown()
        server.server_close()
