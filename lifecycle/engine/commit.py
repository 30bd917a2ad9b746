"""Group commit: many chains' progress writes in one transaction per flush."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Generic, TypeVar

import anyio

from lifecycle.exceptions import LeaseLostError

R = TypeVar("R")


class GroupCommit(Generic[R]):
    """Batches writes (steps, links, run ends) into one transaction per flush.

    Every caller still waits until its own item is committed, so "a step is persisted before
    the chain moves on" holds; while one flush runs, the items submitted meanwhile queue for
    the next. The first waiting caller flushes (no background task), so it works wherever the
    engine runs. One transaction for many chains is what lets a burst of terminations be
    limited by connector concurrency instead of by database round trips.

    ``write`` returns the keys (run ids) whose items the store refused because another replica
    took their run over: those callers get ``LeaseLostError``, the others carry on.
    """

    def __init__(
        self,
        write: Callable[[list[R]], Awaitable[Collection[str]]],
        key: Callable[[R], str],
    ) -> None:
        self._write = write
        self._key = key
        self._queue: list[tuple[R, _Ticket]] = []
        self._flushing = False

    async def submit(self, item: R) -> None:
        await self.submit_all([item])

    async def submit_all(self, items: Sequence[R]) -> None:
        """Write ``items`` in one transaction (the same flush) and wait for it."""
        ticket = _Ticket()
        self._queue.extend((item, ticket) for item in items)
        if not self._flushing:
            self._flushing = True
            try:
                while self._queue:
                    batch, self._queue = self._queue, []
                    try:
                        # Shielded: the flusher's own run may be cancelled (its lease was lost)
                        # while it writes other runs' items. The write finishes, and those
                        # callers learn its real outcome; the cancellation reaches the flusher
                        # at its next wait. Unshielded, the other callers were handed the
                        # flusher's CancelledError and their chains silently ended.
                        with anyio.CancelScope(shield=True):
                            refused = await self._write([i for i, _ in batch])
                    except BaseException as exc:
                        # Everyone waiting, queued during this write too, learns of the failure;
                        # nobody is left waiting on a flush that will not come.
                        batch, self._queue = batch + self._queue, []
                        for _, waiting in batch:
                            waiting.fail(exc)
                        break
                    for written, waiting in batch:
                        if self._key(written) in refused:
                            waiting.fail(
                                LeaseLostError(
                                    f"run {self._key(written)} was taken over by another replica"
                                )
                            )
                        else:
                            waiting.done.set()
            finally:
                self._flushing = False
        await ticket.done.wait()
        if ticket.error is not None:
            raise ticket.error


class _Ticket:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.done.set()
