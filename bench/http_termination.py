"""Terminations over HTTP: the service's CPU per termination, and time to verified.

Issue 15, items 1 and 3. The real service (``lifecycle serve`` on SQLite, demo configuration
with three memory systems of latency L each) receives signed Standard Webhooks terminations
over HTTP and executes them: intake, execution, evidence, all in the measured process. Each
tree given is measured in the same run, one after the other (this checkout, and with
``--base`` an older commit's worktree, e.g. ``git worktree add /tmp/bench_base bd7690c``).

* **single**: one termination at a time (``--repeats``, first one included). Time to verified
  is the run's ``time_to_revoke_ms`` (HR receipt to the last verified read-back) read from the
  database. The *floor* is the slowest system's own chain (find, disable, revoke, remove,
  read back: 5 x L), called directly on a ``MemoryConnector`` in this process, interleaved.
  Target: p99 <= 1.10 x floor.
* **burst**: ``--burst`` terminations posted by 64 concurrent senders, executed at the
  configured connector concurrency C. Wall time from the first post to the last run finished,
  against ``ceil(B / C) x chain`` (target <= 1.2x). CPU per termination is the service
  process's user+system time over the burst divided by B (target <= 3 ms).

Run: ``uv run python bench/http_termination.py --base /tmp/bench_base`` (``--json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _service import (
    TREE,
    Connection,
    Served,
    blast,
    config_text,
    machine,
    percentile,
    signed_request,
)

from connectors.base import Worker
from connectors.memory import MemoryConnector

FINISHED = ("verified", "incomplete", "failed", "no_accounts")


async def floor_chain(conn: MemoryConnector, worker_id: str) -> float:
    """The system's own termination chain, called directly; seconds."""
    started = time.perf_counter()
    account = await conn.find_account(Worker(worker_id=worker_id))
    assert account is not None
    await conn.disable(account)
    await conn.revoke_sessions(account)
    await conn.remove_access(account)
    await conn.read_state(account)
    return time.perf_counter() - started


