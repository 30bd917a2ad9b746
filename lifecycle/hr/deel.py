"""Deel webhooks (contractors, EOR and Global Payroll workers of staffing vendors).

Pages: https://developer.deel.com/docs/webhooks-get-started (signature, headers, payload),
https://developer.deel.com/docs/webhook-event-types,
https://developer.deel.com/api/webhooks/events (event structure),
https://developer.deel.com/api/endpoints/terminations/webhook-contract-terminated,
https://developer.deel.com/docs/event-payload-examples.

Authenticity: ``x-deel-signature`` is the hex HMAC-SHA256, keyed with the subscription's
signing key, of the string ``POST`` followed by the raw body. The body's top-level
``timestamp`` is when Deel sent the delivery (signed, being part of the body) and must be
within ``tolerance_seconds`` of now.

Body: ``{"data": {"meta": {"event_type", "event_id"?, "tracking_id", "organization_id", ...},
"resource": {...} or [{...}]}, "timestamp": "..."}``. ``contract.terminated`` (fired when a
contract's termination completes: contractor, EOR and Global Payroll) is a termination effective
at the resource's ``completion_date`` (or ``end_date``/``termination_date``); a contractor's
contract ending is a termination like any other; so is ``worker.v2.deleted``.
``contract.created`` is a hire and ``contract.amended`` (an amendment signed by both parties:
job title, seniority, scope...) a transfer (job code: the contract's ``job_title``). Anything
else is ``ignored``. The person: the contract's ``external_id`` (set it to the roster's worker id),
else the Deel worker id; then the worker's email. The source event id is ``meta.event_id``
(else ``meta.tracking_id``, else a hash of ``data``); the payload digest covers ``data`` only,
so a re-delivery with a new ``timestamp`` is the same event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lifecycle.exceptions import PayloadError, SignatureError
from lifecycle.hr.common import (
    Context,
    check_window,
    hmac_digest,
    json_object,
    lowered,
    parse_instant,
    same_hex,
    start_of,
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
MEDIA_TYPES = frozenset({"application/json"})
TYPES: Mapping[str, HrEventType] = {
    "contract.terminated": HrEventType.TERMINATION,
    "worker.v2.deleted": HrEventType.TERMINATION,
    "contract.created": HrEventType.HIRE,
    "contract.amended": HrEventType.TRANSFER,
}

#: Deel contract types that employ the worker (Employer of Record, Global Payroll); the others
#: (pay-as-you-go, fixed rate, milestones, ...) are contractors.
EMPLOYMENT_TYPES = frozenset({"eor", "global_payroll", "gp", "hris_direct_employee"})


def verify(ctx: Context, body: bytes, headers: Mapping[str, str]) -> None:
    signature = lowered(headers).get("x-deel-signature", "")
    if not signature:
        raise SignatureError("x-deel-signature is required")
    expected = hmac_digest(ctx.secret(), b"POST" + body)
    if not same_hex(expected, signature):
        raise SignatureError("x-deel-signature does not match the body")


def _first(resource: Mapping[str, Any], *paths: str) -> str | None:
    for path in paths:
        node: Any = resource
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        value = text_or_none(node)
        if value:
            return value
    return None


def _engagement(contract_type: str | None) -> str | None:
    if not contract_type:
        return None
    return "employee" if contract_type.lower() in EMPLOYMENT_TYPES else "contractor"


def _item(ctx: Context, meta: Mapping[str, Any], resource: Mapping[str, Any], n: int) -> Item:
    event_type = str(meta.get("event_type") or "")
    base_id = text_or_none(meta.get("event_id")) or text_or_none(meta.get("tracking_id"))
    digest = canonical_digest({"meta": dict(meta), "resource": dict(resource)})
    event_id = (
        (f"{base_id}#{n}" if n else base_id) if base_id else derived_id("deel", event_type, digest)
    )
    person = _first(resource, "external_id", "worker.external_id", "worker_id", "worker.id")
    email = _first(resource, "worker.email", "worker_email", "invitations.worker_email", "email")
    contract = _first(resource, "id", "contract_id")
    kind = TYPES.get(event_type)
    if kind is None:
        return Ignored(
            ctx.name,
            event_id,
            digest,
            person or contract or "",
            f"Deel {event_type or 'event'} starts nothing (terminations arrive as "
            "contract.terminated)",
            label=event_type or None,
        )
    vendor_id = _first(resource, "worker_id", "worker.id") or contract
    worker_id = person or email or contract
    if worker_id is None:
        raise PayloadError("Deel resource names no contract, worker or email")
    effective = None
    if kind is HrEventType.TERMINATION:
        when = _first(resource, "completion_date", "end_date", "termination_date")
        effective = start_of(when, ctx, "completion_date")
    return HrEvent(
        source=ctx.name,
        event_id=event_id,
        type=kind,
        worker_id=worker_id[:64],
        person_id=(vendor_id or worker_id)[:64],
        payload_sha256=digest,
        effective_at=effective,
        reason=f"Deel {event_type}"
        + (f" (contract {contract})" if contract and kind is HrEventType.TERMINATION else ""),
        job_code=_first(resource, "job_title", "jobTitle", "title")
        if kind is not HrEventType.TERMINATION
        else None,
        engagement=_engagement(_first(resource, "type", "contract_type")),
        email=email,
        name=_first(resource, "worker.full_name", "worker_name", "name"),
        label=event_type,
    )


def parse(ctx: Context, body: bytes, headers: Mapping[str, str]) -> Delivery:
    verify(ctx, body, headers)
    payload = json_object(body, "Deel")
    sent = payload.get("timestamp")
    if sent is None:
        raise SignatureError("the Deel body has no timestamp (needed to refuse replays)")
    try:
        check_window(parse_instant(sent, "timestamp"), ctx, "Deel timestamp")
    except PayloadError as exc:
        raise SignatureError(exc.message) from exc
    data = payload.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("meta"), dict):
        raise PayloadError("Deel body needs data.meta")
    resource = data.get("resource")
    resources = resource if isinstance(resource, list) else [resource]
    if not resources or not all(isinstance(r, dict) for r in resources):
        raise PayloadError("Deel data.resource must be an object or a list of objects")
    meta = data["meta"]
    return Delivery(items=tuple(_item(ctx, meta, r, n) for n, r in enumerate(resources)))
