"""Scheduler leadership: the holder of a PostgreSQL session advisory lock, or the one SQLite
process. Methods are blocking; call them in a worker thread."""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.engine import Connection

from lifecycle.store.sql.database import Database

log = logging.getLogger("lifecycle.scheduler")

#: Advisory lock key held by the leading replica ("LCSC").
SCHEDULER_LOCK_KEY = 0x4C435343


class SqlLeaderLock:
    def __init__(self, database: Database, key: int = SCHEDULER_LOCK_KEY) -> None:
        self.database = database
        self.key = key
        self._conn: Connection | None = None

    @property
    def held(self) -> bool:
        return self.database.is_sqlite or self._conn is not None

    def try_acquire(self) -> bool:
        if not self.database.is_postgres:
            return True
        if self._conn is not None:
            return self.still_held()
        conn = self.database.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar()
            )
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        return True

    def still_held(self) -> bool:
        """Ask the server whether this session still holds the lock (a reconnected session
        would not: the lock dies with the session that took it)."""
        if not self.database.is_postgres:
            return True
        if self._conn is None:
            return False
        try:
            held = bool(
                self._conn.execute(
                    text(
                        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                        "AND pid = pg_backend_pid() AND granted "
                        "AND ((classid::bigint << 32) | objid::bigint) = :k)"
                    ),
                    {"k": self.key},
                ).scalar()
            )
        except Exception:
            held = False
        if not held:
            log.warning("scheduler leadership lost: the lock's database session ended")
            self._drop()
        return held

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        except Exception:
            log.warning("could not release the scheduler lock; closing its connection")
        self._drop()

    def lose_connection(self) -> None:
        """Invalidate the lock's session, as a crash would (tests of failover)."""
        if self._conn is not None:
            self._conn.invalidate()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                log.debug("closing a failed connection failed too", exc_info=True)
            self._conn = None
