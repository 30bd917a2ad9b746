"""The pool's priority queue: earlier-started terminations are served first, and cancelling a
waiter never loses or leaks a slot; idle connections the server closed are never handed out."""

from __future__ import annotations

import socket
import time

import anyio
import pytest

from connectors.ldap.pool import ConnectionPool, PriorityLimiter

pytestmark = pytest.mark.anyio


async def test_waiters_are_served_by_priority_then_arrival() -> None:
    limiter = PriorityLimiter(1)
    await limiter.acquire(0.0)  # the only slot is taken
    served: list[str] = []

    async def wait(name: str, priority: float) -> None:
        await limiter.acquire(priority)
        served.append(name)
        limiter.release()

    async with anyio.create_task_group() as tg:
        for name, priority in (("late", 9.0), ("early", 1.0), ("mid-a", 5.0), ("mid-b", 5.0)):
            tg.start_soon(wait, name, priority)
            await anyio.wait_all_tasks_blocked()
        limiter.release()
    assert served == ["early", "mid-a", "mid-b", "late"]


async def test_never_more_holders_than_size() -> None:
    limiter = PriorityLimiter(3)
    holders = peak = 0

    async def work(priority: float) -> None:
        nonlocal holders, peak
        await limiter.acquire(priority)
        holders += 1
        peak = max(peak, holders)
        await anyio.sleep(0.001)
        holders -= 1
        limiter.release()

    async with anyio.create_task_group() as tg:
        for n in range(40):
            tg.start_soon(work, float(n % 7))
    assert peak == 3


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    limiter = PriorityLimiter(1)
    await limiter.acquire(0.0)
    with anyio.move_on_after(0.01):
        await limiter.acquire(1.0)
    limiter.release()
    with anyio.fail_after(1):
        await limiter.acquire(2.0)  # the slot came back; nobody holds a ghost slot
    limiter.release()


class _Idle:
    """What the pool looks at on an idle ldap3 connection: its socket and ``closed``."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.closed = False
        self.unbound = False

    def unbind(self) -> None:
        self.unbound = True
        self.socket.close()


def test_idle_connections_the_server_closed_are_replaced_not_used() -> None:
    local, server = socket.socketpair()
    alive_local, alive_server = socket.socketpair()
    opened: list[_Idle] = []

    def factory() -> _Idle:
        conn = _Idle(socket.socket())
        opened.append(conn)
        return conn

    pool = ConnectionPool(factory, size=2)
    dead, alive = _Idle(local), _Idle(alive_local)
    pool._idle = [(alive, time.monotonic()), (dead, time.monotonic())]  # dead is most recent
    server.close()  # the server drops it: EOF is waiting to be read
    assert pool._take() is alive
    assert dead.unbound and not alive.unbound and not opened
    alive_server.sendall(b"\x30")  # a Notice of Disconnection arrives on the other one
    pool._idle = [(alive, time.monotonic())]
    assert pool._take() is None and alive.unbound
    alive_server.close()
