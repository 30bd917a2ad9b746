"""Inactivity sweep benchmark: disabling thousands of dormant accounts.

Issue 15, item 4. The real sweep (``lifecycle.services.sweeps.inactivity_sweep``) with the real
executor, store (SQLite file or a fresh PostgreSQL database), evidence log and checkpoint
signer, in this process; the system is a ``MemoryConnector`` with ``--accounts`` accounts that
have not signed in for 200 days, each call taking L ms. The executor's loop runs as in the
service. Reported: the sweep's wall time, and next to it the *reference*: the connector's own
calls for every account (disable, revoke_sessions, read back) made directly with C calls in
flight, on an identical connector, in the same process. Target: sweep <= 2x reference.
Also: CPU seconds of this process and its peak RSS.

With ``--base PATH`` the same script also runs against an older commit's tree (in a
subprocess using that tree's environment) on ``--base-accounts`` accounts: the old sweep
executed one worker after another, so its time is printed per account as well.

Run: ``uv run python bench/sweep.py`` (``--help``; ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio

from connectors.base import Worker, utcnow
from connectors.memory import MemoryConnector
from lifecycle.alerts import AlertSink
from lifecycle.domain import Worker as RosterWorker
from lifecycle.engine.executor import Executor, ExecutorConfig
from lifecycle.engine.kinds import default_kinds
from lifecycle.evidence.checkpoint import init_key, load_signing_key
from lifecycle.evidence.log import EvidenceLog
from lifecycle.metrics import Metrics
from lifecycle.retry import RetryPolicy
from lifecycle.services.playbooks import PlaybookLibrary
from lifecycle.services.sweeps import JobContext, inactivity_sweep
from lifecycle.settings import Settings
from lifecycle.store.sql import SqlStore

ORIGIN = "bench.lifecycle.local/evidence"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dormant_system(name: str, accounts: int, latency_ms: float) -> MemoryConnector:
    conn = MemoryConnector(name, latency_ms=latency_ms, domain="bench.example")
    old = utcnow() - timedelta(days=200)
    for i in range(accounts):
        conn.add_account(f"D{i:06d}", groups={"all-staff"}, last_sign_in=old)
    return conn


async def reference(accounts: int, latency_ms: float, concurrency: int) -> float:
    """The connector's own calls for every account, C in flight; seconds."""
    conn = dormant_system("ref", accounts, latency_ms)
    limiter = anyio.CapacityLimiter(concurrency)
    started = time.perf_counter()

    async def one(worker_id: str) -> None:
        async with limiter:
            account = await conn.find_account(Worker(worker_id=worker_id))
            assert account is not None
            await conn.disable(account)
            await conn.revoke_sessions(account)
            state = await conn.read_state(account)
            assert not state.enabled

    async with anyio.create_task_group() as tg:
        for i in range(accounts):
            tg.start_soon(one, f"D{i:06d}")
    return time.perf_counter() - started


async def sweep(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    url = args.database_url or f"sqlite:///{tmp / 'sweep.db'}"
    kinds = default_kinds()
    store = SqlStore(url, plans=kinds.plans)
    store.create_schema()
    now = utcnow()
    store.seed_workers(
        [
            RosterWorker(worker_id=f"D{i:06d}", engagement="employee", updated_at=now)
            for i in range(args.accounts)
        ]
    )
    idp = dormant_system("idp", args.accounts, args.latency)
    key = tmp / "evidence.ed25519"
    init_key(key, ORIGIN)
    evidence = EvidenceLog(
        store, load_signing_key(key, ORIGIN), ORIGIN, sla_seconds=3600, clock=utcnow
    )
    executor = Executor(
        queue=store,
        connectors={"idp": idp},
        evidence=evidence,
        alerts=AlertSink(None),
        metrics=Metrics(),
        config=ExecutorConfig(
            retry=RetryPolicy(),
            step_timeout=30.0,
            lease=timedelta(seconds=30),
            poll_seconds=1.0,
            max_parallel_runs=256,
            connector_concurrency={"idp": args.concurrency},
            default_concurrency=args.concurrency,
        ),
        clock=utcnow,
        owner="bench",
        kinds=kinds,
        db_threads=1 if store.is_sqlite else 16,
    )
    ctx = JobContext(Settings(), store, executor, PlaybookLibrary(), AlertSink(None), evidence)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(executor.run_forever)
            tg.start_soon(evidence.run_signer)
            cpu = time.process_time()
            started = time.perf_counter()
            dormant = await inactivity_sweep(ctx, utcnow())
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu
            tg.cancel_scope.cancel()
    finally:
        store.dispose()
    still_enabled = sum(1 for a in idp.accounts.values() if a.enabled)
    return {
        "accounts": args.accounts,
        "dormant_found": len(dormant),
        "still_enabled": still_enabled,
        "sweep_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "per_account_ms": round(wall * 1000 / max(args.accounts, 1), 2),
    }


def run_here(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lifecycle-sweep-") as tmp:
        result = anyio.run(sweep, args, Path(tmp))
    ref = anyio.run(reference, args.accounts, args.latency, args.concurrency)
    result["reference_s"] = round(ref, 2)
    result["ratio"] = round(result["sweep_s"] / ref, 2)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def run_tree(tree: Path, args: argparse.Namespace, accounts: int) -> dict[str, Any]:
    venv = tree / ".venv" / "bin" / "python"
    python = str(venv) if venv.exists() else sys.executable
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--json",
        "--accounts",
        str(accounts),
        "--latency",
        str(args.latency),
        "--concurrency",
        str(args.concurrency),
    ]
    if args.database_url:
        cmd += ["--database-url", args.database_url]
    done = subprocess.run(
        cmd, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True, check=True
    )
    data: dict[str, Any] = json.loads(done.stdout)["results"][0]
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10000)
    parser.add_argument("--latency", type=float, default=20.0, help="L per call, ms")
    parser.add_argument("--concurrency", type=int, default=32, help="connector concurrency C")
    parser.add_argument("--database-url", help="PostgreSQL URL of a fresh database")
    parser.add_argument("--base", type=Path, help="worktree of the pre-change commit")
    parser.add_argument("--base-accounts", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [("new", run_here(args))]
    if args.base:
        results.append(("base", run_tree(args.base, args, args.base_accounts)))
    if args.json:
        print(json.dumps({"results": [r for _, r in results]}, indent=2))
        return 0
    print(
        f"inactivity sweep (L = {args.latency:g} ms, C = {args.concurrency}; "
        f"{'postgresql' if args.database_url else 'sqlite'}; nproc {os.cpu_count()})"
    )
    print("  tree   accounts  sweep s  ref s  sweep/ref  ms/account  cpu s  peak RSS MB  left on")
    for label, r in results:
        print(
            f"  {label:<6} {r['accounts']:>8} {r['sweep_s']:>8.2f} {r['reference_s']:>6.2f} "
            f"{r['ratio']:>9.2f}x {r['per_account_ms']:>10.2f} {r['cpu_s']:>6.1f} "
            f"{r['peak_rss_mb']:>11.0f} {r['still_enabled']:>8}"
        )
    print("  target: sweep <= 2x the connector's own calls at its concurrency limit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
