"""Standard Webhooks sources (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).

Body: ``{"type": "worker.terminated", "timestamp": ..., "data": {"worker_id": ..., ...}}``.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from lifecycle.exceptions import SignatureError
from lifecycle.hr.event import HrEvent, HrEventType, check_worker_id, payload_digest
from lifecycle.secrets import resolve_secret
from lifecycle.settings import HrSourceSettings
from lifecycle.validation import parse_json_body

TYPES: Mapping[str, HrEventType] = {
    "worker.terminated": HrEventType.TERMINATION,
    "worker.hired": HrEventType.HIRE,
    "worker.transferred": HrEventType.TRANSFER,
    "worker.updated": HrEventType.UPDATE,
}


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore")

    worker_id: str = Field(min_length=1, max_length=64)
    effective_at: AwareDatetime | None = None
    reason: str | None = Field(default=None, max_length=200)
    job_code: str | None = Field(default=None, max_length=64)
    engagement: Literal["employee", "contractor"] | None = None
    vendor: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    name: str | None = Field(default=None, max_length=200)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["worker.terminated", "worker.hired", "worker.transferred", "worker.updated"]
    timestamp: AwareDatetime
    data: _Data


def verify(
    source: HrSourceSettings, body: bytes, headers: Mapping[str, str], allow_inline: bool
) -> str:
    """Check the signature and timestamp; return the ``webhook-id`` (the source event id)."""
    secret = resolve_secret(source.secret, allow_inline=allow_inline, what="HR source secret")
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        Webhook(secret.get_secret_value()).verify(body, lowered, json_parse=False)
    except WebhookVerificationError as exc:
        raise SignatureError(f"webhook signature rejected: {exc}") from exc
    except (ValueError, binascii.Error) as exc:  # malformed signature header or bad base64
        raise SignatureError("webhook signature header is malformed") from exc
    event_id = lowered.get("webhook-id", "")
    if not 0 < len(event_id) <= 200:
        raise SignatureError("webhook-id header must be 1-200 characters")
    return event_id


def parse(
    name: str,
    source: HrSourceSettings,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    allow_inline: bool,
) -> HrEvent:
    event_id = verify(source, body, headers, allow_inline)
    parsed = parse_json_body(_Body, body, "HR event")
    data = parsed.data
    return HrEvent(
        source=name,
        event_id=event_id,
        type=TYPES[parsed.type],
        worker_id=check_worker_id(data.worker_id),
        payload_sha256=payload_digest(body),
        occurred_at=parsed.timestamp,
        effective_at=data.effective_at,
        reason=data.reason,
        job_code=data.job_code,
        engagement=data.engagement,
        vendor=data.vendor,
        email=data.email,
        name=data.name,
    )
