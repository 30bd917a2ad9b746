"""Rippling partner webhooks. The weakest scheme of the supported sources: Rippling signs
nothing; it sends either no credentials or a static bearer token, and this source requires
the token (``Authorization: Bearer <secret>``, compared in constant time). Anyone holding the
token can post events, and a captured request can be replayed: keep the token in a secret
store, serve the endpoint over TLS only, rotate the token when staff with access leave, and
prefer a signed source where the organisation has a choice.

Pages: https://developer.rippling.com/documentation/developer-portal/v2-guides/webhooks
(form-encoded body with ``event_name``, ``company_id``, ``company_primary_email`` and the
resource ``id``; Bearer-token or unauthenticated; about five minutes' delay; one event may be
delivered more than once).

Events: ``EmployeeDeleted`` (access to the app removed: termination, access-rule change or
manual removal) and ``EmployeeTerminated`` are terminations at once; ``EmployeeCreated`` and
``EmployeeHired`` are hires; anything else is ``ignored`` (Rippling sends no field values).
Rippling sends no event id or time: an event's id is the hash of its fields and the UTC day of
receipt, so duplicates that day are answered from the inbox; a replay on a later day would
start a second (harmless, idempotent) termination of the same worker. The person is the
Rippling employee id (import the roster with it as worker id, or link it by an earlier event).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from lifecycle.exceptions import PayloadError, SignatureError
from lifecycle.hr.common import (
    Context,
    content_type,
    form_fields,
    json_object,
    lowered,
    text_or_none,
)
from lifecycle.hr.event import (
    Delivery,
    HrEvent,
    HrEventType,
    Ignored,
    Item,
    canonical_digest,
    derived_id,
)

#: The content types this sender posts (any other is a 415).
MEDIA_TYPES = frozenset({"application/x-www-form-urlencoded", "application/json"})
TERMINATIONS = frozenset({"EmployeeDeleted", "EmployeeTerminated"})
HIRES = frozenset({"EmployeeCreated", "EmployeeHired"})


def verify(ctx: Context, headers: Mapping[str, str]) -> None:
    scheme, _, token = lowered(headers).get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise SignatureError("Authorization: Bearer <token> is required")
    expected = ctx.secret().get_secret_value().encode()
    if not hmac.compare_digest(token.strip().encode(), expected):
        raise SignatureError("the bearer token is not this source's")


def _item(ctx: Context, fields: Mapping[str, Any]) -> Item:
    event_name = text_or_none(fields.get("event_name"), 100)
    if not event_name:
        raise PayloadError("Rippling event needs an event_name")
    flat = {k: text_or_none(v) for k, v in sorted(fields.items()) if not isinstance(v, dict)}
    digest = canonical_digest(flat)
    event_id = derived_id("rippling", ctx.now.date().isoformat(), flat)
    person = text_or_none(fields.get("id"), 64) or text_or_none(fields.get("employee_id"), 64)
    if event_name in TERMINATIONS or event_name in HIRES:
        if not person:
            raise PayloadError(f"Rippling {event_name} has no id")
        kind = HrEventType.TERMINATION if event_name in TERMINATIONS else HrEventType.HIRE
        return HrEvent(
            source=ctx.name,
            event_id=event_id,
            type=kind,
            worker_id=person,
            person_id=person,
            payload_sha256=digest,
            reason=f"Rippling {event_name}" if kind is HrEventType.TERMINATION else None,
            email=text_or_none(fields.get("work_email")) or text_or_none(fields.get("email")),
            label=event_name,
        )
    return Ignored(
        ctx.name,
        event_id,
        digest,
        person or "",
        f"Rippling {event_name} starts nothing (it carries no field values)",
        label=event_name,
    )


def parse(ctx: Context, body: bytes, headers: Mapping[str, str]) -> Delivery:
    verify(ctx, headers)
    if content_type(headers) == "application/json":
        fields: dict[str, Any] = json_object(body, "Rippling")
    else:
        fields = form_fields(body, "Rippling")
    return Delivery(items=(_item(ctx, fields),))
