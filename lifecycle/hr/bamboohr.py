"""BambooHR webhooks: event-based (recommended) and field-based, each as JSON or form post.

Pages: https://documentation.bamboohr.com/docs/webhooks (Security),
https://documentation.bamboohr.com/docs/event-based-webhooks,
https://documentation.bamboohr.com/docs/field-based-webhooks,
https://documentation.bamboohr.com/reference/employee-updated-webhook,
https://documentation.bamboohr.com/reference/get-employee.

Authenticity: ``X-BambooHR-Signature`` is the hex HMAC-SHA256, keyed with the webhook's private
key, of the raw body followed by the ``X-BambooHR-Timestamp`` header value; the timestamp
(Unix seconds or ISO 8601) must be within ``tolerance_seconds`` of now.

Event-based bodies (``{"type": "employee.updated", "timestamp": ..., "data": {"companyId",
"employeeId", "changedFields": [...]}}``, or ``type=...&data[employeeId]=...`` as a form) carry
no field values: for ``employee.created`` and a relevant ``employee.updated`` the employee is
read through the API (employment status, termination and hire dates, job, email) before
deciding. ``employee.deleted`` is a termination at once (the record can no longer be read).
An update whose changed fields matter to nothing is ``ignored`` without a look-up.

Field-based bodies (``{"employees": [{"id", "action", "timestamp", "changedFields",
"fields"}]}``, or ``employees[<id>][...]`` as a form) carry one entry per employee, each its
own inbox row; field names are BambooHR's English names unless ``field_aliases`` says
otherwise. An entry is decided from its own values; if a value the decision needs was not
posted, the employee is read through the API as for event-based updates.

Decisions: an employment status in ``terminated_statuses`` (set by a change of status or
termination date) is a termination effective at the termination date (date-only: the start of
that day in ``[service] timezone``; BambooHR fires history-tracked changes when they take
effect, so a date in the past means at once); a created employee is a hire (at the hire date);
a change of job title, department, division, location or the job code field is a transfer; a
change of work email or name refreshes the roster (an ``update``). BambooHR sends no event id:
each event's id is the SHA-256 of what it says and when it happened (its own ``timestamp``;
the signed header timestamp where the body has none), so a re-delivery maps to the same row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

import httpx

from lifecycle.exceptions import PayloadError, SignatureError
from lifecycle.hr.bamboohr_api import EMPLOYEE_ID, BambooHrClient
from lifecycle.hr.common import (
    Context,
    as_list,
    content_type,
    form_fields,
    hmac_digest,
    json_object,
    lowered,
    parse_instant,
    same_hex,
    signed_instant,
    start_of,
    text_or_none,
)
from lifecycle.hr.event import (
    Delivery,
    HrEvent,
    HrEventType,
    Ignored,
    Item,
    Lookup,
    canonical_digest,
    derived_id,
    payload_digest,
)
from lifecycle.secrets import resolve_secret

#: The content types this sender posts (any other is a 415).
MEDIA_TYPES = frozenset({"application/json", "application/x-www-form-urlencoded"})
Kind = Literal["created", "updated", "deleted"]

#: Meaning -> (API alias, BambooHR's English field name).
FIELDS: Mapping[str, tuple[str, str]] = {
    "employment_status": ("employmentHistoryStatus", "Employment Status"),
    "status": ("status", "Status"),
    "termination_date": ("terminationDate", "Termination Date"),
    "hire_date": ("hireDate", "Hire Date"),
    "work_email": ("workEmail", "Work Email"),
    "job_title": ("jobTitle", "Job Title"),
    "department": ("department", "Department"),
    "division": ("division", "Division"),
    "location": ("location", "Location"),
    "first_name": ("firstName", "First Name"),
    "last_name": ("lastName", "Last Name"),
    "employee_number": ("employeeNumber", "Employee #"),
}
#: Older alias some accounts still monitor for the employment status.
EXTRA_ALIASES: Mapping[str, str] = {"employmentStatus": "employment_status"}
STATUS = frozenset({"employment_status", "status", "termination_date"})
TRANSFER = frozenset({"job_title", "department", "division", "location", "job_code"})
ROSTER = frozenset({"work_email", "first_name", "last_name", "employee_number"})
EVENT_TYPES: Mapping[str, Kind] = {
    "employee.created": "created",
    "employee.updated": "updated",
    "employee.update": "updated",
    "employee.deleted": "deleted",
}
ACTIONS: Mapping[str, Kind] = {"created": "created", "updated": "updated", "deleted": "deleted"}


# ---------------------------------------------------------------------- authenticity


def verify(ctx: Context, body: bytes, headers: Mapping[str, str]) -> str:
    """Check signature and timestamp; return the timestamp header as sent."""
    lowered_headers = lowered(headers)
    signature = lowered_headers.get("x-bamboohr-signature", "")
    stamp = lowered_headers.get("x-bamboohr-timestamp", "")
    if not signature or not stamp:
        raise SignatureError("X-BambooHR-Signature and X-BambooHR-Timestamp are required")
    signed_instant(stamp, ctx, "X-BambooHR-Timestamp")
    expected = hmac_digest(ctx.secret(), body + stamp.encode())
    if not same_hex(expected, signature.removeprefix("sha256=")):
        raise SignatureError("X-BambooHR-Signature does not match the body")
    return stamp


# ---------------------------------------------------------------------- field names


def _names(ctx: Context) -> dict[str, str]:
    """Every name a payload may use for a field -> its meaning."""
    names: dict[str, str] = dict(EXTRA_ALIASES)
    for meaning, (alias, english) in FIELDS.items():
        names[alias] = meaning
        names[english] = meaning
        names[english.casefold()] = meaning
    job_code = ctx.source.job_code_field
    if job_code != "jobTitle":
        names[job_code] = "job_code"
    for meaning, name in ctx.source.field_aliases.items():
        names[name] = meaning
        names[name.casefold()] = meaning
    return names


def _deleted(
    ctx: Context,
    event_id: str,
    employee_id: str,
    digest: str,
    occurred_at: datetime | None,
    label: str,
) -> HrEvent:
    """An ``employee.deleted`` (either webhook style): a termination, decided without a read."""
    return HrEvent(
        source=ctx.name,
        event_id=event_id,
        type=HrEventType.TERMINATION,
        worker_id=employee_id,
        person_id=employee_id,
        payload_sha256=digest,
        occurred_at=occurred_at,
        reason="employee record deleted in BambooHR",
        label=label,
    )


def _meanings(changed: Iterable[object], ctx: Context) -> set[str]:
    names = _names(ctx)
    found: set[str] = set()
    for name in changed:
        if isinstance(name, str):
            meaning = names.get(name) or names.get(name.casefold())
            if meaning:
                found.add(meaning)
    return found


def _record(values: Mapping[str, Any], ctx: Context) -> dict[str, str | None]:
    """Field values (API aliases, English names or configured aliases) by meaning."""
    names = _names(ctx)
    record: dict[str, str | None] = {}
    for name, raw in values.items():
        meaning = names.get(name) or names.get(name.casefold())
        if meaning is None:
            continue
        value = raw.get("value") if isinstance(raw, dict) else raw  # {"value": ...} variants
        record[meaning] = text_or_none(value)
    if "job_code" not in record and ctx.source.job_code_field == "jobTitle":
        record["job_code"] = record.get("job_title")
    return record


def api_fields(ctx: Context) -> list[str]:
    fields = [alias for alias, _ in FIELDS.values()]
    if ctx.source.job_code_field not in fields:
        fields.append(ctx.source.job_code_field)
    return fields


# ---------------------------------------------------------------------- decisions


def _terminated(record: Mapping[str, str | None], ctx: Context) -> bool:
    statuses = {s.casefold() for s in ctx.source.terminated_statuses}
    employment = (record.get("employment_status") or "").casefold()
    if employment in statuses:
        return True
    ended = start_of(record.get("termination_date"), ctx, "terminationDate")
    return (record.get("status") or "").casefold() == "inactive" and (
        ended is not None and ended <= ctx.now
    )


def _needs(kind: Kind, changed: set[str]) -> set[str]:
    """The values a decision on this change needs."""
    if kind == "created":
        return {"work_email", "hire_date", "job_code"}
    needed: set[str] = set()
    if changed & STATUS:
        needed |= {"employment_status", "status", "termination_date"}
    if changed & TRANSFER:
        needed |= {"job_code"}
    if changed & ROSTER:
        needed |= changed & ROSTER
    return needed


def decide(
    ctx: Context,
    *,
    kind: Kind,
    employee_id: str,
    changed: set[str],
    record: Mapping[str, str | None],
    event_id: str,
    payload_sha256: str,
    occurred_at: datetime | None,
    label: str,
) -> HrEvent | Ignored:
    """What an employee's change means, given its current values (pure)."""
    number = record.get("employee_number")
    first, last = record.get("first_name"), record.get("last_name")
    common: dict[str, Any] = {
        "source": ctx.name,
        "event_id": event_id,
        "worker_id": number or employee_id,
        "aliases": (employee_id,) if number and number != employee_id else (),
        "person_id": employee_id,
        "payload_sha256": payload_sha256,
        "occurred_at": occurred_at,
        "email": record.get("work_email"),
        "name": " ".join(p for p in (first, last) if p) or None,
        "label": label,
    }

    def ignored(reason: str) -> Ignored:
        return Ignored(ctx.name, event_id, payload_sha256, employee_id, reason, label=label)

    if kind == "created":
        if _terminated(record, ctx):
            return ignored("created with a terminated employment status (a historical record)")
        return HrEvent(
            type=HrEventType.HIRE,
            effective_at=start_of(record.get("hire_date"), ctx, "hireDate"),
            job_code=record.get("job_code"),
            **common,
        )
    if changed & STATUS and _terminated(record, ctx):
        return HrEvent(
            type=HrEventType.TERMINATION,
            effective_at=start_of(record.get("termination_date"), ctx, "terminationDate"),
            reason=f"BambooHR employment status {record.get('employment_status') or 'Inactive'}",
            **common,
        )
    if changed & TRANSFER:
        return HrEvent(type=HrEventType.TRANSFER, job_code=record.get("job_code"), **common)
    if changed & ROSTER:
        return HrEvent(type=HrEventType.UPDATE, **common)
    if changed & STATUS:
        status = record.get("employment_status") or record.get("status") or "unknown"
        return ignored(f"employment status is now {status!r}, which is not a termination")
    return ignored("no changed field matters to access (status, job, email or name)")


