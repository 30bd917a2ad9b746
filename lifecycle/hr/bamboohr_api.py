"""The BambooHR API client the ``bamboohr`` source uses to read an employee before deciding.

``GET {base}/api/v1/employees/{id}?fields=a,b,c&onlyCurrent=true`` with HTTP Basic auth (the
API key as user name, any password) and ``Accept: application/json``; the answer is a flat JSON
object of the requested fields, e.g. ``{"id": 123, "firstName": "John", "lastName": "Doe"}``.
Page: https://documentation.bamboohr.com/reference/get-employee (authentication:
https://documentation.bamboohr.com/docs/getting-started).

Transient errors (timeouts, connection errors, 429, 5xx) are retried here with exponential
backoff and jitter, honouring ``Retry-After``; what is still failing after ``attempts`` raises
``VendorUnavailableError`` and the intake stores the delivery to retry later.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import SecretStr
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from connectors.base import parse_retry_after
from lifecycle.hr.errors import (
    VendorRecordMissingError,
    VendorRefusedError,
    VendorUnavailableError,
)

log = logging.getLogger("lifecycle.hr.bamboohr")
EMPLOYEE_ID = re.compile(r"^[0-9]{1,18}$")
MAX_RETRY_AFTER_SECONDS = 30.0


class BambooHrClient:
    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        http: httpx.AsyncClient,
        *,
        timeout_seconds: float = 10.0,
        attempts: int = 3,
        initial_wait_seconds: float = 0.5,
        max_wait_seconds: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = httpx.BasicAuth(api_key.get_secret_value(), "x")
        self._http = http
        self._timeout = timeout_seconds
        self._attempts = attempts
        self._backoff = wait_exponential_jitter(
            multiplier=initial_wait_seconds, max=max_wait_seconds, jitter=initial_wait_seconds
        )

    async def employee(self, employee_id: str, fields: Sequence[str]) -> dict[str, Any]:
        """The employee's current values of ``fields``.

        Raises VendorRecordMissingError (404), VendorRefusedError (401, 403, other 4xx, or an
        answer that is not a JSON object) or VendorUnavailableError (after the retries).
        """
        if not EMPLOYEE_ID.match(employee_id):
            raise VendorRefusedError(f"{employee_id!r} is not a BambooHR employee id")
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=self._wait,
            retry=retry_if_exception_type(VendorUnavailableError),
            before_sleep=self._log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._get(employee_id, fields)
        raise AssertionError("unreachable")  # pragma: no cover - tenacity reraises

    async def _get(self, employee_id: str, fields: Sequence[str]) -> dict[str, Any]:
        url = f"{self.base_url}/api/v1/employees/{employee_id}"
        try:
            response = await self._http.get(
                url,
                params={"fields": ",".join(fields), "onlyCurrent": "true"},
                headers={"Accept": "application/json"},
                auth=self._auth,
                timeout=self._timeout,
            )
        except httpx.TransportError as exc:
            # The exception text may carry the URL; the class says enough.
            raise VendorUnavailableError(f"BambooHR did not answer: {type(exc).__name__}") from exc
        status = response.status_code
        if status == 404:
            raise VendorRecordMissingError(f"BambooHR has no employee {employee_id}")
        if status == 429 or status >= 500:
            raise VendorUnavailableError(
                f"BambooHR answered HTTP {status}",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status in (401, 403):
            raise VendorRefusedError(
                f"BambooHR refused the API key (HTTP {status}); check [hr.sources.*].api_key and "
                "that its user may read these fields"
            )
        if status >= 300:
            raise VendorRefusedError(f"BambooHR answered HTTP {status}")
        try:
            data = response.json()
        except ValueError as exc:
            raise VendorRefusedError("BambooHR answered with something other than JSON") from exc
        if not isinstance(data, dict):
            raise VendorRefusedError("BambooHR answered with something other than a JSON object")
        return data

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, VendorUnavailableError) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER_SECONDS)
        return float(self._backoff(state))

    @staticmethod
    def _log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "BambooHR look-up failed (attempt %d): %s; retrying",
            state.attempt_number,
            exc.message if isinstance(exc, VendorUnavailableError) else type(exc).__name__,
        )
