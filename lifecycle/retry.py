"""The one retry policy: exponential backoff with jitter that honours ``Retry-After``.

Only the engine retries (connectors do not), and only ``TransientConnectorError``; permanent
errors pass straight through. Every retry is logged (connector, account, attempt, wait) and
never with secrets. Connectors parse ``Retry-After`` into ``TransientConnectorError.retry_after``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from lifecycle.exceptions import TransientConnectorError

T = TypeVar("T")
log = logging.getLogger("lifecycle.retry")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    """Total attempts, the first one included."""
    initial_seconds: float = 0.2
    max_seconds: float = 30.0
    max_retry_after_seconds: float = 300.0
    """A server's Retry-After longer than this is capped (and the cap logged)."""
    jitter: float = 0.2
    """Up to this fraction of the wait is added at random, so replicas do not retry in step."""

    def wait(self, attempt: int, exc: BaseException | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if isinstance(exc, TransientConnectorError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.max_retry_after_seconds)
        base = min(self.initial_seconds * 2.0 ** max(attempt - 1, 0), self.max_seconds)
        spread: float = random.uniform(0, self.jitter)  # noqa: S311 - jitter, not crypto
        return base * (1 + spread)


async def retry_transient(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[int, TransientConnectorError, float], Awaitable[None] | None] | None = None,
) -> T:
    """Run ``call`` until it succeeds, raises a permanent error, or attempts run out.

    After the last attempt the final ``TransientConnectorError`` is re-raised unchanged.
    """

    # A plain loop, not tenacity's: it runs around every connector call, and the first attempt
    # (almost always the only one) should cost nothing beyond the call itself.
    attempt = 1
    while True:
        try:
            return await call()
        except TransientConnectorError as exc:
            if attempt >= policy.attempts:
                raise
            delay = policy.wait(attempt, exc)
            log.warning(
                "attempt %d of %d failed (%s in %s); retrying in %.2f s",
                attempt,
                policy.attempts,
                type(exc).__name__,
                exc.connector,
                delay,
                extra={
                    "system": exc.connector,
                    "attempt": attempt,
                    "wait_seconds": round(delay, 3),
                    "error_class": type(exc).__name__,
                },
            )
            if on_retry is not None:
                maybe = on_retry(attempt, exc, delay)
                if maybe is not None:
                    await maybe
        await anyio.sleep(delay)
        attempt += 1
