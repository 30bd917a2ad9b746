"""BambooHR webhooks: ``X-BambooHR-Signature`` = hex HMAC-SHA256 of (raw body + timestamp),
``X-BambooHR-Timestamp`` in Unix seconds, rejected when more than the tolerance away from now.

Body: ``{"type": "employee.updated", "data": {"employeeId": ..., "changedFields": [...],
"fields": {"employmentStatus": "Terminated", "terminationDate": "2026-11-25", ...}}}``.
``employee.deleted`` and an update to a terminated status are terminations; ``employee.created``
is a hire. BambooHR sends no event id, so the id is the SHA-256 of timestamp and body: a
re-delivery of the same delivery maps to the same run.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lifecycle.exceptions import PayloadError, SignatureError
from lifecycle.hr.event import HrEvent, HrEventType, check_worker_id, payload_digest
from lifecycle.secrets import resolve_secret
from lifecycle.settings import HrSourceSettings
from lifecycle.validation import parse_json_body

MEDIA_TYPES = frozenset({"application/json"})
TERMINATED_STATUSES = frozenset({"terminated", "inactive"})


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    employee_id: str = Field(alias="employeeId", min_length=1, max_length=64)
    changed_fields: list[str] = Field(default_factory=list, alias="changedFields")
    fields: dict[str, Any] = Field(default_factory=dict)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["employee.created", "employee.updated", "employee.deleted"]
    data: _Data


def verify(
    source: HrSourceSettings,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    allow_inline: bool,
) -> str:
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get("x-bamboohr-signature")
    stamp = lowered.get("x-bamboohr-timestamp")
    if not signature or not stamp:
        raise SignatureError("X-BambooHR-Signature and X-BambooHR-Timestamp are required")
    try:
        sent = datetime.fromtimestamp(int(stamp), UTC)
    except (ValueError, OverflowError, OSError) as exc:
        raise SignatureError("X-BambooHR-Timestamp is not a Unix time") from exc
    if abs((now - sent).total_seconds()) > source.tolerance_seconds:
        raise SignatureError(
            f"X-BambooHR-Timestamp is more than {source.tolerance_seconds} s from now"
        )
    secret = resolve_secret(source.secret, allow_inline=allow_inline, what="HR source secret")
    expected = hmac.new(
        secret.get_secret_value().encode(), body + stamp.encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, signature.strip().lower()):
        raise SignatureError("X-BambooHR-Signature does not match the body")
    return hashlib.sha256(stamp.encode() + b"." + body).hexdigest()


def _effective(fields: Mapping[str, Any]) -> datetime | None:
    raw = fields.get("terminationDate")
    if not raw:
        return None
    try:
        day = date.fromisoformat(str(raw))
    except ValueError as exc:
        raise PayloadError("fields.terminationDate must be YYYY-MM-DD") from exc
    return datetime.combine(day, time.min, UTC)


def parse(
    name: str,
    source: HrSourceSettings,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
    allow_inline: bool,
) -> HrEvent:
    event_id = verify(source, body, headers, now, allow_inline)
    parsed = parse_json_body(_Body, body, "BambooHR")
    fields = parsed.data.fields
    status = str(fields.get("employmentStatus", "")).casefold()
    if parsed.type == "employee.deleted" or status in TERMINATED_STATUSES:
        kind = HrEventType.TERMINATION
    elif parsed.type == "employee.created":
        kind = HrEventType.HIRE
    elif "jobTitle" in parsed.data.changed_fields or "department" in parsed.data.changed_fields:
        kind = HrEventType.TRANSFER
    else:
        kind = HrEventType.UPDATE
    return HrEvent(
        source=name,
        event_id=event_id,
        type=kind,
        worker_id=check_worker_id(parsed.data.employee_id),
        payload_sha256=payload_digest(body),
        effective_at=_effective(fields) if kind is HrEventType.TERMINATION else None,
        reason=str(fields.get("terminationReason") or "")[:200] or None,  # as Standard Webhooks
        job_code=fields.get("jobCode"),
        email=fields.get("workEmail"),
        name=" ".join(p for p in (fields.get("firstName"), fields.get("lastName")) if p) or None,
    )
