"""Intake benchmark: accepted HR events per second over HTTP, and their latency.

Issue 15, item 2. The real service (``lifecycle serve``, built from this checkout and, for the
side-by-side figure, from an older commit's worktree via ``--base``) receives signed Standard
Webhooks terminations from ``--senders`` concurrent keep-alive connections, each sending its
next event when the previous one is answered. The terminations are future-dated (30 days), so
each stores its inbox row, roster change, run and steps but starts no work in the executor:
what is measured is intake. Reported per tree: accepted events/s, latency p50/p99 (ms), the
service's CPU per event, and the answers that were not 202.

On PostgreSQL (``--database-url``) it runs one replica, then two on the same database (events
spread over both), and prints the ratio.

Run: ``uv run python bench/intake.py`` (``--help``; ``--json`` for JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _service import (
    TREE,
    CpuLimit,
    Served,
    blast,
    config_text,
    future,
    machine,
    percentile,
    signed_request,
)

SYSTEMS = {"idp": 50.0, "ehr": 50.0, "phone": 50.0}


@contextmanager
def pg_database(url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on the server of ``url``, dropped afterwards."""
    import psycopg

    admin = url.replace("postgresql+psycopg://", "postgresql://")
    name = f"lifecycle_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(
    tree: Path, tmp: Path, args: argparse.Namespace, replicas: int, database_url: str | None
) -> dict[str, Any]:
    total = args.warmup + args.events
    with ExitStack() as stack:
        if database_url is not None:
            url = stack.enter_context(pg_database(database_url))
        else:
            url = f"sqlite:///{tmp / 'lifecycle.db'}"
        services = []
        for i in range(replicas):
            served = Served(
                tree,
                tmp / f"replica{i}",
                config_text(
                    database_url=url,
                    workers=total,
                    latency_ms=SYSTEMS,
                    instance_id=f"bench-{i}",
                    accounts=10,
                ),
            )
            stack.callback(served.stop)
            served.start()  # one after the other: the first creates the schema
            if args.replica_cpu:
                limit = CpuLimit(f"lifecycle-bench-{i}", args.replica_cpu)
                stack.callback(limit.remove)
                assert served.proc is not None
                limit.add(served.proc.pid)
            services.append(served)
        ports = [s.port for s in services]
        tag = uuid.uuid4().hex[:8]
        requests = [
            signed_request(
                ports[i % len(ports)], f"W{i + 1:04d}", f"{tag}-{i}", effective_at=future()
            )
            for i in range(total)
        ]
        asyncio.run(blast(ports, requests[: args.warmup], args.senders))
        cpu_before = sum(s.cpu_seconds() for s in services)
        answers, wall = asyncio.run(blast(ports, requests[args.warmup :], args.senders))
        cpu = sum(s.cpu_seconds() for s in services) - cpu_before
        rss = max(s.rss_mb() for s in services)
    statuses = Counter(a.status for a in answers)
    latencies = [a.latency_s * 1000 for a in answers]
    accepted = statuses.get(202, 0)
    return {
        "tree": str(tree),
        "replicas": replicas,
        "database": "postgresql" if database_url else "sqlite",
        "events": len(answers),
        "accepted": accepted,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "wall_s": round(wall, 2),
        "accepted_per_s": round(accepted / wall, 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "cpu_ms_per_event": round(cpu * 1000 / max(len(answers), 1), 3),
        "service_rss_mb": round(rss, 1),
    }


def line(r: dict[str, Any], label: str) -> str:
    return (
        f"  {label:<8} {r['replicas']:>3} {r['accepted_per_s']:>10.1f} {r['p50_ms']:>8.1f} "
        f"{r['p99_ms']:>8.1f} {r['cpu_ms_per_event']:>9.3f} {r['service_rss_mb']:>7.0f}  "
        f"{r['statuses']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10000, help="measured events per run")
    parser.add_argument("--warmup", type=int, default=500, help="events sent first, not measured")
    parser.add_argument("--senders", type=int, default=64, help="concurrent connections")
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="a worktree of the pre-change commit, measured in the same run "
        "(e.g. git worktree add /tmp/bench_base bd7690c)",
    )
    parser.add_argument("--database-url", help="PostgreSQL server URL (one and two replicas)")
    parser.add_argument(
        "--replica-cpu",
        type=float,
        default=None,
        help="limit each replica to this fraction of one core (a cgroup; needs root): on a "
        "machine where one unlimited replica, the database and the load generator already use "
        "every core, a second replica has nothing to add, so scaling shows only with a quota",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    trees = [("new", TREE)] + ([("base", args.base)] if args.base else [])
    results: list[tuple[str, dict[str, Any]]] = []
    replica_counts = (1, 2) if args.database_url else (1,)
    for label, tree in trees:
        for replicas in replica_counts:
            with tempfile.TemporaryDirectory(prefix="lifecycle-intake-") as tmp:
                results.append((label, measure(tree, Path(tmp), args, replicas, args.database_url)))
    if args.json:
        print(json.dumps({"machine": machine(), "results": [r for _, r in results]}, indent=2))
        return 0
    db = "postgresql" if args.database_url else "sqlite"
    quota = f", each replica limited to {args.replica_cpu} of a core" if args.replica_cpu else ""
    print(
        f"intake over HTTP ({db}; {args.events} future-dated terminations, "
        f"{args.senders} senders{quota}; machine {machine()})"
    )
    print("  tree     rep   events/s  p50 ms   p99 ms  cpu ms/ev  rss MB  statuses")
    for label, r in results:
        print(line(r, label))
    if args.database_url:
        for label, _ in trees:
            one = next(r for lab, r in results if lab == label and r["replicas"] == 1)
            two = next(r for lab, r in results if lab == label and r["replicas"] == 2)
            ratio = two["accepted_per_s"] / one["accepted_per_s"]
            print(f"  {label}: two replicas accept {ratio:.2f}x what one does (target >= 1.7x)")
    else:
        new = results[0][1]
        met = new["accepted_per_s"] >= 2000 and new["p99_ms"] < 50
        print(
            f"  target >= 2000 events/s with p99 < 50 ms at {args.senders} senders: "
            f"{'MET' if met else 'NOT MET'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