def _lookup(
    ctx: Context,
    *,
    kind: Kind,
    employee_id: str,
    changed: set[str],
    event_id: str,
    payload_sha256: str,
    occurred_at: datetime | None,
    label: str,
) -> Lookup:
    return Lookup(
        source=ctx.name,
        event_id=event_id,
        payload_sha256=payload_sha256,
        person_id=employee_id,
        params={
            "kind": kind,
            "employee_id": employee_id,
            "changed": sorted(changed),
            "occurred_at": occurred_at.isoformat() if occurred_at else None,
        },
        type=HrEventType.HIRE if kind == "created" else HrEventType.UPDATE,
        termination_looking=bool(changed & STATUS),
        label=label,
    )


# ---------------------------------------------------------------------- parsing


def _employee_id(value: object) -> str:
    text = text_or_none(value, 32)
    if text is None or not EMPLOYEE_ID.match(text):
        raise PayloadError("the BambooHR employee id must be digits")
    return text


def _occurred(value: object) -> datetime | None:
    if value is None or value == "":
        return None
    return parse_instant(value, "timestamp")


def _event_based(ctx: Context, body: bytes, data: Mapping[str, Any], stamp: str) -> Item:
    kind = EVENT_TYPES.get(str(data.get("type", "")))
    if kind is None:
        raise PayloadError(
            "BambooHR event type must be employee.created, employee.updated or employee.deleted"
        )
    inner = data.get("data")
    if not isinstance(inner, dict):
        raise PayloadError("BambooHR event body needs a data object")
    employee_id = _employee_id(inner.get("employeeId"))
    raw_changed = [c for c in as_list(inner.get("changedFields")) if isinstance(c, str)]
    occurred_at = _occurred(data.get("timestamp"))
    event_id = derived_id(
        "bamboohr",
        kind,
        data.get("timestamp") or stamp,
        text_or_none(inner.get("companyId")),
        employee_id,
        sorted(raw_changed),
    )
    label = f"employee.{kind}"
    digest = payload_digest(body)
    if kind == "deleted":
        return _deleted(ctx, event_id, employee_id, digest, occurred_at, label)
    changed = _meanings(raw_changed, ctx)
    if kind == "updated" and not _needs(kind, changed):
        return Ignored(
            ctx.name, event_id, digest, employee_id, _irrelevant(raw_changed), label=label
        )
    return _lookup(
        ctx,
        kind=kind,
        employee_id=employee_id,
        changed=changed,
        event_id=event_id,
        payload_sha256=digest,
        occurred_at=occurred_at,
        label=label,
    )


