"""The executor's group commit: every caller learns the real outcome of the write holding its
item, also when the caller that happened to flush it is cancelled meanwhile."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from lifecycle.engine.commit import GroupCommit
from lifecycle.exceptions import LeaseLostError

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


async def test_only_the_callers_of_refused_runs_lose_their_lease() -> None:
    writes: list[list[str]] = []

    async def write(items: list[str]) -> set[str]:
        writes.append(items)
        await anyio.sleep(0.01)
        return {"lost"}

    commit: GroupCommit[str] = GroupCommit(write, key=lambda item: item.split(":")[0])
    outcome: dict[str, str] = {}

    async def submit(*items: str) -> None:
        try:
            await commit.submit_all(items)
            outcome[items[0]] = "written"
        except LeaseLostError:
            outcome[items[0]] = "lost"

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, "a:1", "a:2")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(submit, "lost:1")  # queued while the first flush writes
        tg.start_soon(submit, "b:1")
    assert writes == [["a:1", "a:2"], ["lost:1", "b:1"]]
    assert outcome == {"a:1": "written", "lost:1": "lost", "b:1": "written"}


async def test_a_failed_write_fails_its_callers_and_those_queued_behind_it() -> None:
    started = anyio.Event()
    failing = True
    written: list[str] = []

    async def write(items: list[str]) -> set[str]:
        started.set()
        await anyio.sleep(0.01)
        if failing:
            raise RuntimeError("disk full")
        written.extend(items)
        return set()

    commit: GroupCommit[str] = GroupCommit(write, key=lambda item: item)
    errors: dict[str, str] = {}

    async def submit(item: str) -> None:
        try:
            await commit.submit(item)
        except RuntimeError as exc:
            errors[item] = str(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, "first")
        await started.wait()
        tg.start_soon(submit, "queued")
    assert errors == {"first": "disk full", "queued": "disk full"}
    failing = False
    await commit.submit("later")  # the next flush starts afresh
    assert written == ["later"]