def finished(db: Path, run_ids: list[str]) -> dict[str, tuple[str, int | None, str | None]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        marks = ",".join("?" * len(run_ids))
        rows = conn.execute(
            f"SELECT id, status, time_to_revoke_ms, finished_at FROM runs "
            f"WHERE id IN ({marks}) AND status IN {FINISHED}",
            run_ids,
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def count_finished(db: Path) -> tuple[int, str | None]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        n, last = conn.execute(
            f"SELECT count(*), max(finished_at) FROM runs WHERE status IN {FINISHED}"
        ).fetchone()
    return int(n), last


async def single(served: Served, db: Path, args: argparse.Namespace) -> dict[str, Any]:
    probe = MemoryConnector("probe", latency_ms=args.latency)
    conn = await Connection.open(served.port)
    engine_ms: list[float] = []
    floor_ms: list[float] = []
    statuses: list[str] = []
    tag = uuid.uuid4().hex[:8]
    for i in range(args.repeats):
        probe.add_account(f"F{i}")
        floor_ms.append(await floor_chain(probe, f"F{i}") * 1000)
        answer = await conn.send(signed_request(served.port, f"W{i + 1:04d}", f"{tag}-s{i}"))
        if answer.status != 202:
            raise RuntimeError(f"intake answered {answer.status}: {answer.body[:300]!r}")
        run_id = json.loads(answer.body)["run_id"]
        while True:
            done = finished(db, [run_id])
            if done:
                status, ttv, _ = done[run_id]
                statuses.append(status)
                engine_ms.append(float(ttv or 0))
                break
            await asyncio.sleep(0.01)
    await conn.close()
    return {
        "repeats": args.repeats,
        "engine_p50_ms": percentile(engine_ms, 50),
        "engine_p99_ms": percentile(engine_ms, 99),
        "engine_first_ms": engine_ms[0],
        "floor_p50_ms": round(percentile(floor_ms, 50), 1),
        "floor_p99_ms": round(percentile(floor_ms, 99), 1),
        "p99_over_floor": round(percentile(engine_ms, 99) / percentile(floor_ms, 99), 3),
        "not_verified": sum(1 for s in statuses if s != "verified"),
    }


async def burst(served: Served, db: Path, args: argparse.Namespace) -> dict[str, Any]:
    offset = args.repeats + 1
    tag = uuid.uuid4().hex[:8]
    requests = [
        signed_request(served.port, f"W{offset + i:04d}", f"{tag}-b{i}") for i in range(args.burst)
    ]
    before, _ = count_finished(db)
    cpu_before = served.cpu_seconds()
    started_wall = time.time()
    answers, intake_s = await blast([served.port], requests, args.senders)
    refused = [a for a in answers if a.status != 202]
    if refused:
        raise RuntimeError(f"{len(refused)} refused, e.g. {refused[0].status} {refused[0].body!r}")
    deadline = time.monotonic() + args.timeout
    while True:
        n, last = count_finished(db)
        if n - before >= args.burst or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    done = n - before
    cpu = served.cpu_seconds() - cpu_before
    assert last is not None
    last_at = datetime.fromisoformat(last).replace(tzinfo=UTC).timestamp()  # naive UTC stored
    wall = last_at - started_wall if done >= args.burst else time.time() - started_wall
    chain_s = 5 * args.latency / 1000
    ideal = math.ceil(args.burst / args.concurrency) * chain_s
    return {
        "finished": done,
        "burst": args.burst,
        "concurrency": args.concurrency,
        "intake_s": round(intake_s, 2),
        "wall_s": round(wall, 2),
        "ideal_s": round(ideal, 2),
        "wall_over_ideal": round(wall / ideal, 2),
        "cpu_ms_per_termination": round(cpu * 1000 / max(done, 1), 2),
        "service_rss_mb": round(served.rss_mb(), 1),
    }


def measure(tree: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lifecycle-http-") as tmp:
        db = Path(tmp) / "lifecycle.db"
        served = Served(
            tree,
            Path(tmp),
            config_text(
                database_url=f"sqlite:///{db}",
                workers=args.repeats + args.burst + 10,
                latency_ms=dict.fromkeys(("idp", "ehr", "phone"), args.latency),
                concurrency=args.concurrency,
            ),
        )
        served.start()
        try:
            out: dict[str, Any] = {"tree": str(tree)}
            if args.only in (None, "single"):
                out["single"] = asyncio.run(single(served, db, args))
            if args.only in (None, "burst"):
                out["burst"] = asyncio.run(burst(served, db, args))
            return out
        finally:
            served.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=50.0, help="L per call, ms")
    parser.add_argument("--repeats", type=int, default=25, help="single terminations")
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32, help="connector concurrency C")
    parser.add_argument("--senders", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--only", choices=("single", "burst"))
    parser.add_argument("--base", type=Path, help="worktree of the pre-change commit")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    trees = [("new", TREE)] + ([("base", args.base)] if args.base else [])
    results = {label: measure(tree, args) for label, tree in trees}
    if args.json:
        print(json.dumps({"machine": machine(), "results": results}, indent=2))
        return 0
    print(f"terminations over HTTP (sqlite; 3 systems, L = {args.latency} ms; {machine()})")
    if args.only in (None, "single"):
        print(
            f"single, {args.repeats} repeats (ms)   engine p50  p99  first"
            " | floor p50  p99 | p99/floor"
        )
        for label, r in results.items():
            s = r["single"]
            print(
                f"  {label:<6} {s['engine_p50_ms']:>25.0f} {s['engine_p99_ms']:>5.0f} "
                f"{s['engine_first_ms']:>6.0f} | {s['floor_p50_ms']:>9.1f} "
                f"{s['floor_p99_ms']:>5.1f}"
                f" | {s['p99_over_floor']:.2f}x (target <= 1.10x)"
                + (f"  NOT VERIFIED: {s['not_verified']}" if s["not_verified"] else "")
            )
    if args.only in (None, "burst"):
        print(
            f"burst of {args.burst} at C = {args.concurrency}: intake s, wall s, ideal s, "
            "wall/ideal (target <= 1.2x), CPU ms per termination (target <= 3), RSS MB"
        )
        for label, r in results.items():
            b = r["burst"]
            print(
                f"  {label:<6} {b['intake_s']:>6.2f} {b['wall_s']:>7.2f} {b['ideal_s']:>6.2f} "
                f"{b['wall_over_ideal']:>6.2f}x {b['cpu_ms_per_termination']:>7.2f} "
                f"{b['service_rss_mb']:>6.0f}"
                + (
                    f"  ONLY {b['finished']} FINISHED within {args.timeout:g} s"
                    if b["finished"] < b["burst"]
                    else ""
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
