"""Requests shaped exactly like each HR vendor's documented examples, signed as the vendor signs
them; shared by the unit tests of the adapters and the acceptance tests over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from standardwebhooks.webhooks import Webhook

# --------------------------------------------------------------------------- BambooHR
# https://documentation.bamboohr.com/docs/event-based-webhooks (JSON and form examples)
# https://documentation.bamboohr.com/docs/field-based-webhooks (JSON and form examples)
# https://documentation.bamboohr.com/docs/webhooks (Security: signature over body + timestamp)


def bamboo_event(
    employee_id: str = "67890",
    changed: tuple[str, ...] = ("employmentHistoryStatus",),
    *,
    kind: str = "employee.updated",
    timestamp: str = "2026-01-31T18:42:00+0000",
    company: str = "12345",
) -> dict[str, Any]:
    data: dict[str, Any] = {"companyId": company, "employeeId": employee_id}
    if kind == "employee.updated":
        data["changedFields"] = list(changed)
    return {"type": kind, "timestamp": timestamp, "data": data}


def bamboo_event_form(
    employee_id: str = "67890",
    changed: tuple[str, ...] = ("employmentHistoryStatus",),
    *,
    kind: str = "employee.updated",
    company: str = "12345",
) -> bytes:
    pairs = [("type", kind), ("data[companyId]", company), ("data[employeeId]", employee_id)]
    pairs += [(f"data[changedFields][{i}]", f) for i, f in enumerate(changed)]
    return urlencode(pairs).encode()


def bamboo_fields(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"employees": list(entries)}


def bamboo_entry(
    employee_id: str = "12345",
    changed: tuple[str, ...] = ("Employment Status",),
    fields: dict[str, str] | None = None,
    *,
    action: str = "Updated",
    timestamp: str = "2026-01-31T18:42:00+0000",
) -> dict[str, Any]:
    return {
        "action": action,
        "changedFields": list(changed),
        "fields": fields if fields is not None else {"Employment Status": "Terminated"},
        "id": employee_id,
        "timestamp": timestamp,
    }


def bamboo_fields_form(employee_id: str, changed: tuple[str, ...], fields: dict[str, str]) -> bytes:
    pairs = [(f"employees[{employee_id}][changedFields][{i}]", f) for i, f in enumerate(changed)]
    pairs += [(f"employees[{employee_id}][{k}]", v) for k, v in fields.items()]
    return urlencode(pairs).encode()


def bamboo_headers(
    body: bytes, secret: str, *, stamp: str | None = None, form: bool = False
) -> dict[str, str]:
    stamp = stamp if stamp is not None else str(int(datetime.now(UTC).timestamp()))
    signature = hmac.new(secret.encode(), body + stamp.encode(), hashlib.sha256).hexdigest()
    return {
        "X-BambooHR-Signature": signature,
        "X-BambooHR-Timestamp": stamp,
        "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
        "User-Agent": "BambooHR-WebHooks/1.0 (+https://www.bamboohr.com)",
    }


def bamboo_employee(
    employee_id: str = "67890",
    *,
    status: str = "Terminated",
    termination_date: str | None = "2026-11-30",
    email: str = "w0042@example.org",
    number: str | None = None,
    job_title: str = "VA-BILL",
) -> dict[str, Any]:
    """GET /api/v1/employees/{id}?fields=... as documented
    (https://documentation.bamboohr.com/reference/get-employee: a flat object of the requested
    fields beside the id); ``0000-00-00`` is BambooHR's empty date."""
    return {
        "id": employee_id,
        "employeeNumber": number,
        "firstName": "Ana",
        "lastName": "Diaz",
        "workEmail": email,
        "status": "Inactive" if status == "Terminated" else "Active",
        "employmentHistoryStatus": status,
        "terminationDate": termination_date or "0000-00-00",
        "hireDate": "2024-03-01",
        "jobTitle": job_title,
        "department": "Billing",
        "division": None,
        "location": "Remote",
    }


# --------------------------------------------------------------------------- Deel
# https://developer.deel.com/docs/webhooks-get-started (x-deel-signature over "POST" + body)
# https://developer.deel.com/docs/event-payload-examples (data.meta / data.resource / timestamp)


