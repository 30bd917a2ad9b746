"""Scheduler leadership on a real PostgreSQL: one advisory-lock holder among replicas."""

from __future__ import annotations

import pytest

from lifecycle.scheduler import Leadership
from lifecycle.store import Store

pytestmark = pytest.mark.integration


def test_only_one_postgres_replica_holds_the_scheduler_lock(postgres_url: str) -> None:
    stores = Store(postgres_url), Store(postgres_url)
    first, second = Leadership(stores[0]), Leadership(stores[1])
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        assert first.still_held() and not second.held
        first.release()
        assert second.try_acquire()  # the next replica takes over
        assert not first.try_acquire()
    finally:
        first.release()
        second.release()
        for store in stores:
            store.dispose()


def test_leadership_ends_when_its_connection_dies(postgres_url: str) -> None:
    stores = Store(postgres_url), Store(postgres_url)
    first, second = Leadership(stores[0]), Leadership(stores[1])
    try:
        assert first.try_acquire()
        assert first._conn is not None
        first._conn.invalidate()  # the replica's session is gone, as after a crash
        assert not first.still_held()
        assert second.try_acquire()
    finally:
        first.release()
        second.release()
        for store in stores:
            store.dispose()
