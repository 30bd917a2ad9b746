"""A bounded pool of bound ldap3 connections, used from worker threads.

ldap3 is blocking and a ``Connection`` is not safe to share between threads, so each call takes
one connection for itself inside a worker thread (``anyio.to_thread.run_sync``), and a limiter
bounds both the threads and the connections: 200 simultaneous terminations queue for ``size``
connections instead of opening 200 sockets against a domain controller.

The queue is ordered by a priority the caller gives (the connector passes the moment a
termination began), not by arrival of each single call. With plain first-come order, 200
terminations of four steps each interleave step by step and nearly all finish at the very end
of the burst; ordered by start, the earliest finish first and the median time to revoke halves.

Nothing here retries an operation. An idle connection is checked before it is handed out: an
idle LDAP connection has nothing to read, so a readable socket means the server has closed it
(end of file, or its Notice of Disconnection, RFC 4511 §4.4.1) and it is replaced by a fresh
one. That check costs no round trip; a connection that dies during a call fails the call.
"""

from __future__ import annotations

import heapq
import itertools
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from ldap3.core.exceptions import LDAPCommunicationError, LDAPException, LDAPResponseTimeoutError

T = TypeVar("T")

Connection = Any
"""An ``ldap3.Connection`` (ldap3 ships no type hints)."""


@dataclass(frozen=True, slots=True)
class PoolStats:
    open: int
    """Connections open now (idle or in use)."""
    peak_open: int
    """Most connections ever open at once: never more than the pool size."""


class PriorityLimiter:
    """Up to ``size`` holders; waiters are served lowest priority value first, then in order.

    Used from one event loop only (no thread touches it), so it needs no lock.
    """

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    async def acquire(self, priority: float) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        entry = (priority, next(self._order), anyio.Event())
        heapq.heappush(self._waiters, entry)
        try:
            await entry[2].wait()
        except BaseException:
            if entry[2].is_set():
                self.release()  # the slot was handed over as we were cancelled: pass it on
            else:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    def release(self) -> None:
        if self._waiters:
            heapq.heappop(self._waiters)[2].set()  # hand the slot straight to the next waiter
        else:
            self._free += 1


class ConnectionPool:
    """At most ``size`` connections; idle ones are reused, broken ones are dropped."""

    def __init__(
        self, factory: Callable[[], Connection], size: int, max_idle_seconds: float = 240.0
    ) -> None:
        self._factory = factory
        self._queue = PriorityLimiter(size)
        self._threads = anyio.CapacityLimiter(size)
        self._max_idle = max_idle_seconds
        self._idle: list[tuple[Connection, float]] = []
        """(connection, when it went idle); the most recently used is at the end."""
        self._lock = threading.Lock()
        self._closed = False
        self._open = 0
        self._peak = 0

    async def run(self, call: Callable[[Connection], T], priority: float | None = None) -> T:
        """Run ``call(connection)`` in a worker thread with a bound connection of its own.

        Lower ``priority`` values are served first (default: now, i.e. first come first served).
        """
        await self._queue.acquire(time.monotonic() if priority is None else priority)
        try:
            return await anyio.to_thread.run_sync(self._run_sync, call, limiter=self._threads)
        finally:
            self._queue.release()

    def _run_sync(self, call: Callable[[Connection], T]) -> T:
        conn = self._take()
        if conn is None:
            conn = self._factory()
            with self._lock:
                self._open += 1
                self._peak = max(self._peak, self._open)
        healthy = False
        try:
            result = call(conn)
        except (LDAPCommunicationError, LDAPResponseTimeoutError, OSError):
            # The socket is suspect, and so are its idle siblings: a server restart or an idle
            # timeout closes them all, and a retry must not pick up the next dead one.
            self._drop_idle()
            raise
        except BaseException:
            # The server answered (no such object, insufficient rights...): the socket is fine.
            healthy = True
            raise
        else:
            healthy = True
        finally:
            self._release(conn, healthy)
        return result

    def _take(self) -> Connection | None:
        """The most recently used idle connection; ones idle too long, or already closed by
        the server, are closed instead (servers and firewalls drop idle LDAP connections, AD
        after 15 minutes)."""
        stale: list[Connection] = []
        conn = None
        now = time.monotonic()
        with self._lock:
            if self._closed:
                raise RuntimeError("the connection pool is closed")
            while self._idle:
                candidate, since = self._idle.pop()
                if now - since <= self._max_idle and not _closed_by_server(candidate):
                    conn = candidate
                    break
                stale.append(candidate)
            self._open -= len(stale)
        for old in stale:
            _unbind_quietly(old)
        return conn

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for conn, _since in idle:
            _unbind_quietly(conn)

    def _release(self, conn: Connection, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed and not conn.closed:
                self._idle.append((conn, time.monotonic()))
                return
            self._open -= 1
        _unbind_quietly(conn)

    def stats(self) -> PoolStats:
        with self._lock:
            return PoolStats(self._open, self._peak)

    async def aclose(self) -> None:
        """Unbind every idle connection; calls still running release theirs when they end."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
        for conn, _since in idle:
            await anyio.to_thread.run_sync(_unbind_quietly, conn)


def _closed_by_server(conn: Connection) -> bool:
    """Whether an idle connection is already gone: closed here, or readable (an idle LDAP
    connection is owed nothing, so what is there to read is EOF or a Notice of Disconnection)."""
    sock = getattr(conn, "socket", None)
    if conn.closed or sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):  # the descriptor is already closed
        return True
    return bool(readable)


def _unbind_quietly(conn: Connection) -> None:
    try:
        conn.unbind()
    except (LDAPException, LDAPCommunicationError, OSError):
        # A connection we are throwing away anyway; the server may already have closed it.
        return