def deel_terminated(
    external_id: str | None = "W0042",
    *,
    email: str = "w0042@example.org",
    completion_date: str = "2026-11-30",
    tracking_id: str = "-A3hBP_Bhn48yZWj9FHhpiAV5aM0",
    sent: datetime | None = None,
) -> dict[str, Any]:
    sent = sent or datetime.now(UTC)
    return {
        "data": {
            "meta": {
                "event_type": "contract.terminated",
                "event_type_id": 7,
                "organization_id": 112546,
                "organization_name": "Deel",
                "tracking_id": tracking_id,
            },
            "resource": {
                "id": "3w4zdd9",
                "external_id": external_id,
                "type": "pay_as_you_go_time_based",
                "status": "terminated",
                "completion_date": completion_date,
                "invitations": {"client_email": "ops@clinic.example", "worker_email": email},
            },
        },
        "timestamp": sent.isoformat().replace("+00:00", "Z"),
    }


def deel_headers(body: bytes, secret: str) -> dict[str, str]:
    signature = hmac.new(secret.encode(), b"POST" + body, hashlib.sha256).hexdigest()
    return {
        "x-deel-signature": signature,
        "x-deel-hmac-label": "lifecycle",
        "x-deel-webhook-version": "v2",
        "Content-Type": "application/json",
    }


# --------------------------------------------------------------------------- Gusto
# https://docs.gusto.com/embedded-payroll/docs/webhooks (verification_token, X-Gusto-Signature)
# https://docs.gusto.com/embedded-payroll/docs/employee-events (example payload)


def gusto_event(
    event_type: str = "employee.termination_effective",
    entity_uuid: str = "bcfc9744-0ab3-4ef3-ab0d-e728255d659c",
    *,
    uuid: str = "03ffbf0c-48a9-4f1c-932a-546413a26ad1",
    entity_type: str = "Employee",
) -> dict[str, Any]:
    return {
        "uuid": uuid,
        "event_type": event_type,
        "resource_type": "Company",
        "resource_uuid": "5df911a0-e8e9-412d-8aaf-a46ad193dd96",
        "entity_type": entity_type,
        "entity_uuid": entity_uuid,
        "timestamp": 1671058841,
    }


def gusto_headers(body: bytes, token: str) -> dict[str, str]:
    signature = hmac.new(token.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Gusto-Signature": signature, "Content-Type": "application/json"}


# --------------------------------------------------------------------------- HiBob
# https://apidocs.hibob.com/docs/working-with-webhooks (Bob-Signature: HMAC SHA512, base64)
# https://apidocs.hibob.com/reference/post_webhook_employee-left (v2 payload)


def hibob_event(
    event_type: str = "employee.left",
    employee_id: str = "3332883854254932743",
    *,
    triggered_at: str = "2026-11-30T00:00:01.915906",
    email: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"employeeId": employee_id}
    if email:
        data["email"] = email
    return {
        "companyId": 636192,
        "type": event_type,
        "triggeredBy": "system",
        "triggeredAt": triggered_at,
        "version": "v2",
        "data": data,
    }


def hibob_headers(body: bytes, secret: str) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha512).digest()
    return {"Bob-Signature": base64.b64encode(digest).decode(), "Content-Type": "application/json"}


# --------------------------------------------------------------------------- Rippling
# https://developer.rippling.com/documentation/developer-portal/v2-guides/webhooks
# (form-encoded: event_name, company_id, company_primary_email, id; Bearer token)


def rippling_event(event_name: str = "EmployeeDeleted", employee_id: str = "W0042") -> bytes:
    return urlencode(
        {
            "event_name": event_name,
            "company_id": "5f1b8f0a2c3d4e0011223344",
            "company_primary_email": "ops@clinic.example",
            "id": employee_id,
        }
    ).encode()


def rippling_headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/x-www-form-urlencoded",
    }


# --------------------------------------------------------------------------- Standard Webhooks


def standard_headers(body: bytes, secret: str, msg_id: str, at: datetime) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
        "content-type": "application/json",
    }


def dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()
