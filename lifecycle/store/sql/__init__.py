"""The SQL store (SQLModel on SQLite or PostgreSQL): every port of ``lifecycle.store.ports``.

Only the composition root (``lifecycle.service``) and the ``db`` command import this package.
"""

from __future__ import annotations

from lifecycle.store.migrations.upgrade import current, upgrade
from lifecycle.store.sql.evidence import EvidenceQueries
from lifecycle.store.sql.intake import IntakeQueries
from lifecycle.store.sql.leader import SqlLeaderLock
from lifecycle.store.sql.roster import RosterQueries
from lifecycle.store.sql.sessions import ConsoleSessionQueries


class SqlStore(IntakeQueries, EvidenceQueries, RosterQueries, ConsoleSessionQueries):
    """Synchronous SQLAlchemy with short transactions; async callers use a worker thread."""

    def create_schema(self) -> None:
        """Create the schema, or upgrade an older database in place (alembic; idempotent)."""
        upgrade(self.engine)

    def schema_revision(self) -> str | None:
        return current(self.engine)

    def leader_lock(self) -> SqlLeaderLock:
        return SqlLeaderLock(self)


__all__ = ["SqlLeaderLock", "SqlStore"]
