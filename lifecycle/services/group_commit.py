"""Group commit for request handlers: one writer thread, one transaction per batch.

Concurrent HR deliveries each used to take their own trips through the thread pool (map the
worker, store the event, remember the vendor link) and their own transactions, all queued
behind SQLite's single writer lock, with dozens of pool threads contending for the GIL. Here
every delivery hands its blocking store work to ONE writer thread as a job; the thread takes
whatever has queued while it was busy and runs it in one transaction, each job in its own
savepoint (``Database.batch``). A job that raises is rolled back alone and its caller gets the
exception; if the commit fails every caller in that batch gets the error; a caller is answered
only after the transaction holding its rows has committed. There is no added delay: a lone
request is a batch of one, and batches grow only while the database is busy.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar, cast

log = logging.getLogger("lifecycle.intake")
T = TypeVar("T")
MAX_BATCH = 256
"""Jobs per transaction at most: bounds how long one commit holds the database."""


class Batches(Protocol):
    def batch(self, jobs: Sequence[Callable[[], Any]]) -> list[Any]:
        """Run ``jobs`` in one transaction, each in a savepoint; a job's exception takes its
        place in the result. Raises if the transaction could not be committed."""
        ...


_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class GroupCommit:
    """Runs blocking store jobs on one writer thread, batched into shared transactions.

    The service runs on asyncio (uvicorn, anyio's asyncio backend): callers await an asyncio
    future that the writer settles through ``call_soon_threadsafe``, so a waiting request costs
    no thread. The thread starts with the first job and ends at ``close()``.
    """

    def __init__(
        self,
        store: Batches,
        *,
        max_batch: int = MAX_BATCH,
        bulk: Callable[[Sequence[Callable[[], Any]]], list[Any] | None] | None = None,
    ) -> None:
        """``bulk(jobs)``: a faster way to run a whole batch in one transaction, with the
        results each job would have given; it returns None, having stored nothing, for a
        batch it does not take (then each job runs in its own savepoint)."""
        self._store = store
        self._bulk = bulk
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.batches = 0
        """Transactions committed (or attempted) so far; for benchmarks and tests."""
        self.jobs = 0
        self.bulk_batches = 0
        """Batches stored through ``bulk`` (the rest ran job by job)."""

    async def run(self, job: Callable[[], T]) -> T:
        """``job()`` on the writer thread inside a shared transaction; returns once that
        transaction has committed (raises what the job raised, or the commit's error)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._ensure_thread()
        self._queue.put((job, loop, future))
        # Shielded: a caller that goes away must not cancel a job already queued (the writer
        # would still run it); it only stops waiting for the answer.
        return cast(T, await asyncio.shield(future))

    def queued(self) -> int:
        """Jobs waiting for the writer (not counting the batch it is running)."""
        return self._queue.qsize()

    def close(self) -> None:
        """Stop the writer after the jobs already queued."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout=30)

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="lifecycle-group-commit", daemon=True
                )
                self._thread.start()

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._flush(batch)
            if stop:
                return

    def _flush(self, batch: list[_Job]) -> None:
        results: Sequence[Any] | None = None
        jobs = [job for job, _, _ in batch]
        try:
            if self._bulk is not None:
                results = self._bulk(jobs)
                self.bulk_batches += results is not None
            if results is None:
                results = self._store.batch(jobs)
        except BaseException as exc:  # the commit failed: every caller learns
            log.error("intake transaction of %d job(s) failed: %s", len(batch), exc)
            results = [exc] * len(batch)
        self.batches += 1
        self.jobs += len(batch)
        for (_, loop, future), result in zip(batch, results, strict=True):
            try:
                loop.call_soon_threadsafe(_settle, future, result)
            except RuntimeError:  # the caller's loop has closed: nobody waits any more
                continue


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
