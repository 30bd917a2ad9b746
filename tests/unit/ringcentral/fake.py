"""A small stateful RingCentral, served through respx, for the connector's tests.

It keeps extensions, call queues, devices, forwarding numbers and phone numbers, and answers the
calls the connector makes with bodies shaped like RingCentral's documented responses
(``GetExtensionInfoResponse``, ``GetExtensionListResponse`` with ``paging``/``navigation``,
``DeviceResource``, ``ForwardingNumberInfo``, ``UserPhoneNumberInfo``, ``TokenInfo``,
``ApiErrorResponseModel``; 429 carries ``Retry-After`` and the ``X-Rate-Limit-*`` headers).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import respx

SERVER = "https://platform.ringcentral.com"
ACCOUNT = "37439510"
CLIENT_ID = "AZwEVwGEcfGet2PCouA7K6"
CLIENT_SECRET = "client-secret-value"
JWT = "eyJraWQiOiI4NzYyZjU5OGQwNTk0NGRiODZiZjVjYTk3ODA0NzYwOCIsInR5cCI6IkpXVCJ9.test.jwt"

_ids = itertools.count(63_000_100)


def rc_error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = {
        "errorCode": code,
        "message": message,
        "errors": [{"errorCode": code, "message": message}],
    }
    return httpx.Response(status, json=body, headers=headers)


@dataclass
class Extension:
    id: str
    email: str
    number: str
    first: str = "Ann"
    last: str = "Lee"
    status: str = "Enabled"
    ivr_pin: str | None = None
    status_info: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        uri = f"{SERVER}/restapi/v1.0/account/{ACCOUNT}/extension/{self.id}"
        data: dict[str, Any] = {
            "uri": uri,
            "id": int(self.id),
            "extensionNumber": self.number,
            "contact": {
                "firstName": self.first,
                "lastName": self.last,
                "email": self.email,
                "emailAsLoginName": True,
                "pronouncedName": {"type": "Default"},
            },
            "name": f"{self.first} {self.last}",
            "type": "User",
            "status": self.status,
            "permissions": {
                "admin": {"enabled": False},
                "internationalCalling": {"enabled": False},
            },
            "profileImage": {"uri": f"{uri}/profile-image"},
            "account": {"uri": f"{SERVER}/restapi/v1.0/account/{ACCOUNT}", "id": ACCOUNT},
            "setupWizardState": "Completed",
            "hidden": False,
        }
        if self.status_info:
            data["statusInfo"] = self.status_info
        return data


@dataclass
class FakeRingCentral:
    extensions: dict[str, Extension] = field(default_factory=dict)
    queues: dict[str, dict[str, Any]] = field(default_factory=dict)
    queue_members: dict[str, set[str]] = field(default_factory=dict)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    forwarding: dict[str, dict[str, Any]] = field(default_factory=dict)
    numbers: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    token_requests: list[httpx.Request] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    throttle: int = 0
    """How many of the next API calls answer 429."""
    per_page_cap: int = 1000

    def __post_init__(self) -> None:
        for qid, name in (("2001", "Front Desk"), ("2002", "Billing Line")):
            self.queues[qid] = {"id": qid, "name": name, "extensionNumber": "8" + qid[-2:]}
            self.queue_members[qid] = set()

    # ------------------------------------------------------------------ seeding

    def add_user(
        self,
        email: str,
        *,
        queues: tuple[str, ...] = (),
        devices: int = 0,
        forwarding: int = 0,
        loose_numbers: int = 0,
    ) -> Extension:
        ext = Extension(id=str(next(_ids)), email=email, number=str(100 + len(self.extensions)))
        self.extensions[ext.id] = ext
        for qid in queues:
            self.queue_members[qid].add(ext.id)
        for _ in range(devices):
            number_id = str(next(_ids))
            phone = f"+1650555{len(self.numbers):04d}"
            self.numbers[number_id] = {
                "id": number_id,
                "phone": phone,
                "ext": ext.id,
                "usage": "DirectNumber",
            }
            device_id = str(next(_ids))
            self.devices[device_id] = {"id": device_id, "ext": ext.id, "number": number_id}
            fid = str(next(_ids))
            self.forwarding[fid] = {
                "id": fid,
                "ext": ext.id,
                "phone": phone,
                "type": "PhoneLine",
                "device": device_id,
                "label": "Polycom VVX 411",
            }
        for n in range(forwarding):
            fid = str(next(_ids))
            self.forwarding[fid] = {
                "id": fid,
                "ext": ext.id,
                "phone": f"+1760555{n:04d}",
                "type": "Mobile",
                "device": None,
                "label": "Mobile",
            }
        for _ in range(loose_numbers):
            number_id = str(next(_ids))
            self.numbers[number_id] = {
                "id": number_id,
                "phone": f"+1415555{len(self.numbers):04d}",
                "ext": ext.id,
                "usage": "DirectNumber",
            }
        return ext

    def holdings(self, ext_id: str) -> set[str]:
        held = {f"call-queue:{q}" for q, members in self.queue_members.items() if ext_id in members}
        held |= {f"device:{d}" for d, dev in self.devices.items() if dev["ext"] == ext_id}
        held |= {
            f"forwarding-number:{f}" for f, fw in self.forwarding.items() if fw["ext"] == ext_id
        }
        held |= {
            f"phone-number:{n}"
            for n, num in self.numbers.items()
            if num["ext"] == ext_id and num["usage"] == "DirectNumber"
        }
        return held

    # ------------------------------------------------------------------ serving

    @property
    def router(self) -> respx.MockRouter:
        router = respx.MockRouter(assert_all_called=False, assert_all_mocked=True)
        router.route(host="platform.ringcentral.com").mock(side_effect=self.handle)
        return router

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/restapi/oauth/token":
            return self._token(request)
        self.requests.append(request)
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return rc_error(401, "TokenInvalid", "Access token corrupted")
        if self.throttle > 0:
            self.throttle -= 1
            return rc_error(
                429,
                "CMN-301",
                "Request rate exceeded",
                **{
                    "Retry-After": "60",
                    "X-Rate-Limit-Group": "Medium",
                    "X-Rate-Limit-Limit": "40",
                    "X-Rate-Limit-Remaining": "0",
                    "X-Rate-Limit-Window": "60",
                },
            )
        rid = {"RCRequestId": str(uuid.uuid4())}
        v1 = r"/restapi/v1\.0/account/~"
        routes: list[tuple[str, str, Any]] = [
            ("GET", rf"{v1}/extension", self._list_extensions),
            ("GET", rf"{v1}/extension/(?P<ext>[^/]+)", self._get_extension),
            ("PUT", rf"{v1}/extension/(?P<ext>[^/]+)", self._put_extension),
            ("GET", rf"{v1}/extension/(?P<ext>[^/]+)/call-queue-presence", self._queue_presence),
            ("PUT", rf"{v1}/extension/(?P<ext>[^/]+)/call-queues", self._put_queues),
            ("GET", rf"{v1}/call-queues/(?P<qid>[^/]+)", self._get_queue),
            ("GET", rf"{v1}/extension/(?P<ext>[^/]+)/device", self._devices),
            ("GET", rf"{v1}/extension/(?P<ext>[^/]+)/forwarding-number", self._forwarding),
            (
                "DELETE",
                rf"{v1}/extension/(?P<ext>[^/]+)/forwarding-number/(?P<fid>[^/]+)",
                self._delete_forwarding,
            ),
            ("GET", rf"{v1}/extension/(?P<ext>[^/]+)/phone-number", self._phone_numbers),
            ("DELETE", r"/restapi/v2/accounts/~/devices/(?P<did>[^/]+)", self._delete_device),
        ]
        for method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if match and request.method == method:
                response: httpx.Response = handler(request, **match.groupdict())
                response.headers.update(rid)
                return response
        return rc_error(404, "CMN-102", f"Resource for parameter [{path}] is not found")

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        form = parse_qs(request.content.decode())
        if request.headers.get("Authorization") != f"Basic {expected}":
            return httpx.Response(
                401,
                json={
                    "error": "invalid_client",
                    "errors": [
                        {"errorCode": "OAU-123", "message": "Client authentication is required"}
                    ],
                },
            )
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or form.get(
            "assertion"
        ) != [JWT]:
            return httpx.Response(
                400, json={"error": "invalid_grant", "error_description": "Invalid assertion"}
            )
        token = "U1BCMDFUMDRKV1MwMXxz" + uuid.uuid4().hex
        self.tokens.add(token)
        return httpx.Response(
            200,
            json={
                "access_token": token,
                "token_type": "bearer",
                "expires_in": 3600,
                "refresh_token": "U1BCMDFUMDRKV1MwMXxzLFL4ec6A0XMsUv9wLriecyxS_w",
                "refresh_token_expires_in": 604800,
                "scope": "ReadAccounts EditAccounts EditExtensions ReadPresence",
                "owner_id": "256440016",
                "endpoint_id": "8zXq6oaLT7WvwWITlGiA1A",
            },
        )

    def _ext(self, ext: str) -> Extension | httpx.Response:
        if ext not in self.extensions:
            return rc_error(404, "CMN-102", "Resource for parameter [extensionId] is not found")
        return self.extensions[ext]

    def _page(
        self, request: httpx.Request, records: list[dict[str, Any]], uri: str
    ) -> httpx.Response:
        page = int(request.url.params.get("page", "1"))
        per_page = min(int(request.url.params.get("perPage", "100")), self.per_page_cap)
        start = (page - 1) * per_page
        chunk = records[start : start + per_page]
        total_pages = max(1, -(-len(records) // per_page))
        navigation: dict[str, Any] = {
            "firstPage": {"uri": f"{uri}?page=1&perPage={per_page}"},
            "lastPage": {"uri": f"{uri}?page={total_pages}&perPage={per_page}"},
        }
        if page < total_pages:
            navigation["nextPage"] = {"uri": f"{uri}?page={page + 1}&perPage={per_page}"}
        paging: dict[str, Any] = {
            "page": page,
            "totalPages": total_pages,
            "perPage": per_page,
            "totalElements": len(records),
        }
        if chunk:
            paging |= {"pageStart": start, "pageEnd": start + len(chunk) - 1}
        return httpx.Response(
            200, json={"uri": uri, "records": chunk, "paging": paging, "navigation": navigation}
        )

    def _list_extensions(self, request: httpx.Request) -> httpx.Response:
        emails = {e.casefold() for e in request.url.params.get_list("email")}
        types = set(request.url.params.get_list("type"))
        records = [
            e.body()
            for e in self.extensions.values()
            if (not emails or e.email.casefold() in emails) and (not types or "User" in types)
        ]
        return self._page(request, records, f"{SERVER}/restapi/v1.0/account/{ACCOUNT}/extension")

    def _get_extension(self, request: httpx.Request, ext: str) -> httpx.Response:
        found = self._ext(ext)
        return (
            found if isinstance(found, httpx.Response) else httpx.Response(200, json=found.body())
        )

    def _put_extension(self, request: httpx.Request, ext: str) -> httpx.Response:
        found = self._ext(ext)
        if isinstance(found, httpx.Response):
            return found
        body = json.loads(request.content)
        if "status" in body:
            if body["status"] not in ("Enabled", "Disabled", "NotActivated", "Frozen"):
                return rc_error(400, "CMN-101", "Parameter [status] value is invalid")
            found.status = body["status"]
            found.status_info = body.get("statusInfo")
        if "ivrPin" in body:
            found.ivr_pin = body["ivrPin"]
        return httpx.Response(200, json=found.body())

    def _queue_presence(self, request: httpx.Request, ext: str) -> httpx.Response:
        found = self._ext(ext)
        if isinstance(found, httpx.Response):
            return found
        records = [
            {"callQueue": {**self.queues[q], "editableMemberStatus": True}, "acceptCalls": True}
            for q, members in sorted(self.queue_members.items())
            if ext in members
        ]
        return httpx.Response(200, json={"records": records})

    def _get_queue(self, request: httpx.Request, qid: str) -> httpx.Response:
        """``GET /restapi/v1.0/account/~/call-queues/{groupId}`` (CallQueueDetails)."""
        queue = self.queues.get(qid)
        if queue is None:
            return rc_error(404, "CMN-102", "Resource for parameter [groupId] is not found")
        return httpx.Response(
            200,
            json={
                "uri": f"{SERVER}/restapi/v1.0/account/{ACCOUNT}/call-queues/{qid}",
                **queue,
                "status": "Enabled",
                "serviceLevelSettings": {"slaGoal": 20, "slaThresholdSeconds": 30},
            },
        )

    def _put_queues(self, request: httpx.Request, ext: str) -> httpx.Response:
        found = self._ext(ext)
        if isinstance(found, httpx.Response):
            return found
        wanted = {r["id"] for r in json.loads(request.content).get("records", [])}
        if wanted - set(self.queues):
            return rc_error(404, "CMN-102", "Resource for parameter [groupId] is not found")
        for qid, members in self.queue_members.items():
            (members.add if qid in wanted else members.discard)(ext)
        records = [{"id": q, "name": self.queues[q]["name"]} for q in sorted(wanted)]
        return httpx.Response(200, json={"records": records})

    def _devices(self, request: httpx.Request, ext: str) -> httpx.Response:
        found = self._ext(ext)
        if isinstance(found, httpx.Response):
            return found
        records = []
        for dev in self.devices.values():
            if dev["ext"] != ext:
                continue
            number = self.numbers[dev["number"]]
            records.append(
                {
                    "id": dev["id"],
                    "uri": f"{SERVER}/restapi/v1.0/account/{ACCOUNT}/device/{dev['id']}",
                    "sku": "HP-56",
                    "type": "HardPhone",
                    "name": "Polycom VVX 411",
                    "serial": "0004F2E1A7C9",
                    "status": "Online",
                    "model": {"id": "56", "name": "Polycom VVX 411"},
                    "extension": {"id": int(ext), "extensionNumber": found.number},
                    "phoneLines": [
                        {
                            "lineType": "Standalone",
                            "phoneInfo": {
                                "id": number["id"],
                                "phoneNumber": number["phone"],
                                "usageType": "DirectNumber",
                            },
                        }
                    ],
                    "linePooling": "None",
                }
            )
        return self._page(
            request, records, f"{SERVER}/restapi/v1.0/account/{ACCOUNT}/extension/{ext}/device"
        )

    def _forwarding(self, request: httpx.Request, ext: str) -> httpx.Response:
        found = self._ext(ext)
        if isinstance(found, httpx.Response):
            return found
        records = [
            {
                "uri": f"{SERVER}/restapi/v1.0/account/{ACCOUNT}/extension/{ext}"
                f"/forwarding-number/{f['id']}",
                "id": f["id"],
                "phoneNumber": f["phone"],
                "label": f["label"],
                "features": ["CallFlip", "CallForwarding"],
                "flipNumber": "1",
                "type": f["type"],
            }
            for f in self.forwarding.values()
            if f["ext"] == ext
        ]
        return self._page(
            request,
            records,
            f"{SERVER}/restapi/v1.0/account/{ACCOUNT}/extension/{ext}/forwarding-number",
        )

    def _delete_forwarding(self, request: httpx.Request, ext: str, fid: str) -> httpx.Response:
        fw = self.forwarding.get(fid)
        if fw is None or fw["ext"] != ext:
            return rc_error(
                404, "CMN-102", "Resource for parameter [forwardingNumberId] is not found"
            )
        if fw["device"] is not None:
            return rc_error(400, "FWD-101", "Phone line forwarding number cannot be deleted")
        del self.forwarding[fid]
        return httpx.Response(204)

    def _phone_numbers(self, request: httpx.Request, ext: str) -> httpx.Response:
        found = self._ext(ext)
        if isinstance(found, httpx.Response):
            return found
        usage = set(request.url.params.get_list("usageType"))
        records = [
            {
                "uri": f"{SERVER}/restapi/v1.0/account/{ACCOUNT}/phone-number/{n['id']}",
                "id": int(n["id"]),
                "phoneNumber": n["phone"],
                "paymentType": "Local",
                "type": "VoiceFax",
                "usageType": n["usage"],
                "status": "Normal",
                "country": {"id": "1", "isoCode": "US", "name": "United States"},
                "extension": {"id": int(ext), "extensionNumber": found.number},
                "primary": False,
                "features": ["CallerId", "SmsSender"],
            }
            for n in self.numbers.values()
            if n["ext"] == ext and (not usage or n["usage"] in usage)
        ]
        return self._page(
            request,
            records,
            f"{SERVER}/restapi/v1.0/account/{ACCOUNT}/extension/{ext}/phone-number",
        )

    def _delete_device(self, request: httpx.Request, did: str) -> httpx.Response:
        dev = self.devices.get(did)
        if dev is None or dev["ext"] is None:
            return rc_error(404, "CMN-102", "Resource for parameter [deviceId] is not found")
        keep = json.loads(request.content or b"{}").get("keepAssetsInInventory", True)
        number = self.numbers[dev["number"]]
        number["ext"], number["usage"] = (None, "Inventory") if keep else (None, "Removed")
        for fid in [f for f, fw in self.forwarding.items() if fw["device"] == did]:
            del self.forwarding[fid]
        dev["ext"] = None
        if not keep:
            del self.devices[did]
        return httpx.Response(
            200,
            json={
                "id": did,
                "type": "HardPhone",
                "name": "Polycom VVX 411",
                "serial": "0004F2E1A7C9",
            },
        )
