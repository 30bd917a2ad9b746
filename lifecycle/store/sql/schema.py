"""Create or bring up to date the schema, and protect the evidence tables in the database.

Interim: ``create_all`` plus the nullable columns added since the first release, until the
alembic revisions own the schema.
"""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from lifecycle.store.sql import tables as _tables  # noqa: F401 - registers the tables

EVIDENCE_RETENTION_YEARS = 6
#: Columns added after the first release: (table, column, SQL type and default).
ADDED_COLUMNS = (
    ("runs", "plan_json", "TEXT"),
    ("runs", "lease_epoch", "INTEGER NOT NULL DEFAULT 0"),
    ("runs", "sla_alerted_at", "TIMESTAMP"),
    ("steps", "error_class", "VARCHAR"),
    ("steps", "error_code", "VARCHAR"),
    ("steps", "next_attempt_at", "TIMESTAMP"),
    ("steps", "first_failed_at", "TIMESTAMP"),
)


def create_schema(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)
    add_missing_columns(engine)
    protect_evidence(engine)


def add_missing_columns(engine: Engine) -> None:
    """``create_all`` makes missing tables but never alters existing ones."""
    inspector = inspect(engine)
    for table, column, sql_type in ADDED_COLUMNS:
        present = {c["name"] for c in inspector.get_columns(table)}
        if column not in present:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")


def protect_evidence(engine: Engine) -> None:
    """Evidence is append-only, enforced by the database itself: records and checkpoints are
    never updated, and never deleted before the retention period (HIPAA 164.316(b)(2): six
    years) has passed, whatever code or operator asks."""
    years = EVIDENCE_RETENTION_YEARS
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            for table, column in (("evidence", "created_at"), ("checkpoints", "signed_at")):
                conn.exec_driver_sql(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
                )
                conn.exec_driver_sql(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_retention BEFORE DELETE ON {table} "
                    f"WHEN OLD.{column} > datetime('now', '-{years} years') BEGIN "
                    f"SELECT RAISE(ABORT, '{table} is kept {years} years'); END"
                )
        elif engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "CREATE OR REPLACE FUNCTION lifecycle_protect_evidence() RETURNS trigger "
                "LANGUAGE plpgsql AS $$ BEGIN "
                "IF TG_OP = 'UPDATE' THEN "
                "RAISE EXCEPTION '%% is append-only', TG_TABLE_NAME; END IF; "
                # TG_ARGV[0] names the row's timestamp column (the tables differ).
                "IF (to_jsonb(OLD) ->> TG_ARGV[0])::timestamptz "
                f"> now() - interval '{years} years' "
                f"THEN RAISE EXCEPTION '%% is kept {years} years', TG_TABLE_NAME; END IF; "
                "RETURN OLD; END $$"
            )
            for table, column in (("evidence", "created_at"), ("checkpoints", "signed_at")):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_protect ON {table}")
                conn.exec_driver_sql(
                    f"CREATE TRIGGER {table}_protect BEFORE UPDATE OR DELETE ON {table} "
                    f"FOR EACH ROW EXECUTE FUNCTION lifecycle_protect_evidence('{column}')"
                )
