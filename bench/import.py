"""Roster import and reconciliation of a large workforce: time, progress and peak memory.

Issue 15, item 4. Writes a roster CSV of ``--workers`` rows, then for each tree (this checkout,
and with ``--base`` an older commit's worktree, in its own environment):

* ``lifecycle hr import`` as the real CLI subprocess on a fresh SQLite database (demo
  configuration): wall time, peak RSS of that process, progress lines seen on stderr; then
  the same file again (a refresh: every row updated);
* reconciliation (``lifecycle.services.sweeps.reconcile``, report only) of that roster against
  a memory system holding one account per worker plus ``--orphans`` unknown ones, in a child
  process: wall time and peak RSS. The fake system's own accounts live in that process too;
  the figure printed is the peak less what they took (measured before and after building
  them), i.e. what a service process reconciling against a real system would peak at.

Target: both under 200 MB RSS. Run: ``uv run python bench/import.py`` (``--json``).
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
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
TREE = HERE.parent.parent
CONFIG = """\
[service]
database_url = "sqlite:///./lifecycle.db"
evidence_key = "./keys/evidence.ed25519"
log_origin = "bench.lifecycle.local/evidence"
demo = true
[connectors.idp]
kind = "memory"
"""


def python_of(tree: Path) -> str:
    venv = tree / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def write_roster(path: Path, workers: int) -> None:
    jobs = ("VA-SCHED", "VA-BILL", "VA-CALLBACK", "VA-INTAKE")
    with path.open("w", encoding="utf-8") as out:
        out.write("worker_id,name,email,job_code,engagement,vendor,status\n")
        for n in range(workers):
            contractor = n % 3 != 0
            out.write(
                f"R{n:06d},Roster Worker {n:06d},r{n:06d}@bench.example,{jobs[n % 4]},"
                f"{'contractor' if contractor else 'employee'},"
                f"{'Acme Staffing' if contractor else ''},active\n"
            )


CLI = "import sys; from lifecycle.cli import main; sys.argv[0] = 'lifecycle'; main()"


def cli_import(tree: Path, workdir: Path, roster: Path) -> dict[str, Any]:
    """``lifecycle hr import`` in a child process; its peak RSS from wait4's rusage."""
    # The child reports its own peak RSS when it exits (atexit runs on typer's SystemExit).
    code = (
        "import atexit, resource, sys; atexit.register(lambda: sys.stderr.write("
        "f'\\npeak_rss_kb={resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')); "
        "from lifecycle.cli import main; sys.argv[0] = 'lifecycle'; main()"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "LIFECYCLE_CONFIG": str(workdir / "lifecycle.toml"),
    }
    started = time.perf_counter()
    proc = subprocess.Popen(
        [python_of(tree), "-c", code, "hr", "import", str(roster), "--json"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    peak = [line for line in stderr.splitlines() if line.startswith("peak_rss_kb=")]
    rss = int(peak[-1].split("=")[1]) / 1024 if peak else float("nan")
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"hr import exited {proc.returncode}: {stderr[-2000:]}")
    result = json.loads(stdout)
    return {
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(rss, 1),
        "added": result["added"],
        "updated": result["updated"],
        "rejected": len(result["rejected"]),
        "progress_lines": sum(1 for line in stderr.splitlines() if "rows read" in line),
    }


def reconcile_child(db: Path, orphans: int) -> dict[str, Any]:
    """Runs in a child process with the tree under test first on sys.path."""
    import anyio

    from connectors.base import utcnow
    from connectors.memory import MemoryConnector
    from lifecycle.alerts import AlertSink
    from lifecycle.engine.executor import Executor, ExecutorConfig
    from lifecycle.engine.kinds import default_kinds
    from lifecycle.evidence.log import EvidenceLog
    from lifecycle.metrics import Metrics
    from lifecycle.retry import RetryPolicy
    from lifecycle.services.playbooks import PlaybookLibrary
    from lifecycle.services.sweeps import JobContext, reconcile
    from lifecycle.settings import Settings
    from lifecycle.store.sql import SqlStore

    kinds = default_kinds()
    store = SqlStore(f"sqlite:///{db}", plans=kinds.plans)
    rss_service = _self_rss_mb()  # the code loaded and the store open, before the fake system
    idp = MemoryConnector("idp", domain="bench.example")
    ids = [w for (w,) in store.engine.connect().exec_driver_sql("SELECT worker_id FROM workers")]
    for worker_id in ids:
        idp.add_account(worker_id, email=f"{worker_id.lower()}@bench.example", groups={"staff"})
    for n in range(orphans):
        idp.add_account(f"X{n:06d}", groups={"staff"})
    del ids
    rss_before = _self_rss_mb()
    evidence = EvidenceLog(
        store, None, "bench.lifecycle.local/evidence", sla_seconds=3600, clock=utcnow
    )
    from datetime import timedelta

    executor = Executor(
        queue=store,
        connectors={"idp": idp},
        evidence=evidence,
        alerts=AlertSink(None),
        metrics=Metrics(),
        config=ExecutorConfig(retry=RetryPolicy(), step_timeout=30.0, lease=timedelta(seconds=30)),
        clock=utcnow,
        owner="bench",
        kinds=kinds,
    )
    ctx = JobContext(Settings(), store, executor, PlaybookLibrary(), AlertSink(None), evidence)
    started = time.perf_counter()
    report = anyio.run(reconcile, ctx, utcnow())
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store.dispose()
    return {
        "workers": store_count(db),
        "accounts": len(idp.accounts),
        "orphans_found": len(report.orphans),
        "wall_s": round(wall, 2),
        "rss_service_mb": round(rss_service, 1),
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak, 1),
        # What a service process would peak at: the fake system's accounts live elsewhere.
        "service_peak_rss_mb": round(peak - (rss_before - rss_service), 1),
    }


