"""A connector's slots: at most ``total`` chains work on one system at a time, and chains already
under way are served before new ones.

A chain holds its system's slot while it talks to the system, and lets go of it while it waits
for its own durable writes (a step's write-ahead waits for a group commit, milliseconds that
the system could spend on another chain's call). Taking the slot back, it goes ahead of the
chains that have not started yet, so runs still finish in about the order they started instead
of all progressing in lockstep.
"""

from __future__ import annotations

from collections import deque

import anyio


class Slots:
    """``total`` slots; ``acquire(resume=True)`` waits ahead of ``acquire()``."""

    __slots__ = ("_held", "_new", "_resuming", "total")

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("a connector needs at least one slot")
        self.total = total
        self._held = 0
        self._resuming: deque[anyio.Event] = deque()
        self._new: deque[anyio.Event] = deque()

    @property
    def held(self) -> int:
        return self._held

    async def acquire(self, *, resume: bool = False) -> None:
        """Wait for a slot (``resume``: the caller held one before and gave it up for a
        while; it is served before callers that never held one)."""
        if self._held < self.total and not self._resuming and not self._new:
            self._held += 1
            return
        waiting = anyio.Event()
        queue = self._resuming if resume else self._new
        queue.append(waiting)
        try:
            await waiting.wait()
        except BaseException:
            if waiting.is_set():  # handed a slot as it was cancelled: pass the slot on
                self.release()
            else:
                queue.remove(waiting)
            raise
        # ``release`` handed its slot over: ``_held`` already counts it.

    def release(self) -> None:
        """Give the slot back: to the first resuming waiter, else the first new one."""
        for queue in (self._resuming, self._new):
            if queue:
                queue.popleft().set()
                return
        self._held -= 1
