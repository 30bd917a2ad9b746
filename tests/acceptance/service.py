"""Drive the real service: ``lifecycle serve`` as a subprocess, the CLI as subprocesses, HTTP."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from tests.acceptance import openapi_check
from tests.servers import free_port

SECRET = "whsec_YWNjZXB0YW5jZS10ZXN0LXNlY3JldA=="
ORIGIN = "acceptance.lifecycle.local/evidence"
BIN = Path(sys.executable).parent / "lifecycle"
FINISHED = {"verified", "incomplete", "failed", "no_accounts"}


def config_text(
    *,
    latency: dict[str, int] | None = None,
    faults: dict[str, list[dict[str, Any]]] | None = None,
    lease_seconds: float = 2.0,
    alert_url: str | None = None,
    workers: int = 50,
    extra: str = "",
) -> str:
    latency = latency or {"idp": 20, "ehr": 30, "phone": 10}
    lines = [
        "[service]",
        'database_url = "sqlite:///./lifecycle.db"',
        'evidence_key = "./keys/evidence.ed25519"',
        f'log_origin = "{ORIGIN}"',
        "demo = true",
        f"lease_seconds = {lease_seconds}",
        "poll_seconds = 0.2",
        "step_timeout_seconds = 5",
        "[retry]",
        "attempts = 3",
        "initial_seconds = 0.05",
        "[demo]",
        f"workers = {workers}",
        "[hr.sources.demo]",
        'kind = "standardwebhooks"',
        f'secret = "{SECRET}"',
    ]
    if alert_url:
        lines += ["[alerts]", f'webhook_url = "{alert_url}"']
    for name, ms in latency.items():
        lines += [
            f"[connectors.{name}]",
            'kind = "memory"',
            f"seed_workers = {workers}",
            f'seed_groups = ["{name}-a", "{name}-b", "{name}-c"]',
            f"latency_ms = {ms}",
            f'state_file = "./state/{name}.json"',
            f"has_sessions = {'false' if name == 'phone' else 'true'}",
        ]
        for fault in (faults or {}).get(name, []):
            lines.append(f"[[connectors.{name}.faults]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in fault.items()]
    return "\n".join(lines) + "\n" + extra


def event_body(
    worker: str,
    event_type: str = "worker.terminated",
    at: datetime | None = None,
    effective_at: datetime | None = None,
) -> bytes:
    """A Standard Webhooks HR event body, as a sender would post it."""
    data: dict[str, Any] = {"worker_id": worker, "reason": "contract_end"}
    if effective_at:
        data["effective_at"] = effective_at.isoformat()
    now = at or datetime.now(UTC)
    return json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": data}).encode()


@dataclass
class Service:
    workdir: Path
    config: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    admin_token: str = ""
    auditor_token: str = ""
    _log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "LIFECYCLE_CONFIG": str(self.workdir / "lifecycle.toml"),
            "LIFECYCLE_URL": self.url,
        }

    def cli(
        self, *args: str, token: str | None = None, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        env = self.env
        if token:
            env["LIFECYCLE_TOKEN"] = token
        result = subprocess.run(
            [str(BIN), *args],
            cwd=self.workdir,
            env=env,
            text=True,
            capture_output=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"lifecycle {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def start(self) -> None:
        openapi_check.PORTS.add(self.port)
        (self.workdir / "lifecycle.toml").write_text(self.config)
        self._log = (self.workdir / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--port", str(self.port), "--log-level", "info"],
            cwd=self.workdir,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"service exited at start:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"service not ready within 30 s:\n{self.log()}")
        if not self.admin_token:
            self.admin_token = (
                self.cli("tokens", "create", "--role", "admin", "--name", "admin-1", check=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            self.auditor_token = (
                self.cli("tokens", "create", "--role", "auditor", "--name", "auditor-1", check=True)
                .stdout.strip()
                .splitlines()[-1]
            )

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        path = self.workdir / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ HTTP helpers

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        token = self.admin_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.url + path, headers=headers, timeout=10)

    def send_event(
        self,
        worker: str,
        *,
        event_type: str = "worker.terminated",
        msg_id: str | None = None,
        effective_at: datetime | None = None,
        secret: str = SECRET,
        at: datetime | None = None,
        body: bytes | None = None,
        source: str = "demo",
        content_type: str = "application/json",
    ) -> httpx.Response:
        now = at or datetime.now(UTC)
        raw = body if body is not None else event_body(worker, event_type, now, effective_at)
        msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(msg_id, now, raw.decode(errors="replace")),
            "content-type": content_type,
        }
        return httpx.post(
            f"{self.url}/v1/hr/{source}/events", content=raw, headers=headers, timeout=10
        )

    def wait_run(self, run_id: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run: dict[str, Any] = self.get(f"/v1/runs/{run_id}").json()
            if run["status"] in FINISHED:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"run {run_id} still {run['status']} after {timeout} s")
            time.sleep(0.1)

    def state(self, system: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.workdir / "state" / f"{system}.json").read_text())
        return data

    def account(self, system: str, worker: str) -> dict[str, Any]:
        return next(a for a in self.state(system)["accounts"] if a["worker_id"] == worker)

    def count(self, table: str) -> int:
        with sqlite3.connect(self.workdir / "lifecycle.db") as db:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
