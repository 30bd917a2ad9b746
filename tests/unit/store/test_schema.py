"""Schema upgrades of a database written by an earlier version."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect

from lifecycle.store.sql import SqlStore


def test_an_older_database_gets_the_new_columns(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = SqlStore(url)
    store.create_schema()
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN plan_json")
    store.dispose()
    store = SqlStore(url)
    store.create_schema()
    assert "plan_json" in {c["name"] for c in inspect(store.engine).get_columns("runs")}
    store.dispose()