def store_count(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM workers").fetchone()[0])


def _self_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(tree: Path, roster: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lifecycle-import-") as tmp:
        workdir = Path(tmp)
        (workdir / "lifecycle.toml").write_text(CONFIG)
        # The CLI creates no database of its own (only `serve` and `db upgrade` do).
        subprocess.run(
            [python_of(tree), "-c", CLI, "db", "upgrade"],
            cwd=workdir,
            env={
                **os.environ,
                "PYTHONPATH": str(tree),
                "LIFECYCLE_CONFIG": str(workdir / "lifecycle.toml"),
            },
            capture_output=True,
            check=True,
        )
        first = cli_import(tree, workdir, roster)
        again = cli_import(tree, workdir, roster)
        done = subprocess.run(
            [
                python_of(tree),
                str(HERE),
                "--reconcile-child",
                str(workdir / "lifecycle.db"),
                "--orphans",
                str(args.orphans),
            ],
            env={**os.environ, "PYTHONPATH": str(tree)},
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"reconciliation failed:\n{done.stderr[-3000:]}")
        rec: dict[str, Any] = json.loads(done.stdout)
    return {"tree": str(tree), "import": first, "refresh": again, "reconcile": rec}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=100_000)
    parser.add_argument("--orphans", type=int, default=100)
    parser.add_argument("--base", type=Path, help="worktree of the pre-change commit")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--reconcile-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reconcile_child is not None:
        print(json.dumps(reconcile_child(args.reconcile_child, args.orphans)))
        return 0
    trees = [("new", TREE)] + ([("base", args.base)] if args.base else [])
    with tempfile.TemporaryDirectory(prefix="lifecycle-roster-") as tmp:
        roster = Path(tmp) / "roster.csv"
        write_roster(roster, args.workers)
        size_mb = roster.stat().st_size / 1e6
        results = {label: measure(tree, roster, args) for label, tree in trees}
    if args.json:
        print(json.dumps({"roster_mb": size_mb, "results": results}, indent=2))
        return 0
    print(f"roster of {args.workers} workers ({size_mb:.1f} MB CSV); target < 200 MB RSS")
    print("  tree   step        wall s  peak RSS MB  notes")
    for label, r in results.items():
        for step in ("import", "refresh"):
            x = r[step]
            print(
                f"  {label:<6} hr {step:<8} {x['wall_s']:>7.2f} {x['peak_rss_mb']:>12.0f}  "
                f"{x['added']} added, {x['updated']} updated, "
                f"{x['progress_lines']} progress lines"
            )
        c = r["reconcile"]
        print(
            f"  {label:<6} reconcile   {c['wall_s']:>7.2f} {c['service_peak_rss_mb']:>12.0f}  "
            f"{c['accounts']} accounts, {c['orphans_found']} orphans; process peak "
            f"{c['peak_rss_mb']:.0f} MB of which {c['rss_before_mb'] - c['rss_service_mb']:.0f} MB"
            " are the in-process fake system's accounts (not the service's)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
