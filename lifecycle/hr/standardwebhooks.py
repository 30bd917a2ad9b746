"""Standard Webhooks sources (any sender that follows https://www.standardwebhooks.com/,
spec: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md).

Authenticity: ``webhook-signature`` holds space-separated ``v1,<base64>`` signatures, each
HMAC-SHA256 over ``"{webhook-id}.{webhook-timestamp}.{body}"`` keyed with the base64 secret
after ``whsec_``; ``webhook-timestamp`` (Unix seconds) must be within ``tolerance_seconds``.
The source event id is ``webhook-id`` (a re-delivery keeps it).

Body: ``{"type": "worker.terminated", "timestamp": ..., "data": {"worker_id": ..., ...}}``;
``worker.terminated``, ``.hired``, ``.transferred`` and ``.updated``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from lifecycle.exceptions import PayloadError, SignatureError
from lifecycle.hr.common import Context, hmac_digest, json_object, lowered, same_base64
from lifecycle.hr.common import signed_instant as _signed_instant
from lifecycle.hr.event import Delivery, HrEvent, HrEventType, check_worker_id, payload_digest
from lifecycle.validation import summary

#: The content types this sender posts (any other is a 415).
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


def _key(ctx: Context) -> bytes:
    secret = ctx.secret().get_secret_value()
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("the configured Standard Webhooks secret is not base64") from exc


def verify(ctx: Context, body: bytes, headers: Mapping[str, str]) -> str:
    """Check the signature and timestamp; return the ``webhook-id`` (the source event id)."""
    lowered_headers = lowered(headers)
    event_id = lowered_headers.get("webhook-id", "")
    stamp = lowered_headers.get("webhook-timestamp", "")
    signatures = lowered_headers.get("webhook-signature", "")
    if not event_id or not stamp or not signatures:
        raise SignatureError(
            "webhook-id, webhook-timestamp and webhook-signature headers are required"
        )
    if not 0 < len(event_id) <= 200:
        raise SignatureError("webhook-id header must be 1-200 characters")
    if not stamp.isdigit():
        raise SignatureError("webhook signature header is malformed: webhook-timestamp")
    _signed_instant(stamp, ctx, "webhook-timestamp")
    expected = hmac_digest(_key(ctx), f"{event_id}.{stamp}.".encode() + body)
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and same_base64(expected, value):
            return event_id
    raise SignatureError("webhook signature rejected: no v1 signature matches the body")


def parse(ctx: Context, body: bytes, headers: Mapping[str, str]) -> Delivery:
    event_id = verify(ctx, body, headers)
    try:
        parsed = _Body.model_validate(json_object(body, "HR event"))
    except ValidationError as exc:
        raise PayloadError(f"body does not match the HR event schema: {summary(exc)}") from exc
    data = parsed.data
    event = HrEvent(
        source=ctx.name,
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
        label=parsed.type,
    )
    return Delivery(items=(event,))
