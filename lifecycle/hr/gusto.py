"""Gusto webhooks (small practices' payroll: employees and contractors).

Pages: https://docs.gusto.com/embedded-payroll/docs/webhooks (subscription, verification
token, ``X-Gusto-Signature``, retries), https://docs.gusto.com/embedded-payroll/docs/employee-events,
https://docs.gusto.com/embedded-payroll/docs/contractor-events and the changelog entry "Added
contractor lifecycle webhooks for future-dated transitions".

Subscription handshake: when a subscription is created Gusto first POSTs
``{"verification_token": "..."}`` (unsigned: nothing is shared yet). That token is the key of
every later signature, and the subscriber proves control of the URL by sending it back
(``PUT /v1/webhook_subscriptions/{uuid}/verify``). The intake keeps the token (see
``docs/hr-sources.md``) and answers 200; nothing is stored in the inbox.

Authenticity: ``X-Gusto-Signature`` is the hex HMAC-SHA256 of the raw body keyed with the
verification token (the source's ``secret``). Gusto signs no delivery time and retries a
failed delivery up to 16 times with exponential backoff, keeping its body: there is no
timestamp window, and a replay is answered from the inbox (idempotent on the event ``uuid``),
never a second run.

Events: ``employee.termination_effective`` (also spelt ``employee.terminated_effective``) and
``contractor.deactivation_effective`` fire when the change takes effect (the day after the last
day, 00:00 PT): terminations, at once. ``employee.terminated`` and ``contractor.deactivated``
fire when the change is recorded, possibly future-dated: ``ignored`` (the effective event
follows) unless ``effective_events_only = false``. ``employee.deleted`` and
``contractor.deleted`` are terminations. ``employee.created``, ``contractor.created`` and the
``*.rehire_effective`` / ``contractor.reactivation_effective`` events are hires. Job changes
(``EmployeeJobCompensation``) carry no job code: ``ignored`` with that reason. The person is the
entity's Gusto UUID (import the roster with it as worker id, or link it by an earlier event).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from lifecycle.exceptions import PayloadError, SignatureError
from lifecycle.hr.common import (
    Context,
    hmac_digest,
    json_object,
    lowered,
    parse_instant,
    same_hex,
    text_or_none,
)
from lifecycle.hr.event import (
    Delivery,
    Handshake,
    HrEvent,
    HrEventType,
    Ignored,
    Item,
    derived_id,
    payload_digest,
)

#: The content types this sender posts (any other is a 415).
MEDIA_TYPES = frozenset({"application/json"})
EFFECTIVE_TERMINATIONS = frozenset(
    {
        "employee.termination_effective",
        "employee.terminated_effective",
        "contractor.deactivation_effective",
        "employee.deleted",
        "contractor.deleted",
    }
)
RECORDED_TERMINATIONS = frozenset({"employee.terminated", "contractor.deactivated"})
HIRES = frozenset(
    {
        "employee.created",
        "contractor.created",
        "employee.rehire_effective",
        "contractor.reactivation_effective",
    }
)
RECORDED_HIRES = frozenset({"employee.rehired", "contractor.reactivated"})
CANCELLED = frozenset(
    {
        "employee.termination_cancelled",
        "contractor.deactivation_cancelled",
        "employee.rehire_cancelled",
        "contractor.reactivation_cancelled",
    }
)


def verify(ctx: Context, body: bytes, headers: Mapping[str, str]) -> None:
    signature = lowered(headers).get("x-gusto-signature", "")
    if not signature:
        raise SignatureError("X-Gusto-Signature is required")
    if not same_hex(hmac_digest(ctx.secret(), body), signature):
        raise SignatureError("X-Gusto-Signature does not match the body")


def _handshake(payload: Mapping[str, Any]) -> Handshake | None:
    if "verification_token" not in payload or "event_type" in payload:
        return None
    token = payload["verification_token"]
    if not isinstance(token, str) or not 0 < len(token) <= 200 or not token.isprintable():
        raise PayloadError("Gusto verification_token must be a short string")
    subscription = text_or_none(payload.get("webhook_subscription_uuid"), 64)
    return Handshake(
        status_code=200,
        body={"status": "verification token received"},
        note="Gusto subscription verification token received"
        + (f" for subscription {subscription}" if subscription else ""),
        token=SecretStr(token),
    )


def _person(payload: Mapping[str, Any]) -> str:
    entity = str(payload.get("entity_type") or "")
    if entity in ("Employee", "Contractor"):
        uuid = text_or_none(payload.get("entity_uuid"), 64)
    else:
        refs = payload.get("references")
        refs = refs if isinstance(refs, dict) else {}
        uuid = text_or_none(refs.get("employee_uuid"), 64) or text_or_none(
            refs.get("contractor_uuid"), 64
        )
    return uuid or ""


def _item(ctx: Context, payload: Mapping[str, Any], body: bytes) -> Item:
    event_type = payload.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise PayloadError("Gusto event needs an event_type")
    uuid = text_or_none(payload.get("uuid"), 64)
    digest = payload_digest(body)
    event_id = uuid or derived_id("gusto", event_type, digest)
    person = _person(payload)
    occurred_at = (
        parse_instant(payload["timestamp"], "timestamp") if "timestamp" in payload else None
    )
    contractor = event_type.startswith("contractor.")

    def ignored(reason: str, kind: HrEventType = HrEventType.UPDATE) -> Ignored:
        return Ignored(ctx.name, event_id, digest, person, reason, type=kind, label=event_type)

    def event(kind: HrEventType, reason: str | None = None) -> HrEvent:
        if not person:
            raise PayloadError(f"Gusto {event_type} names no employee or contractor")
        return HrEvent(
            source=ctx.name,
            event_id=event_id,
            type=kind,
            worker_id=person,
            person_id=person,
            payload_sha256=digest,
            occurred_at=occurred_at,
            reason=reason,
            engagement="contractor" if contractor else "employee",
            label=event_type,
        )

    recorded_acts = not ctx.source.effective_events_only
    if event_type in EFFECTIVE_TERMINATIONS or (
        recorded_acts and event_type in RECORDED_TERMINATIONS
    ):
        return event(HrEventType.TERMINATION, f"Gusto {event_type}")
    if event_type in RECORDED_TERMINATIONS:
        return ignored(
            "termination recorded in Gusto; access ends when its *_effective event arrives "
            "(the day after the last day)",
            HrEventType.TERMINATION,
        )
    if event_type in HIRES or (recorded_acts and event_type in RECORDED_HIRES):
        return event(HrEventType.HIRE)
    if event_type in RECORDED_HIRES:
        return ignored("rehire recorded in Gusto; access returns on its *_effective event")
    if event_type in CANCELLED:
        return ignored("a pending change was cancelled in Gusto before it took effect")
    if str(payload.get("entity_type")) == "EmployeeJobCompensation":
        return ignored(
            "job change in Gusto: its webhooks carry no job code; refresh the roster "
            "(lifecycle hr import) to move the worker",
            HrEventType.TRANSFER,
        )
    return ignored(f"Gusto {event_type} starts nothing")


def parse(ctx: Context, body: bytes, headers: Mapping[str, str]) -> Delivery:
    payload = json_object(body, "Gusto")
    handshake = _handshake(payload)
    if handshake is not None:
        return Delivery(handshake=handshake)
    verify(ctx, body, headers)
    return Delivery(items=(_item(ctx, payload, body),))
