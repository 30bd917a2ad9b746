"""A connector's slots: a limit on chains at work, chains under way served first, and no slot
lost to a cancelled waiter."""

from __future__ import annotations

import anyio
import pytest

from lifecycle.engine.slots import Slots

pytestmark = pytest.mark.anyio


async def test_at_most_total_holders_at_once() -> None:
    slots = Slots(2)
    holding, most = 0, 0

    async def chain() -> None:
        nonlocal holding, most
        await slots.acquire()
        holding += 1
        most = max(most, holding)
        await anyio.sleep(0.01)
        holding -= 1
        slots.release()

    async with anyio.create_task_group() as tg:
        for _ in range(7):
            tg.start_soon(chain)
    assert most == 2
    assert slots.held == 0


async def test_a_resuming_chain_goes_ahead_of_new_ones() -> None:
    slots = Slots(1)
    await slots.acquire()
    order: list[str] = []

    async def waiter(name: str, resume: bool) -> None:
        await slots.acquire(resume=resume)
        order.append(name)
        slots.release()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "new-1", False)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "new-2", False)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "resumed", True)
        await anyio.wait_all_tasks_blocked()
        slots.release()
    assert order == ["resumed", "new-1", "new-2"]
    assert slots.held == 0


async def test_a_cancelled_waiter_leaves_its_place_and_loses_no_slot() -> None:
    slots = Slots(1)
    await slots.acquire()
    got: list[str] = []

    async def waiter(name: str) -> None:
        await slots.acquire()
        got.append(name)
        slots.release()

    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as scope:
            tg.start_soon(waiter, "cancelled")
            await anyio.wait_all_tasks_blocked()
        tg.start_soon(waiter, "kept")
        await anyio.wait_all_tasks_blocked()
        scope.cancel()  # the first waiter's scope: not the task group's
        slots.release()
    assert "kept" in got
    assert slots.held == 0


async def test_a_waiter_cancelled_as_it_is_handed_a_slot_passes_it_on() -> None:
    slots = Slots(1)
    await slots.acquire()
    got: list[str] = []

    async def first(scope: anyio.CancelScope) -> None:
        with scope:
            await slots.acquire()
            got.append("first")
            slots.release()

    async def second() -> None:
        await slots.acquire()
        got.append("second")
        slots.release()

    cancelled = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(first, cancelled)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(second)
        await anyio.wait_all_tasks_blocked()
        cancelled.cancel()  # the first waiter is being cancelled ...
        slots.release()  # ... when the slot is handed to it: it goes to the second
    assert got == ["second"]
    assert slots.held == 0