def _irrelevant(changed: list[str]) -> str:
    names = ", ".join(sorted(changed)) or "(none)"
    return f"changed fields {names} matter to nothing (not status, job, email or name)"


def _entries(employees: object) -> list[tuple[str, Mapping[str, Any]]]:
    """Field-based entries as (employee id, entry): a JSON list, or a form's id-keyed map."""
    if isinstance(employees, list):
        entries = [e for e in employees if isinstance(e, dict)]
        if len(entries) != len(employees):
            raise PayloadError("every BambooHR employees entry must be an object")
        return [(_employee_id(e.get("id")), e) for e in entries]
    if isinstance(employees, dict):
        result: list[tuple[str, Mapping[str, Any]]] = []
        for key, entry in employees.items():
            if not isinstance(entry, dict):
                raise PayloadError("every BambooHR employees entry must be an object")
            result.append((_employee_id(entry.get("id", key)), entry))
        return result
    raise PayloadError("BambooHR employees must be a list")


def _field_based(ctx: Context, employees: object, stamp: str) -> list[Item]:
    items: list[Item] = []
    entries = _entries(employees)
    if not entries:
        raise PayloadError("BambooHR employees is empty")
    for employee_id, entry in entries:
        action = str(entry.get("action") or "Updated").casefold()
        kind = ACTIONS.get(action)
        if kind is None:
            raise PayloadError("BambooHR employee action must be Created, Updated or Deleted")
        raw_changed = [c for c in as_list(entry.get("changedFields")) if isinstance(c, str)]
        fields = entry.get("fields")
        values: dict[str, Any] = dict(fields) if isinstance(fields, dict) else {}
        # Form posts put the fields beside changedFields: employees[<id>][First Name]=John.
        values.update(
            {k: v for k, v in entry.items() if k not in ("id", "action", "timestamp", "fields")}
        )
        values.pop("changedFields", None)
        canonical = {"id": employee_id, **{k: entry[k] for k in sorted(entry)}}
        occurred_at = _occurred(entry.get("timestamp"))
        event_id = derived_id("bamboohr-fields", entry.get("timestamp") or stamp, canonical)
        digest = canonical_digest(canonical)
        label = f"employee_with_fields.{kind}"
        if kind == "deleted":
            items.append(_deleted(ctx, event_id, employee_id, digest, occurred_at, label))
            continue
        changed = _meanings(raw_changed, ctx)
        record = _record(values, ctx)
        needed = _needs(kind, changed)
        args: dict[str, Any] = {
            "kind": kind,
            "employee_id": employee_id,
            "changed": changed,
            "event_id": event_id,
            "payload_sha256": digest,
            "occurred_at": occurred_at,
            "label": label,
        }
        if kind == "updated" and not needed:
            items.append(
                Ignored(
                    ctx.name, event_id, digest, employee_id, _irrelevant(raw_changed), label=label
                )
            )
            continue
        present = {k for k, v in record.items() if v is not None}
        decidable = (
            needed <= present
            # A status value was posted: enough to tell a termination from anything else.
            or (kind == "updated" and changed & STATUS and _has_status(record))
        )
        items.append(decide(ctx, record=record, **args) if decidable else _lookup(ctx, **args))
    return items


