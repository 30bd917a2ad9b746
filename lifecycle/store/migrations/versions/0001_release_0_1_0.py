"""The schema of release 0.1.0, as ``Store.create_schema`` made it before alembic owned it.

A database from that release has exactly these tables, indexes and triggers; ``upgrade.py``
stamps it at this revision instead of running it.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

EVIDENCE_RETENTION_YEARS = 6


def _ts(name: str, *, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    _roster_and_inbox()
    _runs()
    _evidence()
    _tokens_and_jobs()
    protect_evidence()


def _roster_and_inbox() -> None:
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(), primary_key=True),
        sa.Column("name", sa.String()),
        sa.Column("email", sa.String()),
        sa.Column("upn", sa.String()),
        sa.Column("job_code", sa.String()),
        sa.Column("engagement", sa.String()),
        sa.Column("vendor", sa.String()),
        sa.Column("status", sa.String(), nullable=False),
        _ts("updated_at", nullable=False),
    )
    op.create_table(
        "inbox",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("source_event_id", sa.String(), nullable=False),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("worker_id", sa.String(), nullable=False),
        _ts("received_at", nullable=False),
        _ts("effective_at"),
        sa.Column("reason", sa.String()),
        sa.Column("payload_sha256", sa.String(), nullable=False),
        sa.Column("run_id", sa.String()),
        sa.UniqueConstraint("source", "source_event_id", name="uq_inbox_source_event"),
    )
    op.create_index("ix_inbox_worker_id", "inbox", ["worker_id"])


def _runs() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("worker_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("reason", sa.String()),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("source", sa.String()),
        sa.Column("source_event_id", sa.String()),
        sa.Column("payload_sha256", sa.String()),
        _ts("received_at", nullable=False),
        _ts("effective_at"),
        _ts("not_before", nullable=False),
        _ts("started_at"),
        _ts("finished_at"),
        sa.Column("time_to_revoke_ms", sa.Integer()),
        sa.Column("lease_owner", sa.String()),
        _ts("lease_expires_at"),
        sa.Column("evidence_seq", sa.Integer()),
        sa.Column("playbook_name", sa.String()),
        sa.Column("playbook_sha256", sa.String()),
        sa.Column("plan_json", sa.Text()),
    )
    op.create_index("ix_runs_worker_id", "runs", ["worker_id"])
    op.create_index("ix_runs_claim", "runs", ["status", "not_before"])
    op.create_index("ix_runs_received_at", "runs", ["received_at"])
    op.create_table(
        "steps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.String(), sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("connector", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.String()),
        sa.Column("account_login", sa.String()),
        _ts("started_at"),
        _ts("finished_at"),
        sa.Column("error", sa.Text()),
        sa.Column("result_json", sa.Text()),
        sa.Column("readback_json", sa.Text()),
    )
    op.create_index("ix_steps_run_id", "steps", ["run_id"])
    op.create_table(
        "account_links",
        sa.Column("worker_id", sa.String(), primary_key=True),
        sa.Column("connector", sa.String(), primary_key=True),
        sa.Column("account_id", sa.String(), nullable=False),
        sa.Column("login", sa.String()),
        _ts("linked_at", nullable=False),
    )


def _evidence() -> None:
    op.create_table(
        "evidence",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("record_id", sa.String(), nullable=False, unique=True),
        sa.Column("run_id", sa.String(), nullable=False, unique=True),
        sa.Column("worker_id", sa.String(), nullable=False),
        _ts("created_at", nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_evidence_worker_id", "evidence", ["worker_id"])
    op.create_index("ix_evidence_created_at", "evidence", ["created_at"])
    op.create_table(
        "checkpoints",
        sa.Column("tree_size", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        _ts("signed_at", nullable=False),
    )


def _tokens_and_jobs() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False, unique=True),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("token_sha256", sa.String(), nullable=False, unique=True),
        _ts("created_at", nullable=False),
        _ts("revoked_at"),
    )
    op.create_table(
        "scheduler_jobs",
        sa.Column("name", sa.String(), primary_key=True),
        _ts("last_run_at", nullable=False),
    )


def protect_evidence() -> None:
    """Evidence is append-only, enforced by the database itself: records and checkpoints are
    never updated, and never deleted before the retention period (HIPAA 164.316(b)(2): six
    years) has passed, whatever code or operator asks."""
    years = EVIDENCE_RETENTION_YEARS
    tables = (("evidence", "created_at"), ("checkpoints", "signed_at"))
    if op.get_bind().dialect.name == "sqlite":
        for table, column in tables:
            op.execute(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
            op.execute(
                f"CREATE TRIGGER IF NOT EXISTS {table}_retention BEFORE DELETE ON {table} "
                f"WHEN OLD.{column} > datetime('now', '-{years} years') BEGIN "
                f"SELECT RAISE(ABORT, '{table} is kept {years} years'); END"
            )
        return
    op.execute(
        "CREATE OR REPLACE FUNCTION lifecycle_protect_evidence() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "IF TG_OP = 'UPDATE' THEN "
        "RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END IF; "
        # TG_ARGV[0] names the row's timestamp column (the tables differ).
        "IF (to_jsonb(OLD) ->> TG_ARGV[0])::timestamptz "
        f"> now() - interval '{years} years' "
        f"THEN RAISE EXCEPTION '% is kept {years} years', TG_TABLE_NAME; END IF; "
        "RETURN OLD; END $$"
    )
    for table, column in tables:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_protect ON {table}")
        op.execute(
            f"CREATE TRIGGER {table}_protect BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION lifecycle_protect_evidence('{column}')"
        )


def downgrade() -> None:
    raise NotImplementedError("the schema only moves forward (evidence is append-only)")
