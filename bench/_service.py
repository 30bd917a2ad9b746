"""Instruments for the over-HTTP benchmarks: ``lifecycle serve`` as a subprocess built from a
given source tree (this checkout, or an older commit's worktree for the side-by-side figure),
its CPU time from /proc, signed Standard Webhooks deliveries built ahead of time, and a small
keep-alive HTTP/1.1 client cheap enough that the load generator is not what is measured."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from standardwebhooks.webhooks import Webhook

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
SECRET = "whsec_YmVuY2gtb25seS1zZWNyZXQtZG8tbm90LXVzZQ=="
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest rank (with 20 samples p99 is the maximum)."""
    ordered = sorted(samples)
    return ordered[max(math.ceil(p / 100 * len(ordered)) - 1, 0)]


def machine() -> dict[str, str]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": sys.version.split()[0],
        "load_1m": f"{os.getloadavg()[0]:.2f}",
    }


def config_text(
    *,
    database_url: str,
    workers: int,
    latency_ms: dict[str, float],
    concurrency: int | None = None,
    instance_id: str | None = None,
    accounts: int | None = None,
) -> str:
    """A demo-mode configuration: ``workers`` in the roster, memory systems with ``accounts``
    accounts each (default: one per worker), no scheduler."""
    lines = [
        "[service]",
        f'database_url = "{database_url}"',
        'evidence_key = "./keys/evidence.ed25519"',
        'log_origin = "bench.lifecycle.local/evidence"',
        "demo = true",
        "poll_seconds = 1.0",
    ]
    if concurrency is not None:
        lines.append(f"connector_concurrency = {concurrency}")
    if instance_id is not None:
        lines.append(f'instance_id = "{instance_id}"')
    lines += [
        "[demo]",
        f"workers = {workers}",
        "[scheduler]",
        "enabled = false",
        "[hr.sources.bench]",
        'kind = "standardwebhooks"',
        f'secret = "{SECRET}"',
    ]
    for name, ms in latency_ms.items():
        lines += [
            f"[connectors.{name}]",
            'kind = "memory"',
            f"seed_workers = {workers if accounts is None else accounts}",
            f'seed_groups = ["{name}-a", "{name}-b", "{name}-c"]',
            f"latency_ms = {ms}",
        ]
    return "\n".join(lines) + "\n"


@dataclass
class Served:
    """One ``lifecycle serve`` process running the code of ``tree``."""

    tree: Path
    workdir: Path
    config: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "lifecycle.toml").write_text(self.config)
        env = {
            **os.environ,
            "PYTHONPATH": str(self.tree),  # this tree's lifecycle/ and connectors/ come first
            "LIFECYCLE_CONFIG": str(self.workdir / "lifecycle.toml"),
        }
        code = "import sys; from lifecycle.cli import main; sys.argv[0] = 'lifecycle'; main()"
        # The tree's own environment when it has one (an older commit's dependencies, e.g.
        # without httptools/uvloop), else this one.
        venv = self.tree / ".venv" / "bin" / "python"
        python = str(venv) if venv.exists() else sys.executable
        log = (self.workdir / "serve.log").open("ab")
        self.proc = subprocess.Popen(
            [
                python,
                "-c",
                code,
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=self.workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"service exited at start:\n{self.log()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"service not ready within {timeout} s:\n{self.log()[-3000:]}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the service process so far."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_mb(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        path = self.workdir / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""


class CpuLimit:
    """A CPU quota for one process (``fraction`` of one core), through a cgroup of its own:
    cgroup v1's ``cpu`` controller or v2's ``cpu.max``. Needs root; raises otherwise."""

    V1 = Path("/sys/fs/cgroup/cpu")
    V2 = Path("/sys/fs/cgroup")
    PERIOD_US = 100_000

    def __init__(self, name: str, fraction: float) -> None:
        quota = max(int(self.PERIOD_US * fraction), 1000)
        if (self.V1 / "cpu.cfs_quota_us").exists():
            self.path = self.V1 / name
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        elif (self.V2 / "cgroup.controllers").exists():
            self.path = self.V2 / name
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.max").write_text(f"{quota} {self.PERIOD_US}")
        else:
            raise RuntimeError("no cgroup cpu controller to limit a replica's CPU")

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()  # empty once its process has exited


def signed_request(
    port: int,
    worker: str,
    msg_id: str,
    *,
    source: str = "bench",
    effective_at: datetime | None = None,
    event_type: str = "worker.terminated",
) -> bytes:
    """A whole HTTP/1.1 request (keep-alive) carrying one signed Standard Webhooks event."""
    now = datetime.now(UTC)
    data: dict[str, str] = {"worker_id": worker, "reason": "bench"}
    if effective_at is not None:
        data["effective_at"] = effective_at.isoformat()
    body = json.dumps({"type": event_type, "timestamp": now.isoformat(), "data": data})
    signature = Webhook(SECRET).sign(msg_id, now, body)
    raw = body.encode()
    head = (
        f"POST /v1/hr/{source}/events HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(raw)}\r\n"
        f"webhook-id: {msg_id}\r\n"
        f"webhook-timestamp: {int(now.timestamp())}\r\n"
        f"webhook-signature: {signature}\r\n"
        "\r\n"
    )
    return head.encode() + raw


def future(days: int = 30) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


@dataclass
class Answer:
    status: int
    body: bytes
    sent_at: float
    latency_s: float


class Connection:
    """One keep-alive HTTP/1.1 connection: send a prepared request, read the whole answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> Answer:
        started = time.perf_counter()
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return Answer(status, body, started, time.perf_counter() - started)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def blast(
    ports: Sequence[int], requests: Sequence[bytes], senders: int
) -> tuple[list[Answer], float]:
    """Send ``requests`` from ``senders`` concurrent keep-alive connections (spread over the
    ``ports`` round robin), each sending its next request when the previous one is answered.
    Returns the answers and the wall time."""
    queue = list(reversed(requests))
    answers: list[Answer] = []
    conns = [await Connection.open(ports[i % len(ports)]) for i in range(senders)]

    async def sender(conn: Connection) -> None:
        while queue:
            answers.append(await conn.send(queue.pop()))

    started = time.perf_counter()
    await asyncio.gather(*(sender(c) for c in conns))
    wall = time.perf_counter() - started
    for c in conns:
        await c.close()
    return answers, wall
