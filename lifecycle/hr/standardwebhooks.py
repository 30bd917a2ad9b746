"""Standard Webhooks sources (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).

Body: ``{"type": "worker.terminated", "timestamp": ..., "data": {"worker_id": ..., ...}}``.
The signature is the library's (``Webhook.sign``: HMAC-SHA256 of ``id.timestamp.body``); the
timestamp window is the source's ``tolerance_seconds`` around the service clock (the library's
own ``verify`` fixes it at five minutes and reads the wall clock).
"""

from __future__ import annotations

import binascii
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from standardwebhooks.webhooks import Webhook

from lifecycle.exceptions import SignatureError
from lifecycle.hr.event import HrEvent, HrEventType, check_worker_id, payload_digest
from lifecycle.secrets import resolve_secret
from lifecycle.settings import HrSourceSettings
from lifecycle.validation import parse_json_body

MEDIA_TYPES = frozenset({"application/json"})
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
    source: HrSourceSettings,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    allow_inline: bool,
) -> str:
    """Check the signature and timestamp; return the ``webhook-id`` (the source event id)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    event_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not (event_id and stamp and signatures):
        raise SignatureError(
            "webhook-id, webhook-timestamp and webhook-signature headers are required"
        )
    if len(event_id) > 200:
        raise SignatureError("webhook-id header must be 1-200 characters")
    try:
        sent = datetime.fromtimestamp(int(stamp), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise SignatureError("webhook-timestamp is not a Unix time in seconds") from exc
    if abs((now - sent).total_seconds()) > source.tolerance_seconds:
        raise SignatureError(
            f"webhook-timestamp is more than {source.tolerance_seconds} s from now"
        )
    secret = resolve_secret(source.secret, allow_inline=allow_inline, what="HR source secret")
    try:
        expected = Webhook(secret.get_secret_value()).sign(event_id, sent, body.decode())
    except (ValueError, binascii.Error) as exc:  # a secret that is not whsec_<base64>
        raise SignatureError("the source's webhook secret is not valid base64") from exc
    offered = [s for s in signatures.split(" ") if s.startswith("v1,")]
    if not offered:
        raise SignatureError("webhook-signature has no v1 signature")
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in offered):
        raise SignatureError("webhook signature rejected: no matching signature found")
    return event_id


def parse(
    name: str,
    source: HrSourceSettings,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    allow_inline: bool,
) -> HrEvent:
    event_id = verify(source, body, headers, now, allow_inline)
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
