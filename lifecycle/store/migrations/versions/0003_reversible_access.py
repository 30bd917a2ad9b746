"""Reversible access: who approved, rejected or cancelled a run by hand (when, why), and which
run retries which.

Schema: runs get ``decision`` (``approved`` / ``rejected``), ``decided_by``, ``decided_at``,
``decision_reason`` (the second admin's answer to a restore awaiting approval),
``cancelled_by``, ``cancelled_at``, ``cancel_reason``, and ``retry_of`` / ``retried_as`` (an
admin's retry of an incomplete or failed run is a new run). New statuses (``cancelled``,
``awaiting_approval``) and kinds (``suspend``, ``restore``) need no schema change. Evidence
records are not touched.

Revision ID: 0003_reversible
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_reversible"
down_revision = "0002"
branch_labels = None
depends_on = None


def _ts(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("runs")}
    for column in (
        sa.Column("decision", sa.String()),
        sa.Column("decided_by", sa.String()),
        _ts("decided_at"),
        sa.Column("decision_reason", sa.Text()),
        sa.Column("cancelled_by", sa.String()),
        _ts("cancelled_at"),
        sa.Column("cancel_reason", sa.Text()),
        sa.Column("retry_of", sa.String()),
        sa.Column("retried_as", sa.String()),
    ):
        if column.name not in present:
            op.add_column("runs", column)


def downgrade() -> None:
    raise NotImplementedError("the schema only moves forward (evidence is append-only)")
