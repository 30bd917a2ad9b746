from __future__ import annotations

import pytest

from lifecycle.exceptions import PermanentConnectorError, TransientConnectorError
from lifecycle.retry import RetryPolicy, retry_transient


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_seconds=1, max_seconds=5, jitter=0)
    assert [policy.wait(n, None) for n in (1, 2, 3, 4, 5)] == [1, 2, 4, 5, 5]


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    policy = RetryPolicy(initial_seconds=1, max_retry_after_seconds=60)
    assert policy.wait(1, TransientConnectorError(retry_after=41)) == 41
    assert policy.wait(1, TransientConnectorError(retry_after=315)) == 60


@pytest.mark.anyio
async def test_transient_errors_are_retried_then_reraised() -> None:
    calls: list[float] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientConnectorError("busy", connector="x", retry_after=0)
        return "ok"

    waits: list[float] = []
    result = await retry_transient(
        flaky, RetryPolicy(attempts=5), on_retry=lambda n, e, w: waits.append(w)
    )
    assert result == "ok"
    assert waits == [0, 0]

    async def always() -> None:
        raise TransientConnectorError("down", connector="x", retry_after=0)

    with pytest.raises(TransientConnectorError, match="down"):
        await retry_transient(always, RetryPolicy(attempts=3))


@pytest.mark.anyio
async def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    async def refused() -> None:
        nonlocal calls
        calls += 1
        raise PermanentConnectorError("403", connector="x")

    with pytest.raises(PermanentConnectorError):
        await retry_transient(refused, RetryPolicy(attempts=5))
    assert calls == 1
