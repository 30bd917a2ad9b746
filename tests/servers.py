"""Real servers for tests: PostgreSQL (the one on 127.0.0.1:5432 if it answers, else a throwaway
cluster started here). A missing server is a failure, never a skip."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest

EXISTING_PG = os.environ.get("LIFECYCLE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


@contextlib.contextmanager
def _throwaway_cluster() -> Iterator[str]:
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries:
        pytest.fail(
            "PostgreSQL is needed for the store tests: none answers on 127.0.0.1:5432 and no "
            "initdb is installed (run scripts/install-test-servers.sh as root)"
        )
    bindir = os.path.dirname(binaries[-1])
    datadir = tempfile.mkdtemp(prefix="lifecycle-pg-")
    port = free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(datadir, "postgres", "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*run_as, f"{bindir}/initdb", "-D", datadir, "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *run_as,
            f"{bindir}/pg_ctl",
            "-D",
            datadir,
            "-w",
            "-l",
            f"{datadir}/log",
            "-o",
            f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, f"{bindir}/pg_ctl", "-D", datadir, "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(datadir, ignore_errors=True)


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database on a real PostgreSQL server; yields a SQLAlchemy URL."""
    with contextlib.ExitStack() as stack:
        admin = EXISTING_PG if _answers(EXISTING_PG) else stack.enter_context(_throwaway_cluster())
        name = f"lifecycle_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base = admin.rsplit("/", 1)[0]
        try:
            yield base.replace("postgresql://", "postgresql+psycopg://") + f"/{name}"
        finally:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    with psycopg.connect(admin, autocommit=True) as conn:
                        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    break
                except psycopg.Error:
                    time.sleep(0.2)


def drop_schema(url: str) -> None:
    """Empty a test database: every table of the service and alembic's version table (the next
    ``create_schema`` then builds it from the first revision)."""
    from sqlalchemy import create_engine, text
    from sqlmodel import SQLModel

    import lifecycle.store.sql.tables  # noqa: F401 - the tables to drop

    engine = create_engine(url)
    try:
        SQLModel.metadata.drop_all(engine)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        engine.dispose()
