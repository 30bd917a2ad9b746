"""API tokens: an optional expiry, the time of last use, and names unique among live tokens.

Schema: ``api_tokens`` gets ``expires_at`` and ``last_used_at``; the unique constraint on
``name`` becomes a unique index over the tokens not revoked (``ix_api_tokens_live_name``), so
``lifecycle tokens create NAME --rotate`` can revoke a token and give its name to the new one
while the revoked row stays as it was (who held which token, and until when).

The table is rebuilt (copy, drop, rename) because release 0.1.0 created the name constraint
without a name, which neither SQLite nor PostgreSQL lets a migration drop portably.

Revision ID: 0004_tokens
Revises: 0003_reversible
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_tokens"
down_revision = "0003_reversible"
branch_labels = None
depends_on = None

LIVE_NAME = "ix_api_tokens_live_name"


def _ts(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    op.create_table(
        "api_tokens_0003",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("role", sa.String(), nullable=False),
        sa.Column("token_sha256", sa.String(), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _ts("revoked_at"),
        _ts("expires_at"),
        _ts("last_used_at"),
    )
    op.execute(
        "INSERT INTO api_tokens_0003 (id, name, role, token_sha256, created_at, revoked_at) "
        "SELECT id, name, role, token_sha256, created_at, revoked_at FROM api_tokens"
    )
    op.drop_table("api_tokens")
    op.rename_table("api_tokens_0003", "api_tokens")
    if op.get_bind().dialect.name == "postgresql":
        # Keep the sequence behind the copied ids, and the constraint names create_all uses.
        op.execute(
            "SELECT setval(pg_get_serial_sequence('api_tokens', 'id'), "
            "COALESCE((SELECT max(id) FROM api_tokens), 0) + 1, false)"
        )
        op.execute("ALTER SEQUENCE api_tokens_0003_id_seq RENAME TO api_tokens_id_seq")
        op.execute("ALTER INDEX api_tokens_0003_pkey RENAME TO api_tokens_pkey")
        op.execute(
            "ALTER TABLE api_tokens RENAME CONSTRAINT api_tokens_0003_token_sha256_key "
            "TO api_tokens_token_sha256_key"
        )
    op.create_index(
        LIVE_NAME,
        "api_tokens",
        ["name"],
        unique=True,
        sqlite_where=sa.text("revoked_at IS NULL"),
        postgresql_where=sa.text("revoked_at IS NULL"),
    )


def downgrade() -> None:
    raise NotImplementedError("lifecycle upgrades in place; restore a backup to go back")
