"""Scheduler leadership on a real PostgreSQL: one advisory-lock holder among replicas."""

from __future__ import annotations

import pytest

from lifecycle.store.sql import SqlStore

pytestmark = pytest.mark.integration


def test_only_one_postgres_replica_holds_the_scheduler_lock(postgres_url: str) -> None:
    stores = SqlStore(postgres_url), SqlStore(postgres_url)
    first, second = stores[0].leader_lock(), stores[1].leader_lock()
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
    stores = SqlStore(postgres_url), SqlStore(postgres_url)
    first, second = stores[0].leader_lock(), stores[1].leader_lock()
    try:
        assert first.try_acquire()
        first.lose_connection()  # the replica's session is gone, as after a crash
        assert not first.still_held()
        assert second.try_acquire()
    finally:
        first.release()
        second.release()
        for store in stores:
            store.dispose()
