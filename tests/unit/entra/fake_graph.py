"""A small stateful fake of the Microsoft Graph endpoints the Entra connector uses, on respx.

Microsoft Graph cannot run here, so this is the one place where it is imitated. The fake keeps
users, groups, memberships, app role assignments, authentication methods, licences, Conditional
Access policies and directory settings in dicts, and answers with bodies shaped like the examples
in Microsoft's Graph documentation (``@odata.context``, ``value`` collections,
``@odata.nextLink`` paging with ``$skiptoken``, ``{"error": {"code", "message", "innerError"}}``,
``$batch`` ``responses`` with per-item ``status``/``headers``/``body``). It enforces the rules the
connector must respect: bearer tokens it issued, ``/$ref`` for membership removal (the form
without ``$ref`` deletes the user, as in Graph), no edits of dynamic group memberships, no
per-user removal of group-assigned licences, the mobile phone method last.

The token side imitates the Microsoft identity platform's OpenID configuration and v2.0 token
endpoint, so msal runs unmodified: the connector hands msal an httpx-based ``http_client``
(msal's documented extension point), which respx intercepts like every other httpx call.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import httpx
import respx

AUTHORITY = "https://login.microsoftonline.com"
GRAPH = "https://graph.microsoft.com/v1.0"
TENANT = "contoso.onmicrosoft.com"
TENANT_GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
CLIENT_SECRET = "JqQX2PNo9bpM0uEihUPzyrh-not-a-real-secret"
META = f"{GRAPH}/$metadata"

Result = tuple[int, Any, dict[str, str]]

MOBILE_FIRST = (
    "Cannot delete the mobile phone method while an alternate mobile phone method is registered."
)
INHERITED_LICENCE = (
    "User license is inherited from a group membership and it cannot be removed directly "
    "from the user."
)
ALREADY_MEMBER = (
    "One or more added object references already exist for the following modified "
    "properties: 'members'."
)
DYNAMIC_GROUP = (
    "Insufficient privileges to complete the operation. The group has dynamic membership."
)
CONFLICT = (
    "A conflicting object with one or more of the specified property values is present "
    "in the directory."
)


def not_found(object_id: str) -> str:
    return (
        f"Resource '{object_id}' does not exist or one of its queried reference-property "
        "objects are not present."
    )


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error(status: int, code: str, message: str) -> Result:
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": now_iso(),
                "request-id": str(uuid.uuid4()),
                "client-request-id": str(uuid.uuid4()),
            },
        }
    }
    return status, body, {}


@dataclass
class Fault:
    """Answer ``times`` matching calls with ``status`` before behaving normally again."""

    method: str
    path: str  # regex on the path after the version root
    status: int
    times: int
    retry_after: str | None = None
    code: str = "TooManyRequests"
    hits: int = 0


@dataclass
class FakeEntra:
    page_size: int = 100
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    app_roles: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    methods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    licences: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ca_policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    retired_skus: set[str] = field(default_factory=set)
    """Licences the tenant no longer subscribes to: assigning one is refused, as Graph does."""
    deleted_apps: set[str] = field(default_factory=set)
    """Resource service principals deleted from the tenant (app role grants answer 404)."""
    tokens: set[str] = field(default_factory=set)
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str]] = field(default_factory=list)
    """(method, path) of every Graph call, batch items included (batch items marked 'B ')."""
    queries: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """(path, decoded query parameters) of every Graph call, in order."""
    token_requests: int = 0
    token_failure: tuple[int, dict[str, Any]] | None = None
    in_flight: int = 0
    max_in_flight: int = 0
    latency: float = 0.0
    timeouts: int = 0
    """The next this-many Graph calls time out (httpx.ReadTimeout)."""
    reject_tokens: bool = False
    """Graph answers 401 to every token, as when the app lives in another tenant."""

    # ----------------------------------------------------------------- seeding

    def add_group(
        self, name: str, *, dynamic: bool = False, synced: bool = False, mail: bool = False
    ) -> str:
        gid = str(uuid.uuid4())
        self.groups[gid] = {
            "id": gid,
            "displayName": name,
            "description": name,
            "groupTypes": ["DynamicMembership"] if dynamic else [],
            "membershipRule": '(user.department -eq "VA")' if dynamic else None,
            "membershipRuleProcessingState": "On" if dynamic else None,
            "mailEnabled": mail,
            "mailNickname": re.sub(r"\W", "", name),
            "securityEnabled": True,
            "onPremisesSyncEnabled": True if synced else None,
        }
        self.members[gid] = set()
        return gid

    def add_user(
        self,
        employee_id: str,
        *,
        upn: str | None = None,
        mail: str | None = None,
        enabled: bool = True,
        groups: list[str] = (),  # type: ignore[assignment]
        last_sign_in: str | None = None,
        signed_in: bool = True,
    ) -> str:
        uid = str(uuid.uuid4())
        upn = upn or f"{employee_id.lower()}@contoso.com"
        self.users[uid] = {
            "id": uid,
            "businessPhones": [],
            "displayName": employee_id,
            "givenName": None,
            "jobTitle": None,
            "mail": mail or upn,
            "mobilePhone": None,
            "officeLocation": None,
            "preferredLanguage": None,
            "surname": None,
            "userPrincipalName": upn,
            "employeeId": employee_id,
            "accountEnabled": enabled,
            "createdDateTime": "2026-01-05T09:00:00Z",
            "signInSessionsValidFromDateTime": "2026-01-05T09:00:00Z",
            "usageLocation": "US",
            "signInActivity": (
                {
                    "lastSignInDateTime": last_sign_in or "2026-11-20T08:00:00Z",
                    "lastSignInRequestId": str(uuid.uuid4()),
                    "lastNonInteractiveSignInDateTime": last_sign_in or "2026-11-20T08:00:00Z",
                    "lastNonInteractiveSignInRequestId": str(uuid.uuid4()),
                    "lastSuccessfulSignInDateTime": last_sign_in or "2026-11-20T08:00:00Z",
                    "lastSuccessfulSignInRequestId": str(uuid.uuid4()),
                }
                if signed_in
                else None
            ),
        }
        for gid in groups:
            self.members[gid].add(uid)
        self.app_roles[uid] = []
        self.methods[uid] = [
            {
                "@odata.type": "#microsoft.graph.passwordAuthenticationMethod",
                "id": "28c10230-6103-485e-b985-444c60001490",
                "password": None,
                "createdDateTime": "2026-01-05T09:00:00Z",
            }
        ]
        self.licences[uid] = []
        return uid

    def add_app_role(self, uid: str) -> str:
        aid = str(uuid.uuid4())
        self.app_roles[uid].append(
            {
                "id": aid,
                "deletedDateTime": None,
                "appRoleId": str(uuid.uuid4()),
                "createdDateTime": "2026-02-01T10:00:00Z",
                "principalDisplayName": self.users[uid]["displayName"],
                "principalId": uid,
                "principalType": "User",
                "resourceDisplayName": "EHR scheduling",
                "resourceId": str(uuid.uuid4()),
            }
        )
        return aid

    def add_phone(self, uid: str, phone_type: str) -> str:
        mid = {
            "mobile": "3179e48a-750b-4051-897c-87b9720928f7",
            "alternateMobile": "b6332ec1-7057-4abe-9331-3d72feddfe41",
            "office": "e37fc753-ff3b-4958-9484-eaa9425c82bc",
        }[phone_type]
        self.methods[uid].append(
            {
                "@odata.type": "#microsoft.graph.phoneAuthenticationMethod",
                "id": mid,
                "phoneNumber": "+1 2065555555",
                "phoneType": phone_type,
                "smsSignInState": "notAllowedByPolicy",
            }
        )
        return mid

    def add_authenticator(self, uid: str) -> str:
        mid = str(uuid.uuid4())
        self.methods[uid].append(
            {
                "@odata.type": "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod",
                "id": mid,
                "displayName": "Pixel 8",
                "deviceTag": "SoftwareTokenActivated",
                "phoneAppVersion": "6.2401.0119",
                "createdDateTime": "2026-02-01T10:00:00Z",
            }
        )
        return mid

    def add_licence(self, uid: str, sku: str, *, by_group: str | None = None) -> None:
        self.licences[uid].append(
            {
                "assignedByGroup": by_group,
                "disabledPlans": [],
                "error": "None",
                "lastUpdatedDateTime": "2026-02-01T10:00:00Z",
                "skuId": sku,
                "state": "Active",
            }
        )

    # ----------------------------------------------------------------- wiring

    def install(self, router: respx.MockRouter) -> None:
        base = f"{AUTHORITY}/{TENANT}"
        router.get(f"{base}/v2.0/.well-known/openid-configuration").mock(
            side_effect=self._openid_configuration
        )
        router.post(f"{AUTHORITY}/{TENANT_GUID}/oauth2/v2.0/token").mock(side_effect=self._token)
        router.route(url__startswith=GRAPH).mock(side_effect=self._graph)

    def _openid_configuration(self, request: httpx.Request) -> httpx.Response:
        root = f"{AUTHORITY}/{TENANT_GUID}"
        return httpx.Response(
            200,
            json={
                "token_endpoint": f"{root}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "jwks_uri": f"{AUTHORITY}/{TENANT_GUID}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{AUTHORITY}/{TENANT_GUID}/v2.0",
                "request_uri_parameter_supported": False,
                "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
                "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
                "http_logout_supported": True,
                "frontchannel_logout_supported": True,
                "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid"],
                "kerberos_endpoint": f"{root}/kerberos",
                "tenant_region_scope": "NA",
                "cloud_instance_name": "microsoftonline.com",
                "cloud_graph_host_name": "graph.windows.net",
                "msgraph_host": "graph.microsoft.com",
                "rbac_url": "https://pas.windows.net",
            },
        )

    def _token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests += 1
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if self.token_failure is not None:
            status, body = self.token_failure
            return httpx.Response(status, json=body)
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return httpx.Response(
                401,
                json={
                    "error": "invalid_client",
                    "error_description": (
                        "AADSTS7000215: Invalid client secret provided. Ensure the secret being "
                        "sent in the request is the client secret value, not the client secret "
                        f"ID, for a secret added to app '{CLIENT_ID}'. Trace ID: "
                        f"{uuid.uuid4()} Correlation ID: {uuid.uuid4()} Timestamp: {now_iso()}"
                    ),
                    "error_codes": [7000215],
                    "timestamp": now_iso(),
                    "trace_id": str(uuid.uuid4()),
                    "correlation_id": "5b8bd2f4-3e52-4b6a-9d0c-1f2b3c4d5e6f",
                    "error_uri": f"{AUTHORITY}/error?code=7000215",
                },
            )
        token = "eyJ0eXAiOiJKV1QiLCJub25jZSI6" + uuid.uuid4().hex + uuid.uuid4().hex
        self.tokens.add(token)
        return httpx.Response(
            200,
            json={
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": token,
            },
        )

    def expire_tokens(self) -> None:
        """Every issued token becomes invalid, as after a key roll-over or expiry."""
        self.tokens.clear()

    async def _graph(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await anyio.sleep(self.latency)
            if self.timeouts > 0:
                self.timeouts -= 1
                raise httpx.ReadTimeout("timed out", request=request)
            auth = request.headers.get("authorization", "")
            token_ok = auth.startswith("Bearer ") and auth[7:] in self.tokens
            if self.reject_tokens or not token_ok:
                status, body, headers = error(
                    401,
                    "InvalidAuthenticationToken",
                    "Access token has expired or is not yet valid.",
                )
            else:
                path = request.url.raw_path.decode()[len(urlsplit(GRAPH).path) :]
                body_in = json.loads(request.content) if request.content else None
                status, body, headers = self.dispatch(request.method, path, body_in)
            headers = {
                "request-id": str(uuid.uuid4()),
                "client-request-id": str(uuid.uuid4()),
                **headers,
            }
            if body is None:
                return httpx.Response(status, headers=headers)
            return httpx.Response(status, json=body, headers=headers)
        finally:
            self.in_flight -= 1

    # ----------------------------------------------------------------- dispatch

    def dispatch(self, method: str, raw_path: str, body: Any, *, batched: bool = False) -> Result:
        path, _, query_string = raw_path.partition("?")
        path = unquote(path)
        query = {k: v[0] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
        self.log.append((("B " if batched else "") + method, path))
        self.queries.append((path, query))
        for fault in self.faults:
            if (
                fault.method == method
                and re.fullmatch(fault.path, path)
                and fault.hits < fault.times
            ):
                fault.hits += 1
                status, err, headers = error(fault.status, fault.code, "Fault injected by the test")
                if fault.retry_after is not None:
                    headers = {"Retry-After": fault.retry_after}
                return status, err, headers
        for verb, pattern, handler in self._routes():
            if verb != method:
                continue
            match = re.fullmatch(pattern, path)
            if match:
                return handler(*match.groups(), query=query, body=body)
        return error(400, "BadRequest", f"Resource not found for the segment '{path}'.")

    def _routes(self) -> list[tuple[str, str, Callable[..., Result]]]:
        seg = r"([^/]+)"
        return [
            ("POST", r"/\$batch", self._batch),
            ("GET", r"/users", self._list_users),
            ("POST", r"/users", self._create_user),
            ("GET", rf"/users/{seg}", self._get_user),
            ("PATCH", rf"/users/{seg}", self._patch_user),
            ("DELETE", rf"/users/{seg}", self._delete_user),
            ("POST", rf"/users/{seg}/revokeSignInSessions", self._revoke),
            ("GET", rf"/users/{seg}/memberOf/microsoft\.graph\.group", self._member_of),
            ("GET", rf"/users/{seg}/appRoleAssignments", self._list_app_roles),
            ("POST", rf"/users/{seg}/appRoleAssignments", self._add_app_role),
            ("DELETE", rf"/users/{seg}/appRoleAssignments/{seg}", self._delete_app_role),
            ("GET", rf"/users/{seg}/authentication/methods", self._list_methods),
            ("DELETE", rf"/users/{seg}/authentication/{seg}/{seg}", self._delete_method),
            ("POST", rf"/users/{seg}/assignLicense", self._assign_licence),
            ("POST", rf"/groups/{seg}/members/\$ref", self._add_member),
            ("DELETE", rf"/groups/{seg}/members/{seg}/\$ref", self._remove_member),
            ("DELETE", rf"/groups/{seg}/members/{seg}", self._delete_member_object),
            ("GET", r"/identity/conditionalAccess/policies", self._list_ca),
            ("POST", r"/identity/conditionalAccess/policies", self._create_ca),
            ("PATCH", rf"/identity/conditionalAccess/policies/{seg}", self._patch_ca),
            ("GET", r"/groupSettings", self._list_settings),
            ("POST", r"/groupSettings", self._create_setting),
            ("PATCH", rf"/groupSettings/{seg}", self._patch_setting),
        ]

    def _batch(self, *, query: dict[str, str], body: Any) -> Result:
        requests = (body or {}).get("requests", [])
        if len(requests) > 20:
            return error(400, "BadRequest", "The number of batch requests exceeds the limit of 20.")
        responses = []
        for item in requests:
            url = item["url"] if item["url"].startswith("/") else "/" + item["url"]
            status, out, headers = self.dispatch(
                item["method"], url, item.get("body"), batched=True
            )
            entry: dict[str, Any] = {"id": item["id"], "status": status, "headers": headers}
            if out is not None:
                entry["headers"] = {"Content-Type": "application/json", **headers}
                entry["body"] = out
            responses.append(entry)
        responses.reverse()  # Graph does not promise the request order
        return 200, {"responses": responses}, {}

    # ----------------------------------------------------------------- users

    def _user_or_404(self, uid: str) -> dict[str, Any] | None:
        return self.users.get(uid)

    def _project(self, user: dict[str, Any], select: str | None) -> dict[str, Any]:
        full = dict(user)
        full["assignedLicenses"] = [
            {"disabledPlans": [], "skuId": s["skuId"]}
            for s in {s["skuId"]: s for s in self.licences.get(user["id"], [])}.values()
        ]
        full["licenseAssignmentStates"] = copy.deepcopy(self.licences.get(user["id"], []))
        if not select:
            return {k: v for k, v in full.items() if k not in ("signInActivity",)}
        return {k: full.get(k) for k in select.split(",")}

    def _list_users(self, *, query: dict[str, str], body: Any) -> Result:
        users = list(self.users.values())
        flt = query.get("$filter")
        if flt:
            match = re.fullmatch(r"(employeeId|userPrincipalName|mail) eq '((?:[^']|'')*)'", flt)
            if not match:
                return error(
                    400,
                    "Request_UnsupportedQuery",
                    "Unsupported or invalid query filter clause specified for property.",
                )
            attribute, literal = match.group(1), match.group(2).replace("''", "'")
            users = [u for u in users if (u.get(attribute) or "").casefold() == literal.casefold()]
        select = query.get("$select")
        start = int(query.get("$skiptoken", "0"))
        page = users[start : start + self.page_size]
        out: dict[str, Any] = {
            "@odata.context": f"{META}#users({select or ''})",
            "value": [self._project(u, select) for u in page],
        }
        if start + self.page_size < len(users):
            out["@odata.nextLink"] = (
                f"{GRAPH}/users?$select={select}&$top={self.page_size}"
                f"&$skiptoken={start + self.page_size}"
            )
        return 200, out, {}

    def _create_user(self, *, query: dict[str, str], body: Any) -> Result:
        required = (
            "accountEnabled",
            "displayName",
            "mailNickname",
            "userPrincipalName",
            "passwordProfile",
        )
        missing = [k for k in required if k not in body]
        if missing:
            return error(
                400,
                "Request_BadRequest",
                f"Invalid value specified for property '{missing[0]}' of resource 'User'.",
            )
        if any(u["userPrincipalName"] == body["userPrincipalName"] for u in self.users.values()):
            return error(
                400,
                "Request_BadRequest",
                "Another object with the same value for property userPrincipalName already exists.",
            )
        uid = self.add_user(
            body.get("employeeId") or "",
            upn=body["userPrincipalName"],
            mail=body.get("mail"),
            signed_in=False,
        )
        user = self.users[uid]
        user.update(
            displayName=body["displayName"],
            accountEnabled=body["accountEnabled"],
            createdDateTime=now_iso(),
        )
        self.users[uid]["passwordProfile"] = body["passwordProfile"]
        out = {"@odata.context": f"{META}#users/$entity", **self._project(user, None)}
        out.pop("passwordProfile", None)
        return 201, out, {}

    def _get_user(self, uid: str, *, query: dict[str, str], body: Any) -> Result:
        user = self._user_or_404(uid)
        if user is None:
            return error(
                404,
                "Request_ResourceNotFound",
                not_found(uid),
            )
        select = query.get("$select")
        out = {
            "@odata.context": f"{META}#users({select or ''})/$entity",
            **self._project(user, select),
        }
        out.pop("passwordProfile", None)
        return 200, out, {}

    def _patch_user(self, uid: str, *, query: dict[str, str], body: Any) -> Result:
        user = self._user_or_404(uid)
        if user is None:
            return error(
                404,
                "Request_ResourceNotFound",
                not_found(uid),
            )
        user.update(body)
        return 204, None, {}

    def _delete_user(self, uid: str, *, query: dict[str, str], body: Any) -> Result:
        if self.users.pop(uid, None) is None:
            return error(404, "Request_ResourceNotFound", f"Resource '{uid}' does not exist.")
        return 204, None, {}

    def _revoke(self, uid: str, *, query: dict[str, str], body: Any) -> Result:
        user = self._user_or_404(uid)
        if user is None:
            return error(404, "Request_ResourceNotFound", f"Resource '{uid}' does not exist.")
        user["signInSessionsValidFromDateTime"] = now_iso()
        return 200, {"@odata.context": f"{META}#Edm.Boolean", "value": True}, {}

    def _member_of(self, uid: str, *, query: dict[str, str], body: Any) -> Result:
        if uid not in self.users:
            return error(404, "Request_ResourceNotFound", f"Resource '{uid}' does not exist.")
        select = query.get("$select")
        value = []
        for gid, members in self.members.items():
            if uid in members:
                group = self.groups[gid]
                item = {k: group.get(k) for k in select.split(",")} if select else dict(group)
                value.append({"@odata.type": "#microsoft.graph.group", **item})
        start = int(query.get("$skiptoken", "0"))
        out: dict[str, Any] = {
            "@odata.context": f"{META}#groups",
            "value": value[start : start + self.page_size],
        }
        if start + self.page_size < len(value):
            out["@odata.nextLink"] = (
                f"{GRAPH}/users/{uid}/memberOf/microsoft.graph.group?$select={select}"
                f"&$skiptoken={start + self.page_size}"
            )
        return 200, out, {}

    def _list_app_roles(self, uid: str, *, query: dict[str, str], body: Any) -> Result:
        if uid not in self.users:
            return error(404, "Request_ResourceNotFound", f"Resource '{uid}' does not exist.")
        return (
            200,
            {
                "@odata.context": f"{META}#users('{uid}')/appRoleAssignments",
                "value": copy.deepcopy(self.app_roles[uid]),
            },
            {},
        )

    def _add_app_role(self, uid: str, *, query: dict[str, str], body: Any) -> Result:
        """``POST /users/{id}/appRoleAssignments`` (learn.microsoft.com/graph/api/
        user-post-approleassignments): 201 with the appRoleAssignment."""
        if uid not in self.users or body.get("principalId") != uid:
            return error(404, "Request_ResourceNotFound", not_found(uid))
        resource, role = str(body.get("resourceId")), str(body.get("appRoleId"))
        if resource in self.deleted_apps:
            return error(404, "Request_ResourceNotFound", not_found(resource))
        if any(a["resourceId"] == resource and a["appRoleId"] == role for a in self.app_roles[uid]):
            return error(
                400,
                "Request_BadRequest",
                "Permission being assigned already exists on the object",
            )
        assignment = {
            "id": str(uuid.uuid4()),
            "deletedDateTime": None,
            "appRoleId": role,
            "createdDateTime": now_iso(),
            "principalDisplayName": self.users[uid]["displayName"],
            "principalId": uid,
            "principalType": "User",
            "resourceDisplayName": "EHR scheduling",
            "resourceId": resource,
        }
        self.app_roles[uid].append(assignment)
        return (
            201,
            {"@odata.context": f"{META}#appRoleAssignments/$entity", **assignment},
            {},
        )

    def _delete_app_role(self, uid: str, aid: str, *, query: dict[str, str], body: Any) -> Result:
        before = len(self.app_roles.get(uid, []))
        self.app_roles[uid] = [a for a in self.app_roles.get(uid, []) if a["id"] != aid]
        if len(self.app_roles[uid]) == before:
            return error(404, "Request_ResourceNotFound", f"Resource '{aid}' does not exist.")
        return 204, None, {}

    def _list_methods(self, uid: str, *, query: dict[str, str], body: Any) -> Result:
        if uid not in self.users:
            return error(404, "Request_ResourceNotFound", f"Resource '{uid}' does not exist.")
        return (
            200,
            {
                "@odata.context": f"{META}#users('{uid}')/authentication/methods",
                "value": copy.deepcopy(self.methods[uid]),
            },
            {},
        )

    def _delete_method(
        self, uid: str, collection: str, mid: str, *, query: dict[str, str], body: Any
    ) -> Result:
        methods = self.methods.get(uid, [])
        target = next((m for m in methods if m["id"] == mid), None)
        if target is None:
            return error(404, "itemNotFound", "The specified authentication method was not found.")
        if target.get("phoneType") == "mobile" and any(
            m.get("phoneType") == "alternateMobile" for m in methods
        ):
            return error(
                400,
                "badRequest",
                MOBILE_FIRST,
            )
        self.methods[uid] = [m for m in methods if m["id"] != mid]
        return 204, None, {}

    def _assign_licence(self, uid: str, *, query: dict[str, str], body: Any) -> Result:
        user = self._user_or_404(uid)
        if user is None:
            return error(404, "Request_ResourceNotFound", f"Resource '{uid}' does not exist.")
        states = self.licences[uid]
        for sku in body.get("removeLicenses", []):
            direct = [s for s in states if s["skuId"] == sku and s["assignedByGroup"] is None]
            if not direct:
                if any(s["skuId"] == sku for s in states):
                    return error(
                        400,
                        "Request_BadRequest",
                        INHERITED_LICENCE,
                    )
                return error(
                    400,
                    "Request_BadRequest",
                    f"License {sku} does not correspond to a valid company License.",
                )
            states.remove(direct[0])
        for lic in body.get("addLicenses", []):
            if lic["skuId"] in self.retired_skus:
                return error(
                    400,
                    "Request_BadRequest",
                    f"License {lic['skuId']} does not correspond to a valid company License.",
                )
            if not user.get("usageLocation"):
                return error(
                    400,
                    "Request_BadRequest",
                    "License assignment failed because service plans require usage location.",
                )
            self.add_licence(uid, lic["skuId"])
        return 200, {"@odata.context": f"{META}#users/$entity", **self._project(user, None)}, {}

    # ----------------------------------------------------------------- groups

    def _add_member(self, gid: str, *, query: dict[str, str], body: Any) -> Result:
        if gid not in self.groups:
            return error(404, "Request_ResourceNotFound", f"Resource '{gid}' does not exist.")
        uid = str(body["@odata.id"]).rsplit("/", 1)[-1]
        if uid not in self.users:
            return error(404, "Request_ResourceNotFound", f"Resource '{uid}' does not exist.")
        if uid in self.members[gid]:
            return error(
                400,
                "Request_BadRequest",
                ALREADY_MEMBER,
            )
        self.members[gid].add(uid)
        return 204, None, {}

    def _remove_member(self, gid: str, uid: str, *, query: dict[str, str], body: Any) -> Result:
        group = self.groups.get(gid)
        if group is None or uid not in self.members[gid]:
            return error(
                404,
                "Request_ResourceNotFound",
                not_found(uid),
            )
        if "DynamicMembership" in group["groupTypes"]:
            return error(
                400,
                "Request_BadRequest",
                DYNAMIC_GROUP,
            )
        self.members[gid].discard(uid)
        return 204, None, {}

    def _delete_member_object(
        self, gid: str, uid: str, *, query: dict[str, str], body: Any
    ) -> Result:
        """Without ``/$ref`` Graph addresses the member object itself: this deletes the user."""
        self.users.pop(uid, None)
        for members in self.members.values():
            members.discard(uid)
        return 204, None, {}

    # ----------------------------------------------------------------- policy

    def _list_ca(self, *, query: dict[str, str], body: Any) -> Result:
        return (
            200,
            {
                "@odata.context": f"{META}#identity/conditionalAccess/policies",
                "value": copy.deepcopy(list(self.ca_policies.values())),
            },
            {},
        )

    def _create_ca(self, *, query: dict[str, str], body: Any) -> Result:
        pid = str(uuid.uuid4())
        policy = {
            "@odata.type": "#microsoft.graph.conditionalAccessPolicy",
            "id": pid,
            "templateId": None,
            "createdDateTime": now_iso(),
            "modifiedDateTime": None,
            **copy.deepcopy(body),
        }
        self.ca_policies[pid] = policy
        return (
            201,
            {"@odata.context": f"{META}#identity/conditionalAccess/policies/$entity", **policy},
            {},
        )

    def _patch_ca(self, pid: str, *, query: dict[str, str], body: Any) -> Result:
        if pid not in self.ca_policies:
            return error(404, "ResourceNotFound", "Policy not found.")
        self.ca_policies[pid].update(copy.deepcopy(body))
        self.ca_policies[pid]["modifiedDateTime"] = now_iso()
        return 204, None, {}

    def _list_settings(self, *, query: dict[str, str], body: Any) -> Result:
        return (
            200,
            {
                "@odata.context": f"{META}#groupSettings",
                "value": copy.deepcopy(list(self.settings.values())),
            },
            {},
        )

    def _create_setting(self, *, query: dict[str, str], body: Any) -> Result:
        sid = str(uuid.uuid4())
        template = body["templateId"]
        if any(s["templateId"] == template for s in self.settings.values()):
            return error(
                409,
                "Request_BadRequest",
                CONFLICT,
            )
        defaults = {
            "BannedPasswordCheckOnPremisesMode": "Audit",
            "EnableBannedPasswordCheckOnPremises": "False",
            "EnableBannedPasswordCheck": "True",
            "LockoutDurationInSeconds": "60",
            "LockoutThreshold": "10",
            "BannedPasswordList": "",
        }
        for v in body.get("values", []):
            defaults[v["name"]] = v["value"]
        self.settings[sid] = {
            "id": sid,
            "displayName": "Password Rule Settings",
            "templateId": template,
            "values": [{"name": k, "value": v} for k, v in defaults.items()],
        }
        return 201, {"@odata.context": f"{META}#groupSettings/$entity", **self.settings[sid]}, {}

    def _patch_setting(self, sid: str, *, query: dict[str, str], body: Any) -> Result:
        if sid not in self.settings:
            return error(404, "Request_ResourceNotFound", f"Resource '{sid}' does not exist.")
        self.settings[sid]["values"] = copy.deepcopy(body["values"])
        return 204, None, {}
