"""A small stateful FHIR R4 server (Practitioner, PractitionerRole) served through respx.

Resources and Bundles are shaped like the FHIR R4 examples (``Practitioner/example``,
``PractitionerRole/example``, searchset Bundles with ``link`` and ``search.mode``); errors are
OperationOutcomes. Updates honour ``If-Match: W/"<versionId>"`` (412 on mismatch) and bump
``meta.versionId`` and ``meta.lastUpdated``, as a versioning server does.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import respx

BASE = "https://emr.example.org/apis/default/fhir"
TOKEN = "fhir-access-token"
SYSTEM = "https://example.org/fhir/sid/workforce-id"

_ids = itertools.count(1)


def outcome(status: int, code: str, diagnostics: str, **headers: str) -> httpx.Response:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }
    return httpx.Response(
        status, json=body, headers={"Content-Type": "application/fhir+json", **headers}
    )


def _split_token(token: str) -> tuple[str | None, str]:
    """``system|value`` with FHIR escapes (``\\|``, ``\\,``, ``\\$``, ``\\\\``) undone."""
    parts = re.split(r"(?<!\\)\|", token, maxsplit=1)

    def unescape(text: str) -> str:
        return re.sub(r"\\([\\,|$])", r"\1", text)

    if len(parts) == 1:
        return None, unescape(parts[0])
    return unescape(parts[0]), unescape(parts[1])


@dataclass
class FakeFhir:
    practitioners: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    token_requests: list[httpx.Request] = field(default_factory=list)
    fail_next: list[httpx.Response | Exception] = field(default_factory=list)
    fail_next_put: list[httpx.Response] = field(default_factory=list)
    """Answers for the next PUTs only (the conditional writes)."""
    """Answers (or exceptions) for the next calls, before the fake's own logic."""
    before_put: Callable[[], httpx.Response | None] | None = None
    """Runs before each PUT is applied (someone else saving in between); a response it returns
    is answered instead of applying the PUT."""

    def add_practitioner(
        self, identifier: str, *, email: str | None = None, roles: tuple[str, ...] = ()
    ) -> str:
        pid = f"9{next(_ids):07d}-0000-4000-8000-{next(_ids):012d}"
        resource: dict[str, Any] = {
            "resourceType": "Practitioner",
            "id": pid,
            "meta": {"versionId": "1", "lastUpdated": "2026-01-02T10:00:00+00:00"},
            "identifier": [
                {
                    "use": "official",
                    "system": "http://hl7.org/fhir/sid/us-npi",
                    "value": "1234567893",
                },
                {"system": SYSTEM, "value": identifier},
            ],
            "active": True,
            "name": [{"use": "official", "family": "Lee", "given": ["Ann"], "prefix": ["Ms."]}],
            "telecom": [
                {"system": "email", "value": email or f"{identifier}@example.org", "use": "work"}
            ],
        }
        self.practitioners[pid] = resource
        for code in roles:
            rid = f"role-{next(_ids)}"
            self.roles[rid] = {
                "resourceType": "PractitionerRole",
                "id": rid,
                "meta": {"versionId": "1", "lastUpdated": "2026-01-02T10:00:00+00:00"},
                "active": True,
                "period": {"start": "2026-01-01"},
                "practitioner": {"reference": f"Practitioner/{pid}", "display": "Ann Lee"},
                "organization": {"reference": "Organization/f001"},
                "code": [
                    {
                        "coding": [
                            {"system": "https://example.org/fhir/CodeSystem/va-roles", "code": code}
                        ]
                    }
                ],
            }
        return pid

    def active_roles(self, pid: str) -> set[str]:
        return {
            r["code"][0]["coding"][0]["code"]
            for r in self.roles.values()
            if r["practitioner"]["reference"] == f"Practitioner/{pid}" and r["active"]
        }

    @property
    def router(self) -> respx.MockRouter:
        router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        router.route(host="emr.example.org").mock(side_effect=self.handle)
        return router

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/default/token":  # OpenEMR's token endpoint
            self.token_requests.append(request)
            form = request.content.decode()
            if "grant_type=client_credentials" not in form or not request.headers.get(
                "Authorization", ""
            ).startswith("Basic "):
                return httpx.Response(400, json={"error": "invalid_request"})
            return httpx.Response(
                200,
                json={
                    "token_type": "Bearer",
                    "expires_in": 3599,
                    "access_token": TOKEN,
                    "scope": "system/Practitioner.write system/PractitionerRole.write",
                },
            )
        self.requests.append(request)
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return outcome(401, "login", "Invalid or expired access token")
        if request.method == "PUT" and self.fail_next_put:
            return self.fail_next_put.pop(0)
        if self.fail_next:
            failure = self.fail_next.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        path = request.url.path.removeprefix("/apis/default/fhir")
        match = re.fullmatch(r"/(Practitioner|PractitionerRole)", path)
        if match and request.method == "GET":
            return self._search(request, match.group(1))
        if match := re.fullmatch(r"/(Practitioner|PractitionerRole)/([^/]+)", path):
            store = self.practitioners if match.group(1) == "Practitioner" else self.roles
            rid = match.group(2)
            if rid not in store:
                return outcome(404, "not-found", f"Resource {match.group(1)}/{rid} is not known")
            if request.method == "GET":
                return self._resource(store[rid])
            if request.method == "PUT":
                if self.before_put is not None and (answer := self.before_put()) is not None:
                    return answer
                return self._update(request, store, rid)
        return outcome(404, "not-supported", f"Unknown endpoint {request.method} {path}")

    def _resource(self, resource: dict[str, Any], status: int = 200) -> httpx.Response:
        version = resource["meta"]["versionId"]
        return httpx.Response(
            status,
            json=resource,
            headers={
                "ETag": f'W/"{version}"',
                "Content-Type": "application/fhir+json",
                "X-Request-Id": f"req-{next(_ids)}",
            },
        )

    def _update(
        self, request: httpx.Request, store: dict[str, dict[str, Any]], rid: str
    ) -> httpx.Response:
        current = store[rid]
        if_match = request.headers.get("If-Match")
        if if_match and if_match != f'W/"{current["meta"]["versionId"]}"':
            return outcome(412, "conflict", f"Version {if_match} is not the current version")
        body = json.loads(request.content)
        if body.get("id") != rid or body.get("resourceType") != current["resourceType"]:
            return outcome(400, "invalid", "Resource id in body does not match the URL")
        body["meta"] = {
            "versionId": str(int(current["meta"]["versionId"]) + 1),
            "lastUpdated": datetime.now(UTC).isoformat(),
        }
        store[rid] = body
        return self._resource(body)

    def _search(self, request: httpx.Request, resource_type: str) -> httpx.Response:
        params = request.url.params
        if resource_type == "Practitioner":
            token = params.get("identifier", "")
            system, value = _split_token(token)
            found = [
                p
                for p in self.practitioners.values()
                if any(
                    (system is None or i.get("system") == system) and i.get("value") == value
                    for i in p["identifier"]
                )
            ]
        else:
            ref = params.get("practitioner", "")
            found = [r for r in self.roles.values() if r["practitioner"]["reference"] == ref]
        count = int(params.get("_count", "20"))
        offset = int(params.get("_getpagesoffset", "0"))
        page = found[offset : offset + count]
        self_url = str(request.url)
        links = [{"relation": "self", "url": self_url}]
        if offset + count < len(found):
            query = {k: v for k, v in params.items() if k != "_getpagesoffset"}
            query["_getpagesoffset"] = str(offset + count)
            links.append(
                {"relation": "next", "url": str(httpx.URL(f"{BASE}/{resource_type}", params=query))}
            )
        bundle = {
            "resourceType": "Bundle",
            "id": f"bundle-{next(_ids)}",
            "meta": {"lastUpdated": datetime.now(UTC).isoformat()},
            "type": "searchset",
            "total": len(found),
            "link": links,
            "entry": [
                {
                    "fullUrl": f"{BASE}/{resource_type}/{r['id']}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in page
            ],
        }
        return httpx.Response(200, json=bundle, headers={"Content-Type": "application/fhir+json"})
