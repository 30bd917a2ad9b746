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
        self._queue: list[R] = []
        self._next = _Flush()
        """The flush the queued items go in: its callers share one event."""
        self._flushing = False

    async def submit(self, item: R) -> None:
        await self.submit_all([item])

    async def submit_all(self, items: Sequence[R]) -> None:
        """Write ``items`` in one transaction (the same flush) and wait for it."""
        flush = self._next
        self._queue.extend(items)
        if not self._flushing:
            self._flushing = True
            try:
                while self._queue:
                    batch, self._queue = self._queue, []
                    current, self._next = self._next, _Flush()
                    try:
                        # Shielded: the flusher's own run may be cancelled (its lease was lost)
                        # while it writes other runs' items. The write finishes, and those
                        # callers learn its real outcome; the cancellation reaches the flusher
                        # at its next wait. Unshielded, the other callers were handed the
                        # flusher's CancelledError and their chains silently ended.
                        with anyio.CancelScope(shield=True):
                            current.refused = await self._write(batch)
                    except BaseException as exc:
                        # Everyone waiting, queued during this write too, learns of the failure;
                        # nobody is left waiting on a flush that will not come.
                        current.fail(exc)
                        if self._queue:
                            self._queue = []
                            self._next.fail(exc)
                            self._next = _Flush()
                        break
                    current.done.set()
            finally:
                self._flushing = False
        await flush.done.wait()
        if flush.error is not None:
            raise flush.error
        for item in items:
            run_id = self._key(item)
            if run_id in flush.refused:
                raise LeaseLostError(f"run {run_id} was taken over by another replica")


class _Flush:
    """One transaction's outcome, shared by every caller whose items it writes."""

    __slots__ = ("done", "error", "refused")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None
        self.refused: Collection[str] = ()

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.done.set()
