"""Experiment behind the benchmark's bottleneck finding: the same benchmark, with the engine's
per-step transactions group-committed. Not a part of the service; delete it once the engine
batches its writes itself.

``--variant steps``: every ``Engine._settle`` enqueues its step row; one writer task commits all
rows queued so far in one transaction (ORM bulk UPDATE by primary key) and wakes their waiters.
A step is still persisted before its chain moves on; only the transaction is shared.

``--variant steps+links``: also reads the worker's account links with the run (no ``get_link``
per connector), group-commits ``link_account``, and skips the second ``load_run`` (the engine
already holds the Step objects it settled).

It overrides private ``Engine`` methods, so it may need touching when the engine changes:

    uv run python bench/group_commit_experiment.py --variant steps+links [termination.py flags]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
from sqlalchemy import update
from sqlmodel import select

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as harness
import termination as bench

from lifecycle.engine import Engine
from lifecycle.models import AccountLink, Step, StepStatus
from lifecycle.store import RunDetail

STEP_COLUMNS = (
    "status",
    "attempts",
    "account_id",
    "account_login",
    "started_at",
    "finished_at",
    "error",
    "result_json",
    "readback_json",
)
Write = tuple[str, Any]


class GroupCommitEngine(harness.BenchEngine):
    links_too = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._queue: list[tuple[Write, anyio.Event]] = []
        self._queued = anyio.Event()
        self._details: dict[str, RunDetail] = {}
        self._links: dict[tuple[str, str], AccountLink] = {}
        self.batches = 0

    async def run_forever(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._writer)
            await tg.start(Engine.run_forever, self)
            task_status.started()

    async def _enqueue(self, write: Write) -> None:
        done = anyio.Event()
        self._queue.append((write, done))
        self._queued.set()
        await done.wait()

    async def _settle(self, step: Step, status: StepStatus, *, error: str | None = None) -> None:
        step.status = status
        if error is not None:
            step.error = error
        await self._enqueue(
            ("step", {"id": step.id, **{c: getattr(step, c) for c in STEP_COLUMNS}})
        )

    async def _writer(self) -> None:
        while True:
            await self._queued.wait()
            self._queued = anyio.Event()
            batch, self._queue = self._queue, []
            if batch:
                await super()._db(self._write, [w for w, _ in batch])
                self.batches += 1
                for _, done in batch:
                    done.set()

    def _write(self, writes: list[Write]) -> None:
        with self.store.session() as s:
            rows = [row for kind, row in writes if kind == "step"]
            if rows:
                s.execute(update(Step), rows)
            for kind, row in writes:
                if kind == "link":
                    s.merge(row)

    async def _db(self, fn: Any, *args: Any) -> Any:
        name = getattr(fn, "__name__", "")
        if not self.links_too or name not in ("load_run", "get_link", "link_account"):
            return await super()._db(fn, *args)
        if name == "get_link":
            return self._links.get((args[0], args[1]))
        if name == "link_account":
            worker_id, connector, account_id, login, now = args
            link = AccountLink(
                worker_id=worker_id,
                connector=connector,
                account_id=account_id,
                login=login,
                linked_at=now,
            )
            await self._enqueue(("link", link))
            return None
        if args[0] in self._details:  # the second load_run: the settled steps are in memory
            return self._details.pop(args[0])
        detail = await super()._db(self._load_with_links, args[0])
        self._details[args[0]] = detail
        return detail

    def _load_with_links(self, run_id: str) -> RunDetail:
        detail = self.store.load_run(run_id)
        with self.store.session() as s:
            query = select(AccountLink).where(AccountLink.worker_id == detail.run.worker_id)
            for link in s.exec(query).all():
                self._links[(link.worker_id, link.connector)] = link
        return detail


def main() -> int:
    argv = sys.argv[1:]
    variant = "steps"
    if "--variant" in argv:
        at = argv.index("--variant")
        variant = argv[at + 1]
        del argv[at : at + 2]
    if variant not in ("steps", "steps+links"):
        raise SystemExit("--variant is steps or steps+links")
    GroupCommitEngine.links_too = variant == "steps+links"
    harness.BenchEngine = GroupCommitEngine  # type: ignore[misc]
    return bench.main(argv)


if __name__ == "__main__":
    sys.exit(main())
