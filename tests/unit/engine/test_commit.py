"""The executor's group commit: every caller learns the real outcome of the write holding its
item, also when the caller that happened to flush it is cancelled meanwhile."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from lifecycle.engine.commit import GroupCommit

pytestmark = pytest.mark.anyio


async def test_a_flusher_cancelled_mid_write_still_completes_the_others_items() -> None:
    writing, release = anyio.Event(), anyio.Event()
    written: list[str] = []

    async def write(items: Sequence[str]) -> set[str]:
        writing.set()
        await release.wait()
        written.extend(items)
        return set()

    commit: GroupCommit[str] = GroupCommit(write, key=lambda item: item)
    outcome: dict[str, str] = {}
    scope = anyio.CancelScope()

    async def flusher() -> None:
        with scope:
            await commit.submit("a")
            outcome["a"] = "written"
            return
        outcome["a"] = "cancelled"

    async def other(item: str) -> None:
        try:
            await commit.submit(item)
        except BaseException as exc:
            outcome[item] = type(exc).__name__
            raise
        outcome[item] = "written"

    async with anyio.create_task_group() as tg:
        tg.start_soon(flusher)
        await writing.wait()  # "a" is being written by its own caller
        tg.start_soon(other, "b")
        tg.start_soon(other, "c")
        await anyio.wait_all_tasks_blocked()  # "b" and "c" queued behind it
        scope.cancel()  # the flusher's run lost its lease
        release.set()
    assert written == ["a", "b", "c"]
    assert outcome == {"a": "cancelled", "b": "written", "c": "written"}
