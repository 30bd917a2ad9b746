"""The alert sink: every escalation is logged, and POSTed to a webhook when one is configured."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime

import httpx

from connectors.base import utcnow

log = logging.getLogger("lifecycle.alerts")


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str
    """``step_failed`` | ``run_incomplete`` | ``connector_missing``."""
    message: str
    run_id: str | None = None
    worker_id: str | None = None
    connector: str | None = None
    at: datetime = field(default_factory=utcnow)


class AlertSink:
    def __init__(
        self,
        webhook_url: str | None = None,
        *,
        http: httpx.AsyncClient | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.webhook_url = webhook_url
        self._http = http
        self._timeout = timeout
        self.sent: list[Alert] = []
        """The alerts of this process, newest last (bounded), for /readyz and tests."""

    async def send(self, alert: Alert) -> None:
        """Never raises: a broken webhook is logged, and the alert is still in the log."""
        self.sent = [*self.sent[-999:], alert]
        log.error(
            "ALERT %s: %s",
            alert.kind,
            alert.message,
            extra={
                k: v
                for k, v in (
                    ("run_id", alert.run_id),
                    ("worker_id", alert.worker_id),
                    ("system", alert.connector),
                )
                if v is not None  # the fields bound by the engine fill what the alert lacks
            },
        )
        if not self.webhook_url:
            return
        body = {
            k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(alert).items()
        }
        try:
            if self._http is None:
                async with httpx.AsyncClient(timeout=self._timeout) as client:
                    response = await client.post(self.webhook_url, json=body)
            else:
                response = await self._http.post(self.webhook_url, json=body)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            # The exception text may carry the URL (and a token in it): log the type only.
            log.warning("alert webhook failed: %s", type(exc).__name__)
