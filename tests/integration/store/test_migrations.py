"""alembic owns the schema: a database written by release 0.1.0 (``tests/fixtures``, captured
before alembic) upgrades in place with every run and evidence record intact and its log still
verifying; the models match the migrations on both databases."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

from lifecycle.domain import (
    DisablePlan,
    OffboardPlan,
    OnboardPlan,
    PolicyPlan,
    ReverifyPlan,
    TransferPlan,
)
from lifecycle.store.migrations.upgrade import current, head, upgrade
from lifecycle.store.sql import SqlStore
from tests.servers import drop_schema

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
BIN = Path(sys.executable).parent / "lifecycle"
ORIGIN = "test.lifecycle.local/evidence"


def cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(BIN), *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def rows(db: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute(query).fetchall())


@pytest.fixture
def release_db(tmp_path: Path) -> Path:
    """A database as release 0.1.0 left it, loaded from its dump."""
    db = tmp_path / "lifecycle.db"
    with sqlite3.connect(db) as conn:
        conn.executescript((FIXTURES / "db_0.1.0.sql").read_text(encoding="utf-8"))
    return db


def test_a_release_0_1_0_database_upgrades_with_runs_and_evidence_intact(
    release_db: Path, tmp_path: Path
) -> None:
    runs_before = rows(
        release_db,
        "SELECT id, worker_id, status, actor, source, source_event_id, payload_sha256, "
        "received_at, effective_at, started_at, finished_at, time_to_revoke_ms, evidence_seq, "
        "kind FROM runs ORDER BY id",
    )
    steps_before = rows(
        release_db,
        "SELECT id, run_id, connector, action, position, status, attempts, account_id, "
        "started_at, finished_at, error, result_json, readback_json FROM steps ORDER BY id",
    )
    records_before = rows(
        release_db, "SELECT seq, record_id, run_id, leaf_hash, body FROM evidence"
    )
    assert len(runs_before) == 12 and len(records_before) == 11
    key = tmp_path / "evidence.ed25519"
    key.write_bytes((FIXTURES / "db_0.1.0.ed25519").read_bytes())
    key.chmod(0o600)
    config = tmp_path / "lifecycle.toml"
    config.write_text(
        f'[service]\ndatabase_url = "sqlite:///{release_db}"\n'
        f'evidence_key = "{key}"\nlog_origin = "{ORIGIN}"\n'
    )

    cli("db", "upgrade", config=config)
    cli("db", "upgrade", config=config)  # idempotent

    engine = create_engine(f"sqlite:///{release_db}")
    assert current(engine) == head()
    engine.dispose()
    columns = {c[1] for c in rows(release_db, "PRAGMA table_info(runs)")}
    assert {"plan_json", "lease_epoch", "sla_alerted_at"} <= columns
    # Every run and step is there as it was; only kinds and plans are re-expressed.
    after = rows(
        release_db,
        "SELECT id, worker_id, status, actor, source, source_event_id, payload_sha256, "
        "received_at, effective_at, started_at, finished_at, time_to_revoke_ms, evidence_seq "
        "FROM runs ORDER BY id",
    )
    assert after == [r[:-1] for r in runs_before]
    assert (
        rows(
            release_db,
            "SELECT id, run_id, connector, action, position, status, attempts, account_id, "
            "started_at, finished_at, error, result_json, readback_json FROM steps ORDER BY id",
        )
        == steps_before
    )
    assert rows(release_db, "SELECT seq, record_id, run_id, leaf_hash, body FROM evidence") == (
        records_before
    )
    store = SqlStore(f"sqlite:///{release_db}")
    try:
        kinds = {}
        for run_id, *_, old_kind in runs_before:
            detail = store.load_run(run_id)
            kinds[(old_kind, detail.run.source, detail.run.kind)] = type(detail.run.plan)
            assert {s.system for s in detail.steps} == set(detail.run.plan.systems())
        assert kinds == {
            ("offboard", "admin", "offboard"): OffboardPlan,
            ("offboard", "demo", "offboard"): OffboardPlan,
            ("offboard", "scheduler", "reverify"): ReverifyPlan,
            ("onboard", "hr", "onboard"): OnboardPlan,
            ("transfer", "hr", "transfer"): TransferPlan,
            ("policy", "policy", "policy"): PolicyPlan,
            ("policy", "scheduler", "disable"): DisablePlan,
            ("reconcile", "scheduler", "disable"): DisablePlan,
        }
        # The termination still waiting for its effective date is claimable as before.
        [pending] = [r for r in runs_before if r[2] == "pending"]
        waiting = store.load_run(pending[0]).run
        assert waiting.plan == OffboardPlan(targets=("ehr", "idp", "phone"))
        assert store.next_due(waiting.received_at) == waiting.not_before
    finally:
        store.dispose()
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        rows(release_db, "UPDATE evidence SET worker_id = 'W0001'")

    # The log still verifies, offline, with the key it was signed with.
    bundle = tmp_path / "bundle.zip"
    cli("evidence", "export", "--out", str(bundle), "--json", config=config)
    verified = subprocess.run(
        [
            str(BIN),
            "evidence",
            "verify",
            str(bundle),
            "--key",
            str(FIXTURES / "db_0.1.0.ed25519.pub"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["records"] == 11
    assert report["tree_size"] >= 11


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/schema.db"
        return
    found: str = request.getfixturevalue("postgres_url")
    drop_schema(found)
    yield found
    drop_schema(found)


def test_the_models_match_the_migrations(url: str) -> None:
    engine = create_engine(url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_release_0_1_0_runs_get_their_kinds_and_typed_plans(url: str) -> None:
    """The data part of the upgrade on both databases: 0.1.0's run kinds and plan shapes."""
    engine = create_engine(url)
    upgrade(engine, "0001")
    legacy = {
        "r-rev": ("offboard", "scheduler", {"reverify": {"of": "r-off", "after_minutes": 5}}),
        "r-off": ("offboard", "admin", None),
        "r-dis": (
            "policy",
            "scheduler",
            {
                "policy": {"name": "inactivity", "sha256": "a" * 64},
                "inactivity": {
                    "idp": {"idle_days": 100, "limit_days": 90, "never_signed_in": False}
                },
            },
        ),
        "r-orp": (
            "reconcile",
            "scheduler",
            {"policy": {"name": "reconcile", "sha256": "b" * 64}, "orphans": {"ehr": "no worker"}},
        ),
    }
    with engine.begin() as conn:
        for run_id, (kind, source, plan) in legacy.items():
            conn.execute(
                text(
                    "INSERT INTO runs (id, kind, worker_id, status, actor, source, "
                    "source_event_id, received_at, not_before, plan_json) VALUES (:id, :kind, "
                    "'W1', 'pending', 'x', :source, :id, :t, :t, :plan)"
                ),
                {
                    "id": run_id,
                    "kind": kind,
                    "source": source,
                    "t": "2026-11-01 10:00:00",
                    "plan": json.dumps(plan) if plan else None,
                },
            )
            system = "ehr" if run_id == "r-orp" else "idp"
            for position, action in enumerate(("disable", "verify")):
                conn.execute(
                    text(
                        "INSERT INTO steps (run_id, connector, action, position, status, "
                        "attempts, account_id, account_login) VALUES (:run, :system, :action, "
                        ":position, 'pending', 0, 'acct-1', 'w1@example.org')"
                    ),
                    {"run": run_id, "system": system, "action": action, "position": position},
                )
    upgrade(engine)
    engine.dispose()
    store = SqlStore(url)
    try:
        rev = store.load_run("r-rev").run
        assert (rev.kind, rev.plan) == (
            "reverify",
            ReverifyPlan(targets=("idp",), of_run="r-off", after_minutes=5),
        )
        assert store.load_run("r-off").run.plan == OffboardPlan(targets=("idp",))
        dormant = store.load_run("r-dis").run
        assert dormant.kind == "disable" and isinstance(dormant.plan, DisablePlan)
        assert dormant.plan.accounts()["idp"].account_id == "acct-1"
        assert dormant.plan.policy is not None and dormant.plan.policy.name == "inactivity"
        orphan = store.load_run("r-orp").run
        assert orphan.kind == "disable" and isinstance(orphan.plan, DisablePlan)
        assert orphan.plan.why == {"ehr": {"orphan": "no worker"}}
        assert "lease_epoch" in {c["name"] for c in inspect(store.engine).get_columns("runs")}
    finally:
        store.dispose()
