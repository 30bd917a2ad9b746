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
#: Columns added after the first release: (table, column); the SQL type (and default) is the
#: model's, compiled for this database.
ADDED_COLUMNS = (
    ("runs", "plan_json"),
    ("runs", "lease_epoch"),
    ("runs", "sla_alerted_at"),
    ("steps", "error_class"),
    ("steps", "error_code"),
    ("steps", "next_attempt_at"),
    ("steps", "first_failed_at"),
    ("inbox", "outcome"),
    ("inbox", "detail"),
    ("inbox", "pending_json"),
    ("inbox", "attempts"),
    ("inbox", "next_attempt_at"),
    ("inbox", "escalated_at"),
)


def create_schema(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)
    add_missing_columns(engine)
    rekey_inbox(engine)
    protect_evidence(engine)


def add_missing_columns(engine: Engine) -> None:
    """``create_all`` makes missing tables but never alters existing ones; a database created
    by an earlier version gets the columns (and their indexes) added since."""
    inspector = inspect(engine)
    altered: set[str] = set()
    for table, column in ADDED_COLUMNS:
        present = {c["name"] for c in inspector.get_columns(table)}
        if column not in present:
            model = SQLModel.metadata.tables[table].c[column]
            sql_type = model.type.compile(dialect=engine.dialect)
            default = model.server_default
            extra = f" NOT NULL DEFAULT {default.arg}" if default is not None else ""  # type: ignore[attr-defined]
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}{extra}")
            altered.add(table)
    for table in altered:
        for index in SQLModel.metadata.tables[table].indexes:
            index.create(engine, checkfirst=True)


def rekey_inbox(engine: Engine) -> None:
    """Databases from before conflict detection keyed the inbox on (source, event id) alone,
    which leaves no room to store a conflicting delivery: re-key it on (source, event id,
    payload hash) and give old rows their outcome. Rows are copied as they are."""
    inspector = inspect(engine)  # read before the transaction: it takes the lock
    sqlite = engine.dialect.name == "sqlite"
    names = {c["name"] for c in inspector.get_unique_constraints("inbox")}
    rekey = "uq_inbox_source_event" in names or (sqlite and "uq_inbox_delivery" not in names)
    columns = ", ".join(c["name"] for c in inspector.get_columns("inbox"))
    indexes = [i["name"] for i in inspector.get_indexes("inbox")]
    with engine.begin() as conn:
        if rekey and not sqlite:
            conn.exec_driver_sql(
                "ALTER TABLE inbox DROP CONSTRAINT IF EXISTS uq_inbox_source_event"
            )
            conn.exec_driver_sql(
                "ALTER TABLE inbox ADD CONSTRAINT uq_inbox_delivery "
                "UNIQUE (source, source_event_id, payload_sha256)"
            )
        elif rekey:  # SQLite cannot alter a constraint: rebuild the table
            conn.exec_driver_sql("ALTER TABLE inbox RENAME TO inbox_before_conflicts")
            for index in indexes:
                conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{index}"')
            SQLModel.metadata.tables["inbox"].create(conn)
            conn.exec_driver_sql(  # column names come from the schema itself
                f"INSERT INTO inbox ({columns}) "  # noqa: S608
                f"SELECT {columns} FROM inbox_before_conflicts"
            )
            conn.exec_driver_sql("DROP TABLE inbox_before_conflicts")
        conn.exec_driver_sql(
            "UPDATE inbox SET outcome = CASE WHEN run_id IS NULL THEN 'ignored' ELSE 'run' END "
            "WHERE outcome IS NULL"
        )


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
