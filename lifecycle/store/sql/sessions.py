"""Console sessions: created at sign-in, touched on every request, ended by sign-out or by the
idle timeout."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import col, delete

from lifecycle.domain import ConsoleSession
from lifecycle.store.sql.database import Database
from lifecycle.store.sql.tables import ConsoleSessionRow


def _session(row: ConsoleSessionRow) -> ConsoleSession:
    return ConsoleSession(
        row.id_sha256, row.token_sha256, row.csrf_token, row.created_at, row.last_seen_at
    )


class ConsoleSessionQueries(Database):
    def add_console_session(self, session: ConsoleSession, idle: timedelta) -> None:
        with self.session() as s:
            # Sessions nobody came back to are cleared here rather than by a job of their own.
            s.exec(
                delete(ConsoleSessionRow).where(
                    col(ConsoleSessionRow.last_seen_at) < session.created_at - idle
                )
            )
            s.add(
                ConsoleSessionRow(
                    id_sha256=session.id_sha256,
                    token_sha256=session.token_sha256,
                    csrf_token=session.csrf_token,
                    created_at=session.created_at,
                    last_seen_at=session.last_seen_at,
                )
            )

    def touch_console_session(
        self, id_sha256: str, now: datetime, idle: timedelta
    ) -> ConsoleSession | None:
        with self.session() as s:
            row = s.get(ConsoleSessionRow, id_sha256)
            if row is None:
                return None
            if row.last_seen_at < now - idle:
                s.delete(row)
                return None
            row.last_seen_at = now
            s.add(row)
            return _session(row)

    def end_console_session(self, id_sha256: str) -> None:
        with self.session() as s:
            s.exec(delete(ConsoleSessionRow).where(col(ConsoleSessionRow.id_sha256) == id_sha256))
