"""The SQLAlchemy engine and transactions, on SQLite (the embedded default: every transaction
takes the write lock with ``BEGIN IMMEDIATE``) and on PostgreSQL (several replicas)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Table, event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, create_engine, select

from lifecycle.domain import PlanCodec
from lifecycle.exceptions import StoreError

T = TypeVar("T")


class Database:
    """A connection pool and short transactions (``session()``); the query mixins build on it."""

    def __init__(self, url: str, *, plans: PlanCodec | None = None) -> None:
        self.url = url
        self.plans = plans or PlanCodec()
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        self.engine = self._make_engine(url)
        # One writer at a time inside this process: SQLite would otherwise spin on busy locks.
        self._sqlite_lock = threading.Lock() if self.is_sqlite else None
        # Set on the thread running ``batch()``: its jobs' sessions are savepoints of that one
        # transaction.
        self._batch = threading.local()

    def _make_engine(self, url: str) -> Engine:
        if not self.is_sqlite:
            return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
        memory = url in ("sqlite://", "sqlite:///:memory:")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if memory else None,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" below issue BEGIN
            cursor = dbapi_conn.cursor()
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on error. Inside ``batch()`` a
        savepoint of the batch's transaction instead (released on success, rolled back on
        error), so the same queries serve one request or a group of them."""
        outer: Session | None = getattr(self._batch, "session", None)
        if outer is not None:
            if not self._batch.savepoints:  # inside ``together()``: all or nothing
                yield outer
                return
            try:
                with outer.begin_nested():
                    yield outer
            except OperationalError as exc:
                raise StoreError(f"database error: {exc.orig}") from exc
            return
        lock = self._sqlite_lock
        if lock is not None:
            lock.acquire()
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                try:
                    yield session
                    session.commit()
                except OperationalError as exc:
                    session.rollback()
                    raise StoreError(f"database error: {exc.orig}") from exc
                except BaseException:
                    session.rollback()
                    raise
        finally:
            if lock is not None:
                lock.release()

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """``session()`` for reads only: inside ``batch()`` the batch's own session without a
        savepoint (nothing to undo), else a transaction of its own."""
        outer: Session | None = getattr(self._batch, "session", None)
        if outer is not None:
            yield outer
            return
        with self.session() as s:
            yield s

    def batch(self, jobs: Sequence[Callable[[], T]]) -> list[T | Exception]:
        """Run ``jobs`` (blocking store calls) in ONE transaction, each in its own savepoint:
        a job that raises leaves no trace and gets its exception back in its place; the others
        are committed together (group commit). If the commit itself fails, this raises and no
        job's work is stored."""
        results: list[T | Exception] = []
        with self.session() as s:
            self._batch.session, self._batch.savepoints = s, True
            try:
                for job in jobs:
                    try:
                        with s.begin_nested():
                            result = job()
                    except OperationalError as exc:
                        results.append(StoreError(f"database error: {exc.orig}"))
                    except Exception as exc:  # handed back to its caller
                        results.append(exc)
                    else:
                        results.append(result)
            finally:
                self._batch.session = None
        return results

    def together(self, work: Callable[[], T]) -> T:
        """``work()`` (blocking store calls) in ONE transaction without savepoints: the calls
        it makes join that transaction, and if anything raises, nothing of it is stored (the
        error propagates). The cheap path of a group commit whose jobs are known not to fail
        alone; ``batch`` is the one that isolates them."""
        with self.session() as s:
            self._batch.session, self._batch.savepoints = s, False
            try:
                return work()
            finally:
                self._batch.session = None

    def upsert(self, table: Table, keys: tuple[str, ...]) -> Any:
        """``INSERT ... ON CONFLICT (keys) DO UPDATE`` the other columns: one statement where
        ``Session.merge`` reads the row first (SQLite and PostgreSQL both have it). Built once
        per table (a statement built anew on every call is compiled anew)."""
        cache: dict[tuple[str, tuple[str, ...]], Any] = self.__dict__.setdefault("_upserts", {})
        statement = cache.get((table.name, keys))
        if statement is None:
            base = (sqlite_insert if self.is_sqlite else pg_insert)(table)
            statement = base.on_conflict_do_update(
                index_elements=list(keys),
                set_={c.name: base.excluded[c.name] for c in table.columns if c.name not in keys},
            )
            cache[(table.name, keys)] = statement
        return statement

    def ping(self) -> None:
        with self.session() as s:
            s.exec(select(1)).one()

    def dispose(self) -> None:
        self.engine.dispose()
