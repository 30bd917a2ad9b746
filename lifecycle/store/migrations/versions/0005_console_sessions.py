"""Console sessions: a signed-in console user is a row keyed by the SHA-256 of the random id in
their cookie, holding the SHA-256 of the API token they signed in with, their CSRF token and
when they were last seen (the idle timeout).

Revision ID: 0005_console_sessions
Revises: 0004_tokens
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_console_sessions"
down_revision = "0004_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Idempotent like the earlier revisions: a schema already holding the table (created by
    # ``create_all`` and re-stamped older) is left as it is.
    if sa.inspect(op.get_bind()).has_table("console_sessions"):
        return
    op.create_table(
        "console_sessions",
        sa.Column("id_sha256", sa.String(), primary_key=True, nullable=False),
        sa.Column("token_sha256", sa.String(), nullable=False),
        sa.Column("csrf_token", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_console_sessions_token_sha256", "console_sessions", ["token_sha256"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_console_sessions_token_sha256", table_name="console_sessions")
    op.drop_table("console_sessions")
