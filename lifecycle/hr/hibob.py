"""HiBob (Bob) webhooks, v2.

Pages: https://apidocs.hibob.com/docs/working-with-webhooks (subscription, the "Ping test"
connection check, ``Bob-Signature``), https://apidocs.hibob.com/docs/employee-data-webhooks,
https://apidocs.hibob.com/reference/post_webhook_employee-left,
https://apidocs.hibob.com/reference/post_webhook_employee-access-revoked-immediately,
https://apidocs.hibob.com/reference/post_webhook_employee-deleted.

Connection check: Bob first POSTs the string ``Ping test`` (then ``{"text": "Ping test"}``) and
expects a 2xx at once; it is answered 200 and nothing is stored (it carries no data).

Authenticity: ``Bob-Signature`` is the base64 HMAC-SHA512 of the raw body keyed with the
webhook's secret. Bob signs no delivery time and retries failed deliveries: there is no
timestamp window, and a replay is answered from the inbox (the event id is a hash of the
event's type, time and data), never a second run.

Body: ``{"companyId", "type", "triggeredBy", "triggeredAt", "version": "v2", "data":
{"employeeId", ...}}``. ``employee.left`` (terminated or garden leave, at midnight on the
effective date in the site's time zone) and ``employee.access.revoked.immediately`` (a
termination flow completed with "revoke access immediately") are terminations at once;
``employee.deleted`` is a termination (its payload keeps the email); ``employee.joined`` and
``employee.created`` are hires. v2 payloads carry identifiers only: role changes
(``table.entry.*`` on the ``work`` table, ``employee.updated``) carry no job code and are
``ignored`` with that reason. The person is Bob's employee id, then the email when given.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lifecycle.exceptions import PayloadError, SignatureError
from lifecycle.hr.common import (
    Context,
    hmac_digest,
    json_object,
    lowered,
    parse_instant,
    same_base64,
    text_or_none,
)
from lifecycle.hr.event import (
    Delivery,
    Handshake,
    HrEvent,
    HrEventType,
    Ignored,
    Item,
    canonical_digest,
    derived_id,
)

#: The content types this sender posts (any other is a 415).
MEDIA_TYPES = frozenset({"application/json", "text/plain"})
TERMINATIONS = frozenset(
    {"employee.left", "employee.access.revoked.immediately", "employee.deleted"}
)
HIRES = frozenset({"employee.joined", "employee.created"})


def verify(ctx: Context, body: bytes, headers: Mapping[str, str]) -> None:
    signature = lowered(headers).get("bob-signature", "")
    if not signature:
        raise SignatureError("Bob-Signature is required")
    if not same_base64(hmac_digest(ctx.secret(), body, "sha512"), signature):
        raise SignatureError("Bob-Signature does not match the body")


def _ping(body: bytes) -> Handshake | None:
    text = body.strip()
    if text in (b"Ping test", b'"Ping test"') or text.replace(b" ", b"") == b'{"text":"Pingtest"}':
        return Handshake(200, {"status": "ok"}, "HiBob connection check (Ping test)")
    return None


def _item(ctx: Context, payload: Mapping[str, Any]) -> Item:
    event_type = payload.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise PayloadError("HiBob event needs a type")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise PayloadError("HiBob event needs a data object")
    digest = canonical_digest(
        {"type": event_type, "triggeredAt": payload.get("triggeredAt"), "data": data}
    )
    event_id = derived_id(
        "hibob", payload.get("companyId"), event_type, payload.get("triggeredAt"), data
    )
    person = text_or_none(data.get("employeeId"), 64) or ""
    email = text_or_none(data.get("email")) or text_or_none(data.get("workEmail"))
    triggered = payload.get("triggeredAt")
    occurred_at = parse_instant(triggered, "triggeredAt") if triggered else None

    if event_type in TERMINATIONS or event_type in HIRES:
        if not person and not email:
            raise PayloadError(f"HiBob {event_type} names no employee")
        kind = HrEventType.TERMINATION if event_type in TERMINATIONS else HrEventType.HIRE
        return HrEvent(
            source=ctx.name,
            event_id=event_id,
            type=kind,
            worker_id=person or (email or ""),
            person_id=person or None,
            payload_sha256=digest,
            occurred_at=occurred_at,
            reason=f"HiBob {event_type}" if kind is HrEventType.TERMINATION else None,
            email=email,
            label=event_type,
        )
    if event_type.startswith("table.entry.") and data.get("tableId") == "work":
        reason = (
            "role change in Bob: v2 webhooks carry no job code; refresh the roster "
            "(lifecycle hr import) to move the worker"
        )
        kind = HrEventType.TRANSFER
    elif event_type == "employee.inactivated":
        reason = "inactivated (leave or termination); terminations arrive as employee.left"
        kind = HrEventType.UPDATE
    else:
        reason = f"HiBob {event_type} starts nothing"
        kind = HrEventType.UPDATE
    return Ignored(ctx.name, event_id, digest, person, reason, type=kind, label=event_type)


def parse(ctx: Context, body: bytes, headers: Mapping[str, str]) -> Delivery:
    ping = _ping(body)
    if ping is not None:
        return Delivery(handshake=ping)
    verify(ctx, body, headers)
    return Delivery(items=(_item(ctx, json_object(body, "HiBob")),))
