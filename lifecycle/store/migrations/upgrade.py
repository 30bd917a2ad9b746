"""Bring a database to the newest schema revision (``lifecycle db upgrade``).

A database created before alembic owned the schema (release 0.1.0: ``create_all`` and hand-made
``ALTER TABLE``s, no ``alembic_version`` table) is recognised by its ``runs`` table and stamped
at the first revision, which is exactly that schema; the later revisions then apply as usual.
On PostgreSQL an advisory lock makes replicas starting together upgrade one at a time.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

HERE = Path(__file__).resolve().parent
BASELINE = "0001"
"""The revision equal to release 0.1.0's schema."""
MIGRATION_LOCK_KEY = 0x4C434D47
"""Advisory lock key held while migrating ("LCMG")."""


def config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["connection"] = connection
    return cfg


def head() -> str:
    revision = ScriptDirectory.from_config(config()).get_current_head()
    if revision is None:
        raise RuntimeError("no schema revisions found")
    return revision


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every revision up to ``revision`` (stamping a pre-alembic database first), in one
    transaction: a failed upgrade leaves the database as it was."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        cfg = config(conn)
        tables = set(inspect(conn).get_table_names())
        if "alembic_version" not in tables and "runs" in tables:
            command.stamp(cfg, BASELINE)
        command.upgrade(cfg, revision)