def _has_status(record: Mapping[str, str | None]) -> bool:
    return record.get("employment_status") is not None or record.get("status") is not None


def parse(ctx: Context, body: bytes, headers: Mapping[str, str]) -> Delivery:
    stamp = verify(ctx, body, headers)
    kind = content_type(headers)
    if kind == "application/x-www-form-urlencoded":
        data: dict[str, Any] = form_fields(body, "BambooHR")
    else:
        data = json_object(body, "BambooHR")
    if "employees" in data:
        return Delivery(items=tuple(_field_based(ctx, data["employees"], stamp)))
    return Delivery(items=(_event_based(ctx, body, data, stamp),))


async def resolve(ctx: Context, lookup: Lookup, http: httpx.AsyncClient) -> HrEvent | Ignored:
    """Read the employee through the API and decide. Raises VendorLookupError subclasses."""
    source = ctx.source
    if source.api_key is None:  # the settings refuse a bamboohr source without one
        raise PayloadError("no api_key is configured for this BambooHR source")
    api_key = resolve_secret(
        source.api_key, allow_inline=ctx.allow_inline, what=f"[hr.sources.{ctx.name}].api_key"
    )
    client = BambooHrClient(
        source.api_url(),
        api_key,
        http,
        timeout_seconds=source.lookup_timeout_seconds,
        attempts=source.lookup_attempts,
    )
    params = lookup.params
    employee_id = str(params["employee_id"])
    answer = await client.employee(employee_id, api_fields(ctx))
    occurred = params.get("occurred_at")
    return decide(
        ctx,
        kind=params["kind"],
        employee_id=employee_id,
        changed=set(params.get("changed", [])),
        record=_record(answer, ctx),
        event_id=lookup.event_id,
        payload_sha256=lookup.payload_sha256,
        occurred_at=datetime.fromisoformat(occurred) if occurred else None,
        label=lookup.label or f"employee.{params['kind']}",
    )
