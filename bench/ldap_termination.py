"""Termination benchmark against real directories: a Samba AD DC and slapd with ppolicy.

For each directory it seeds accounts (each in two groups), then runs the connector's
termination chain ``find_account -> disable -> revoke_sessions -> remove_access -> read_state``
for 1 worker at a time and for N (default 200) workers at once, and prints p50 / p99 of the
per-termination time (from the start of find_account to the end of read_state, queueing for a
pooled connection included). Every termination is checked: the read-back must say disabled and
without groups, else the run fails.

By default it starts its own throwaway servers on 127.0.0.1 (needs the Debian packages:
``scripts/install-test-servers.sh``). ``--url`` points it at a running server instead; only
loopback addresses are accepted. The whole run is bounded by ``--deadline`` seconds.

    uv run python bench/ldap_termination.py                  # both directories, 1 and 200
    uv run python bench/ldap_termination.py --target openldap --concurrency 50 --json
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import socket
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.base import ConnectorContext, Worker
from connectors.ldap import LdapConnector
from tests.integration.ldap.directory import DirectoryAdmin
from tests.integration.ldap.servers import (
    SambaDC,
    SlapdServer,
    samba_dc,
    slapd_server,
)


@dataclass
class Target:
    kind: str
    url: str
    ca_file: Path
    admin_dn: str
    admin_password: str
    base_dn: str
    users_ou: str
    groups_ou: str
    groups: tuple[str, str]


@dataclass
class Result:
    target: str
    concurrency: int
    terminations: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    wall_s: float
    per_second: float
    pool_size: int
    peak_connections: int


def _loopback_only(url: str) -> None:
    host = urlsplit(url).hostname or ""
    for info in socket.getaddrinfo(host, None):
        address = ipaddress.ip_address(info[4][0])
        if not address.is_loopback:
            raise SystemExit(f"refusing {url}: {address} is not a loopback address")


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    index = fraction * (len(ordered) - 1)
    low, high = int(index), min(int(index) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (index - low)


@contextlib.contextmanager
def _started(kind: str) -> Iterator[Target]:
    if kind == "ad":
        with samba_dc() as dc:
            yield _ad_target(dc)
    else:
        with slapd_server() as server:
            yield _openldap_target(server)


def _ad_target(dc: SambaDC) -> Target:
    ou = f"OU=Bench,{dc.domain_dn}"
    return Target(
        "ad",
        dc.url,
        dc.ca_file,
        dc.admin_dn,
        dc.admin_password,
        dc.domain_dn,
        ou,
        ou,
        (f"CN=Bench Scheduling,{ou}", f"CN=Bench Billing,{ou}"),
    )


def _openldap_target(server: SlapdServer) -> Target:
    groups = f"ou=groups,{server.suffix}"
    return Target(
        "openldap",
        server.url,
        server.ca_file,
        server.root_dn,
        server.root_password,
        server.suffix,
        f"ou=people,{server.suffix}",
        groups,
        (f"cn=bench-scheduling,{groups}", f"cn=bench-billing,{groups}"),
    )


def seed(target: Target, count: int, prefix: str) -> list[str]:
    """Create ``count`` accounts in both bench groups; returns their worker ids."""
    admin = DirectoryAdmin(
        target.kind, target.url, target.ca_file, target.admin_dn, target.admin_password
    )
    try:
        admin.ensure(target.users_ou, ["top", "organizationalUnit"], {})
        placeholder = f"cn=bench-placeholder,{target.base_dn}"
        if target.kind == "openldap":
            admin.ensure(placeholder, ["top", "organizationalRole"], {"cn": "bench-placeholder"})
        for group in target.groups:
            admin.add_group(group, placeholder=placeholder)
        ids = [f"{prefix}{n:05d}" for n in range(count)]
        for worker_id in ids:
            admin.add_user(target.users_ou, worker_id, groups=list(target.groups))
        return ids
    finally:
        admin.close()


def connector_for(target: Target, pool_size: int, secret_file: Path) -> LdapConnector:
    secret_file.write_text(target.admin_password, encoding="utf-8")
    options: dict[str, Any] = {
        "kind": target.kind,
        "url": target.url,
        "bind_dn": target.admin_dn,
        "bind_password": f"file:{secret_file}",
        "base_dn": target.base_dn,
        "group_ou": target.groups_ou,
        "ca_file": str(target.ca_file),
        "pool_size": pool_size,
        "timeout_seconds": 30,
    }
    return LdapConnector.from_config(f"bench-{target.kind}", options, ConnectorContext())


async def terminate(connector: LdapConnector, worker_id: str) -> float:
    """One termination, checked by its read-back; returns its duration in milliseconds."""
    started = time.perf_counter()
    account = await connector.find_account(Worker(worker_id=worker_id))
    if account is None:
        raise RuntimeError(f"seeded worker {worker_id} not found")
    await connector.disable(account)
    await connector.revoke_sessions(account)
    await connector.remove_access(account)
    state = await connector.read_state(account)
    elapsed = (time.perf_counter() - started) * 1000
    if state.enabled or state.entitlements:
        raise RuntimeError(f"{worker_id}: read-back says enabled={state.enabled} {state}")
    return elapsed


async def run_batch(
    target: Target, connector: LdapConnector, ids: list[str], concurrency: int, pool: int
) -> Result:
    durations: list[float] = []
    started = time.perf_counter()
    if concurrency == 1:
        for worker_id in ids:
            durations.append(await terminate(connector, worker_id))
    else:

        async def one(worker_id: str) -> None:
            durations.append(await terminate(connector, worker_id))

        async with anyio.create_task_group() as tg:
            for worker_id in ids:
                tg.start_soon(one, worker_id)
    wall = time.perf_counter() - started
    return Result(
        target=target.kind,
        concurrency=concurrency,
        terminations=len(durations),
        p50_ms=round(statistics.median(durations), 1),
        p99_ms=round(_percentile(durations, 0.99), 1),
        max_ms=round(max(durations), 1),
        wall_s=round(wall, 2),
        per_second=round(len(durations) / wall, 1),
        pool_size=pool,
        peak_connections=connector.pool_stats().peak_open,
    )


async def bench_target(target: Target, args: argparse.Namespace, workdir: Path) -> list[Result]:
    prefix = f"B{int(time.time()) % 100000:05d}"
    total = args.sequential + args.concurrency
    seed_started = time.perf_counter()
    ids = await anyio.to_thread.run_sync(seed, target, total, prefix)
    print(
        f"[{target.kind}] seeded {total} accounts in {time.perf_counter() - seed_started:.1f} s",
        file=sys.stderr,
    )
    results = []
    connector = connector_for(target, args.pool_size, workdir / f"{target.kind}.pw")
    async with connector:
        await terminate(connector, ids[0])  # warm-up: opens the first connection, not timed
        results.append(
            await run_batch(target, connector, ids[1 : args.sequential], 1, args.pool_size)
        )
    connector = connector_for(target, args.pool_size, workdir / f"{target.kind}.pw")
    async with connector:
        batch = ids[args.sequential :]
        results.append(await run_batch(target, connector, batch, args.concurrency, args.pool_size))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=["ad", "openldap", "both"], default="both")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--sequential", type=int, default=21, help="1 warm-up + N timed")
    parser.add_argument("--pool-size", type=int, default=16)
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds for everything")
    parser.add_argument("--url", help="use this running server (loopback only) instead")
    parser.add_argument("--ca-file", type=Path)
    parser.add_argument("--admin-dn")
    parser.add_argument("--admin-password-file", type=Path)
    parser.add_argument("--base-dn")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.sequential < 2 or args.concurrency < 1:
        parser.error("--sequential must be >= 2 and --concurrency >= 1")

    async def run() -> list[Result]:
        results: list[Result] = []
        with anyio.fail_after(args.deadline), _scratch() as workdir:
            if args.url:
                results += await bench_target(_external(args), args, workdir)
                return results
            kinds = ["openldap", "ad"] if args.target == "both" else [args.target]
            for kind in kinds:
                with _started(kind) as target:
                    results += await bench_target(target, args, workdir)
        return results

    try:
        results = anyio.run(run)
    except TimeoutError:
        print(f"benchmark exceeded --deadline {args.deadline} s", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(
            f"{'target':<9} {'conc':>5} {'n':>5} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} "
            f"{'wall s':>7} {'per s':>7} {'pool':>5} {'peak':>5}"
        )
        for r in results:
            print(
                f"{r.target:<9} {r.concurrency:>5} {r.terminations:>5} {r.p50_ms:>9} "
                f"{r.p99_ms:>9} {r.max_ms:>9} {r.wall_s:>7} {r.per_second:>7} "
                f"{r.pool_size:>5} {r.peak_connections:>5}"
            )
    return 0


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lifecycle-bench-") as name:
        yield Path(name)


def _external(args: argparse.Namespace) -> Target:
    missing = [
        flag
        for flag, value in (
            ("--ca-file", args.ca_file),
            ("--admin-dn", args.admin_dn),
            ("--admin-password-file", args.admin_password_file),
            ("--base-dn", args.base_dn),
        )
        if value is None
    ]
    if missing or args.target == "both":
        raise SystemExit(f"--url needs --target ad|openldap and {' '.join(missing)}")
    _loopback_only(args.url)
    password = args.admin_password_file.read_text(encoding="utf-8").strip()
    if args.target == "ad":
        ou = f"OU=Bench,{args.base_dn}"
        groups = (f"CN=Bench Scheduling,{ou}", f"CN=Bench Billing,{ou}")
        return Target(
            "ad", args.url, args.ca_file, args.admin_dn, password, args.base_dn, ou, ou, groups
        )
    group_ou = f"ou=groups,{args.base_dn}"
    groups = (f"cn=bench-scheduling,{group_ou}", f"cn=bench-billing,{group_ou}")
    return Target(
        "openldap",
        args.url,
        args.ca_file,
        args.admin_dn,
        password,
        args.base_dn,
        f"ou=people,{args.base_dn}",
        group_ou,
        groups,
    )


if __name__ == "__main__":
    raise SystemExit(main())
