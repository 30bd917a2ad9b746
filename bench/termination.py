"""Termination benchmark: how close does the engine get to the slowest system's own speed?

Issue 2, item 8. Everything is the real service in-process (Store on a temporary SQLite file or a
throw-away PostgreSQL database, Engine, EvidenceLog with a real signing key and its checkpoint
signer, AlertSink, Metrics); only the systems are ``MemoryConnector`` fakes with an injected
per-call latency L. Two scenarios, each next to references measured in the same process:

* **single**: one termination at a time, N times. Time to verified is the run's
  ``time_to_revoke_ms`` as the engine records it (HR receipt to the last verified read-back).
  References: the *floor* (the slowest connector's own chain find -> disable -> revoke ->
  remove -> read back, called directly) and the *sequential* baseline (that chain over every
  connector, one after another). Target: p99 within 1.25x the floor.
* **burst**: B terminations stored at once, then the executor is released on it with a per-connector
  concurrency C. Reference: the ideal bound ``ceil(B / C) * 5 * L`` (C accounts per system in
  flight, five calls each). Target: the burst limited only by C, i.e. wall time near that bound.

The store is wrapped (``TimedStore``) to count transactions and the time each one holds the
database, so the output says whether the database rather than C is what limits a burst.

Run: ``uv run python bench/termination.py`` (``--help`` for options, ``--json`` for JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from connectors.base import utcnow
from lifecycle.domain import RunStatus

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script or imported

from _harness import (
    BREAKDOWN,
    CHAIN_CALLS,
    SYSTEM_NAMES,
    TARGET_RATIO,
    Stats,
    bench_worker,
    breakdown,
    concurrent_chains,
    connector_chain,
    database,
    db_summary,
    ms,
    running_rig,
)


def system_latencies(args: argparse.Namespace) -> dict[str, float]:
    if args.latencies:
        values = [float(v) for v in args.latencies.split(",")]
        if len(values) != args.systems:
            raise SystemExit(f"--latencies has {len(values)} values for {args.systems} systems")
    else:
        values = [args.latency] * args.systems
    names = [
        SYSTEM_NAMES[i] if i < len(SYSTEM_NAMES) else f"sys{i + 1}" for i in range(args.systems)
    ]
    return dict(zip(names, values, strict=True))


# ---------------------------------------------------------------------------- scenarios


@dataclass
class SingleResult:
    repeats: int
    floor_system: str
    engine: Stats
    floor: Stats
    sequential: Stats
    ratio_p50: float
    """engine p50 / floor p50"""
    ratio_p99: float
    """engine p99 / floor p99 (the target: <= 1.25)"""
    ratio_p99_vs_floor_p50: float
    """engine p99 / floor p50: the stricter reading, for the record"""
    target_met: bool
    cross_check: dict[str, float]
    db: dict[str, float]
    overhead: dict[str, Stats]


async def single(args: argparse.Namespace, url: str, tmp: Path) -> SingleResult:
    latencies = system_latencies(args)
    slowest = max(latencies, key=lambda n: latencies[n])
    n, n_seq = args.repeats, min(args.repeats, args.sequential_repeats)
    workers = [f"T{i:05d}" for i in range(n)]
    floor_workers = [f"F{i:05d}" for i in range(n)]
    seq_workers = [f"S{i:05d}" for i in range(n_seq)]
    engine_ms: list[float] = []
    wall_ms: list[float] = []
    floor_ms: list[float] = []
    seq_ms: list[float] = []
    run_ids: list[str] = []
    async with running_rig(
        url,
        tmp,
        latencies,
        workers + floor_workers + seq_workers,
        concurrency=args.concurrency[0],
        max_parallel_runs=args.max_parallel_runs or 256,
    ) as rig:
        await rig.start()
        rig.store.reset_stats()
        # Interleaved, so background noise on this shared machine hits all three alike.
        for i in range(n):
            submitted = time.perf_counter()
            run = await anyio.to_thread.run_sync(rig.terminate, workers[i])
            rig.engine.wake()
            run_ids.append(run.id)
            done = await rig.engine.wait_for(run.id)
            detail = await anyio.to_thread.run_sync(rig.store.load_run, run.id)
            if detail.run.status != RunStatus.VERIFIED or detail.run.time_to_revoke_ms is None:
                raise RuntimeError(f"run {run.id} ended {detail.run.status}, not verified")
            engine_ms.append(float(detail.run.time_to_revoke_ms))
            wall_ms.append(ms(done - submitted))

            started = time.perf_counter()
            await connector_chain(rig.connectors[slowest], bench_worker(floor_workers[i]))
            floor_ms.append(ms(time.perf_counter() - started))

            if i < n_seq:
                started = time.perf_counter()
                for name in rig.names:
                    await connector_chain(rig.connectors[name], bench_worker(seq_workers[i]))
                seq_ms.append(ms(time.perf_counter() - started))
        db = db_summary(rig.store, n)
        overhead = await anyio.to_thread.run_sync(breakdown, rig.store, run_ids, latencies)
    eng, flo, seq = Stats.of(engine_ms), Stats.of(floor_ms), Stats.of(seq_ms)
    # Cross-check: our wall clock runs from just before the intake transaction to execute()
    # returning (after the evidence record and finish_run), so it must be >= the engine's
    # figure, by the post-verification work only.
    gaps = [w - e for w, e in zip(wall_ms, engine_ms, strict=True)]
    if min(gaps) < -1.0:
        raise RuntimeError(f"engine time to verified exceeds wall clock by {-min(gaps):.1f} ms")
    ratio_p99 = eng.p99 / flo.p99
    return SingleResult(
        repeats=n,
        floor_system=slowest,
        engine=eng,
        floor=flo,
        sequential=seq,
        ratio_p50=eng.p50 / flo.p50,
        ratio_p99=ratio_p99,
        ratio_p99_vs_floor_p50=eng.p99 / flo.p50,
        target_met=ratio_p99 <= TARGET_RATIO,
        cross_check={
            "first_engine_ms": engine_ms[0],
            "first_wall_ms": round(wall_ms[0], 1),
            "wall_minus_engine_p50_ms": round(Stats.of(gaps).p50, 1),
            "wall_minus_engine_max_ms": round(max(gaps), 1),
        },
        db=db,
        overhead=overhead,
    )


@dataclass
class BurstResult:
    size: int
    concurrency: int
    max_parallel_runs: int
    intake_s: float
    wall_s: float
    throughput_per_s: float
    engine: Stats
    """time to verified as the engine records it, from each run's HR receipt (includes the
    wait for the rest of the burst to be stored)"""
    from_release: Stats
    """from the release (executor started on the stored burst) to each run's last verified
    read-back"""
    ideal_s: float
    wall_over_ideal: float
    limited_by_concurrency: bool
    db: dict[str, float] = field(default_factory=dict)
    overhead: dict[str, Stats] = field(default_factory=dict)
    floor: Stats | None = None
    """the slowest system's own chain for every worker, C in flight, no engine: completion
    times from the start (its maximum is the floor's wall time)"""
    sequential: Stats | None = None
    """every system's chain one after another per worker, C workers in flight, no engine"""
    sequential_bound_s: float = 0.0
    """ceil(B / C) x systems' chains back to back: what the sequential baseline should take"""


async def burst(args: argparse.Namespace, url: str, tmp: Path, concurrency: int) -> BurstResult:
    latencies = system_latencies(args)
    size = args.burst
    workers = [f"B{i:05d}" for i in range(size)]
    max_parallel = args.max_parallel_runs or size
    waves = math.ceil(size / concurrency)
    sequential_bound = waves * CHAIN_CALLS * sum(latencies.values()) / 1000
    baselines = sequential_bound <= args.burst_baseline_budget
    floor_workers = [f"BF{i:05d}" for i in range(size)] if baselines else []
    seq_workers = [f"BS{i:05d}" for i in range(size)] if baselines else []
    floor: Stats | None = None
    sequential: Stats | None = None
    async with running_rig(
        url,
        tmp,
        latencies,
        workers,
        concurrency=concurrency,
        max_parallel_runs=max_parallel,
        extra_accounts=floor_workers + seq_workers,
    ) as rig:

        def intake() -> None:
            for w in workers:
                rig.terminate(w)

        # Store the whole burst before the executor runs, so none of it starts early.
        started = time.perf_counter()
        await anyio.to_thread.run_sync(intake)
        intake_s = time.perf_counter() - started
        rig.store.reset_stats()
        rig.engine.expect = size
        released_at: datetime = utcnow()
        released = time.perf_counter()
        await rig.start()
        await rig.engine.all_done.wait()
        wall = max(rig.engine.done_at.values()) - released
        db = db_summary(rig.store, size, wall)
        runs = await anyio.to_thread.run_sync(lambda: rig.store.list_runs(limit=size + 1))
        overhead = await anyio.to_thread.run_sync(
            breakdown, rig.store, [r.id for r in runs], latencies
        )
        if baselines:
            # After the engine's burst, in the same process; the executor is idle by now.
            slowest = max(latencies, key=lambda n: latencies[n])
            floor = await concurrent_chains([rig.connectors[slowest]], floor_workers, concurrency)
            conns = [rig.connectors[n] for n in rig.names]
            sequential = await concurrent_chains(conns, seq_workers, concurrency)
    bad = [r for r in runs if r.status != RunStatus.VERIFIED or r.time_to_revoke_ms is None]
    if len(runs) != size or bad:
        raise RuntimeError(f"{len(bad)} of {len(runs)} burst runs not verified")
    engine_ms = [float(r.time_to_revoke_ms or 0) for r in runs]
    from_release = [
        float(r.time_to_revoke_ms or 0) - ms((released_at - r.received_at).total_seconds())
        for r in runs
    ]
    ideal = waves * CHAIN_CALLS * max(latencies.values()) / 1000
    return BurstResult(
        size=size,
        concurrency=concurrency,
        max_parallel_runs=max_parallel,
        intake_s=round(intake_s, 2),
        wall_s=round(wall, 2),
        throughput_per_s=round(size / wall, 1),
        engine=Stats.of(engine_ms),
        from_release=Stats.of(from_release),
        ideal_s=round(ideal, 2),
        wall_over_ideal=round(wall / ideal, 2) if ideal else math.inf,
        limited_by_concurrency=ideal > 0 and wall <= TARGET_RATIO * ideal,
        db=db,
        overhead=overhead,
        floor=floor,
        sequential=sequential,
        sequential_bound_s=round(sequential_bound, 2),
    )


# ---------------------------------------------------------------------------- output


def fmt(stats: Stats) -> str:
    return f"{stats.p50:8.1f} {stats.p99:8.1f}"


def share(db: dict[str, float]) -> str:
    value = db.get("held_share_of_wall")
    return f"{value:7.0%}" if value is not None else f"{'n/a':>7}"


def print_breakdown(parts: dict[str, Stats], title: str, scale: float = 1.0) -> None:
    unit = "s" if scale == 1000 else "ms"
    print(f"  {title} ({unit}, p50 / p99):")
    for key, label in BREAKDOWN.items():
        if key in parts:
            st = parts[key]
            print(f"    {label:72} {st.p50 / scale:7.2f} {st.p99 / scale:7.2f}")


def print_report(args: argparse.Namespace, out: dict[str, Any]) -> None:
    lat = ", ".join(f"{k} {v:g} ms" for k, v in system_latencies(args).items())
    print(f"lifecycle termination benchmark  ({out['database']}; systems: {lat})")
    single_res: SingleResult | None = out.get("single")
    if single_res is not None:
        s = single_res
        print(f"\nsingle termination, {s.repeats} repeats (ms; nearest-rank percentiles)")
        print(f"  {'':44} {'p50':>8} {'p99':>8}  p99/floor")
        rows = [
            (f"floor: {s.floor_system}'s own chain ({CHAIN_CALLS} calls)", s.floor, ""),
            ("engine: time to verified (time_to_revoke_ms)", s.engine, f"{s.ratio_p99:.2f}x"),
            (
                f"sequential baseline ({s.sequential.n} repeats)",
                s.sequential,
                f"{s.sequential.p99 / s.floor.p99:.2f}x",
            ),
        ]
        for label, st, ratio in rows:
            print(f"  {label:44} {fmt(st)}  {ratio}")
        verdict = "MET" if s.target_met else "NOT MET"
        print(
            f"  target p99 <= {TARGET_RATIO}x floor: {verdict} ({s.ratio_p99:.2f}x; "
            f"p50 {s.ratio_p50:.2f}x; p99 vs floor p50 {s.ratio_p99_vs_floor_p50:.2f}x)"
        )
        c = s.cross_check
        print(
            f"  cross-check, run 1: engine {c['first_engine_ms']:.0f} ms, own wall clock "
            f"{c['first_wall_ms']:.1f} ms (intake -> evidence written); wall - engine p50 "
            f"{c['wall_minus_engine_p50_ms']:.1f} ms, max {c['wall_minus_engine_max_ms']:.1f} ms"
        )
        print(
            f"  db: {s.db['transactions_per_run']} tx/run, "
            f"{s.db['ms_per_transaction']} ms held per tx"
        )
        print_breakdown(s.overhead, "engine time above 5 x L on the slowest chain")
    bursts: list[BurstResult] = out.get("burst", [])
    if bursts:
        b0 = bursts[0]
        print(
            f"\nburst of {b0.size} simultaneous terminations (ideal = ceil(B/C) x "
            f"{CHAIN_CALLS} calls x L)"
        )
        print(
            f"  {'C':>5} {'intake s':>8} {'wall s':>7} {'ideal s':>7} {'wall/ideal':>10} "
            f"{'runs/s':>7} {'ttv p50':>8} {'ttv p99':>8} {'rel p50':>8} {'rel p99':>8} "
            f"{'db tx/run':>9} {'db held':>7}"
        )
        for b in bursts:
            print(
                f"  {b.concurrency:5d} {b.intake_s:8.2f} {b.wall_s:7.2f} {b.ideal_s:7.2f} "
                f"{b.wall_over_ideal:9.2f}x {b.throughput_per_s:7.1f} "
                f"{b.engine.p50 / 1000:7.2f}s {b.engine.p99 / 1000:7.2f}s "
                f"{b.from_release.p50 / 1000:7.2f}s {b.from_release.p99 / 1000:7.2f}s "
                f"{b.db['transactions_per_run']:9.1f} {share(b.db)}"
            )
        print(
            "  ttv = time to verified as the engine records it (from each HR receipt, so it "
            "includes\n  the wait while the rest of the burst is stored); rel = from the "
            "release (executor started)\n  to the run's last verified read-back; db held = share "
            "of the wall time a transaction\n  held the database."
        )
        print("  references, same run, no engine, C workers in flight (completion from start, s):")
        print(f"  {'C':>5} {'floor p50':>9} {'p99':>6} {'seq p50':>8} {'p99':>6} {'seq bound':>9}")
        for b in bursts:
            if b.floor is None or b.sequential is None:
                print(
                    f"  {b.concurrency:5d}  not measured: sequential bound "
                    f"{b.sequential_bound_s:.1f} s > --burst-baseline-budget"
                )
                continue
            print(
                f"  {b.concurrency:5d} {b.floor.p50 / 1000:9.2f} {b.floor.p99 / 1000:6.2f} "
                f"{b.sequential.p50 / 1000:8.2f} {b.sequential.p99 / 1000:6.2f} "
                f"{b.sequential_bound_s:9.2f}"
            )
        for b in bursts:
            print_breakdown(b.overhead, f"C={b.concurrency}: time above 5 x L, slowest chain", 1000)
        for b in bursts:
            verdict = "yes" if b.limited_by_concurrency else "NO"
            print(
                f"  C={b.concurrency}: limited only by C (wall <= {TARGET_RATIO}x ideal)? {verdict}"
            )


def to_json(out: dict[str, Any]) -> str:
    def default(obj: Any) -> Any:
        if hasattr(obj, "__dataclass_fields__"):
            return asdict(obj)
        raise TypeError(type(obj).__name__)

    return json.dumps(out, default=default, indent=2)


# ---------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time to verified for one termination and for a burst, next to the floor "
        "(slowest connector's own chain), a sequential baseline and the concurrency bound."
    )
    p.add_argument("--latency", type=float, default=50.0, help="per-call latency L, ms (50)")
    p.add_argument(
        "--latencies", help="per-system latencies, ms, comma separated (overrides --latency)"
    )
    p.add_argument("--systems", type=int, default=3, help="number of memory connectors (3)")
    p.add_argument("--repeats", type=int, default=30, help="single terminations (30)")
    p.add_argument(
        "--sequential-repeats",
        type=int,
        default=10,
        help="sequential-baseline repeats, at most --repeats (10; each costs systems x chain)",
    )
    p.add_argument("--burst", type=int, default=1000, help="burst size B (1000; 0 skips)")
    p.add_argument(
        "--concurrency",
        default="100",
        help="per-connector concurrency C; a comma-separated list sweeps the burst (100)",
    )
    p.add_argument(
        "--max-parallel-runs",
        type=int,
        default=0,
        help="engine max_parallel_runs (default: the burst size, so only C limits it)",
    )
    p.add_argument(
        "--database-url",
        help="PostgreSQL server URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test; "
        "a fresh database is created on it and dropped after (default: a temporary SQLite file)",
    )
    p.add_argument(
        "--burst-baseline-budget",
        type=float,
        default=15.0,
        help="measure the burst's floor and sequential baseline when the sequential one should "
        "take at most this many s (15)",
    )
    p.add_argument("--only", choices=("single", "burst"), help="run one scenario only")
    p.add_argument("--timeout", type=float, default=110.0, help="give up after this many s (110)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    try:
        args.concurrency = [int(c) for c in str(args.concurrency).split(",")]
    except ValueError:
        p.error("--concurrency takes integers, e.g. 100 or 25,50,100")
    if min(args.concurrency) < 1 or args.repeats < 1 or args.systems < 1 or args.burst < 0:
        p.error("--concurrency, --repeats and --systems must be >= 1, --burst >= 0")
    return args


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "latency_ms": system_latencies(args),
        "database": "postgresql" if args.database_url else "sqlite (temporary file)",
    }
    with anyio.fail_after(args.timeout):
        if args.only != "burst":
            with (
                tempfile.TemporaryDirectory() as tmp,
                database(args.database_url, Path(tmp)) as url,
            ):
                out["single"] = await single(args, url, Path(tmp))
        if args.only != "single" and args.burst:
            out["burst"] = []
            for c in args.concurrency:
                with (
                    tempfile.TemporaryDirectory() as tmp,
                    database(args.database_url, Path(tmp)) as url,
                ):
                    out["burst"].append(await burst(args, url, Path(tmp), c))
    return out


def watchdog(seconds: float) -> threading.Timer:
    """Hard stop if cancellation cannot unwind (a stuck thread or a loop that never yields):
    ``fail_after`` alone cannot end those, and a benchmark must never hang a CI job."""

    def expire() -> None:
        print(f"benchmark stuck past --timeout {seconds:g} s; killed", file=sys.stderr)
        os._exit(3)

    timer = threading.Timer(seconds + 15.0, expire)
    timer.daemon = True
    timer.start()
    return timer


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    timer = watchdog(args.timeout)
    try:
        out = anyio.run(main_async, args)
    except TimeoutError:
        print(
            f"benchmark gave up after --timeout {args.timeout:g} s (raise it, or lower --burst)",
            file=sys.stderr,
        )
        return 2
    finally:
        timer.cancel()
    out["elapsed_s"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(to_json(out))
    else:
        print_report(args, out)
        print(f"\n(benchmark took {out['elapsed_s']} s)")
    single_res: SingleResult | None = out.get("single")
    return 0 if single_res is None or single_res.target_met else 1


if __name__ == "__main__":
    sys.exit(main())
