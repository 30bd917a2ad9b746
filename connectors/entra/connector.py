"""Microsoft Entra ID through Microsoft Graph v1.0 (msal client credentials + httpx).

Entitlements are named by kind and Graph id, because display names are not unique in Entra:
``group:<group id>``, ``license:<skuId>``, ``appRole:<resourceId>/<appRoleId>``. Playbooks use
the first two; app role assignments are removed on termination and reported, not granted.

Termination, as the engine drives it: ``disable`` (``accountEnabled=false``), ``revoke_sessions``
(``revokeSignInSessions``; the result says "requested", because Microsoft documents a delay of a
few minutes before every session is gone, and names when it can be counted as effective), then
``remove_access``: group memberships through ``/members/{id}/$ref`` (never the form without
``$ref``, which deletes the user), app role assignments, authentication methods (phone methods
last, the mobile phone, which Entra uses as the default phone method, very last) and directly
assigned licences. Dynamic, on-premises-synced and mail-enabled groups and group-assigned
licences cannot be removed per user; they are reported as skipped with the reason. The reads and
the independent deletions of one user go through ``$batch``; ``read_state`` reads everything
back in one ``$batch`` as well.

The undo: ``enable`` (``accountEnabled=true``) and ``restore_access``, which puts back the
snapshot's groups, app role assignments and directly assigned licences in one ``$batch`` and
reports what cannot come back (authentication methods, objects deleted since, licences the
tenant no longer holds).

Retries: none in the connector. Every Graph call is sent once; throttling (429/503 with
``Retry-After``), 5xx and timeouts surface as ``TransientConnectorError`` with ``retry_after``
for the service's executor. Protocol-level handling stays in ``connectors.entra.graph``: one
token refresh on a 401, and re-sending only the throttled items of a ``$batch``.

Required application permissions (admin consent): User.Read.All, User.EnableDisableAccount.All,
User.RevokeSessions.All, GroupMember.ReadWrite.All, AppRoleAssignment.ReadWrite.All,
UserAuthenticationMethod.ReadWrite.All, LicenseAssignment.ReadWrite.All, AuditLog.Read.All
(sign-in activity, needs Entra ID P1), User.ReadWrite.All (joiner), Policy.Read.All and
Policy.ReadWrite.ConditionalAccess, GroupSettings.ReadWrite.All (smart lockout directory setting).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Self

import httpx
from pydantic import SecretStr

from connectors._config import parse_options
from connectors.base import (
    Account,
    AccountState,
    ActionResult,
    Capability,
    Connector,
    ConnectorContext,
    DesiredAccess,
    Outcome,
    PermanentConnectorError,
    PolicyBaseline,
    PolicyState,
    SkippedItem,
    Worker,
    action_result,
    change_outcome,
    restore_result,
    sha256_hex,
    utcnow,
)
from connectors.entra.graph import (
    BatchRequest,
    GraphBadRequestError,
    GraphClient,
    GraphNotFoundError,
    GraphResponse,
    GraphSettings,
    graph_error,
)
from connectors.entra.model import (
    APP_ROLE,
    GROUP,
    GROUP_FIELDS,
    LICENSE,
    METHOD_COLLECTIONS,
    METHOD_NOT_RESTORABLE,
    OBJECT_ID,
    PASSWORD_METHOD,
    PHONE_ORDER,
    USER_FIELDS,
    SessionStatus,
    TerminationCheck,
    UserAccess,
    app_role_ids,
    app_role_name,
    entitlements,
    group_skip_reason,
    last_successful_sign_in,
    licences,
    new_password,
    odata_quote,
    parse_time,
    refused,
    session_revocation_status,
)
from connectors.entra.options import EntraOptions
from connectors.entra.policy import EntraPolicy, PolicyTarget


class EntraConnector(Connector):
    """Microsoft Entra ID (Azure AD) through Microsoft Graph."""

    kind = "entra"
    capabilities = frozenset(Capability)

    def __init__(
        self,
        name: str,
        options: EntraOptions,
        client_secret: SecretStr,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        """``http``: a shared client to use (the caller then closes it); by default the
        connector owns one, shared by all its calls."""
        super().__init__(name)
        self.options = options
        self.graph = GraphClient(
            name,
            GraphSettings(
                tenant_id=options.tenant_id,
                client_id=options.client_id,
                client_secret=client_secret,
                authority_host=options.authority_host,
                graph_base_url=options.graph_base_url,
                timeout_seconds=options.timeout_seconds,
                connect_timeout_seconds=options.connect_timeout_seconds,
                max_concurrency=options.max_concurrency,
                batch_attempts=options.batch_retry_attempts,
                batch_initial_seconds=options.batch_retry_initial_seconds,
                inline_retry_after_max=options.inline_retry_after_max_seconds,
            ),
            http=http,
        )
        self.policy = EntraPolicy(
            self.graph,
            name,
            PolicyTarget(
                policy_name=options.ca_policy_name,
                va_group_id=options.va_group_id,
                break_glass_ids=tuple(options.break_glass_ids),
                ca_state=options.ca_state,
            ),
        )

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], context: ConnectorContext) -> Self:
        opts = parse_options(EntraOptions, name, options)
        return cls(name, opts, context.secret(name, "client_secret", opts.client_secret))

    async def aclose(self) -> None:
        await self.graph.aclose()

    # ------------------------------------------------------------------ helpers

    def _account(self, user: Mapping[str, Any]) -> Account:
        return Account(
            self.name,
            str(user["id"]),
            login=user.get("userPrincipalName"),
            worker_id=user.get("employeeId"),
        )

    def _permanent(self, message: str, account_id: str | None) -> PermanentConnectorError:
        return PermanentConnectorError(message, connector=self.name, account_id=account_id)

    def _object_id(self, value: str, account_id: str | None) -> str:
        """An Entra object id (a GUID) checked before it goes into a URL path, so that a bad
        value from a database or playbook can never address another resource."""
        if not OBJECT_ID.fullmatch(value):
            raise self._permanent(f"{value!r} is not an Entra object id (a GUID)", account_id)
        return value

    def _directory_object(self, object_id: str) -> str:
        return f"{self.options.graph_base_url}/directoryObjects/{object_id}"

    async def _read_access(self, account: Account, *, methods: bool = True) -> UserAccess:
        """User, direct group memberships, app role assignments and auth methods in one batch."""
        uid = self._object_id(account.account_id, account.account_id)
        select = USER_FIELDS + (",signInActivity" if self.options.sign_in_activity else "")
        requests = [
            BatchRequest(
                "user",
                "GET",
                f"/users/{uid}?$select={select}",
                "read user",
                "User.Read.All"
                + (
                    " and AuditLog.Read.All (or set sign_in_activity = false)"
                    if self.options.sign_in_activity
                    else ""
                ),
            ),
            BatchRequest(
                "groups",
                "GET",
                f"/users/{uid}/memberOf/microsoft.graph.group?$select={GROUP_FIELDS}",
                "read group memberships",
                "GroupMember.Read.All",
            ),
            BatchRequest(
                "appRoles",
                "GET",
                f"/users/{uid}/appRoleAssignments",
                "read app role assignments",
                "AppRoleAssignment.ReadWrite.All",
            ),
        ]
        if methods:
            requests.append(
                BatchRequest(
                    "methods",
                    "GET",
                    f"/users/{uid}/authentication/methods",
                    "read authentication methods",
                    "UserAuthenticationMethod.Read.All",
                )
            )
        results = await self.graph.batch(requests, account_id=uid)
        by_id = {r.id: r for r in requests}
        user_response = results["user"]
        if user_response.status == 404:
            raise GraphNotFoundError(
                "account no longer exists in Entra ID", connector=self.name, account_id=uid
            )
        collected: dict[str, list[Mapping[str, Any]]] = {}
        for key, response in results.items():
            self.graph.raise_for_item(by_id[key], response, account_id=uid)
            if key != "user":
                collected[key] = [
                    item
                    async for item in self.graph.pages(
                        "",
                        op=by_id[key].op,
                        permission=by_id[key].permission,
                        account_id=uid,
                        first=response.json(),
                    )
                ]
        return UserAccess(
            user=user_response.json(),
            groups=collected["groups"],
            app_roles=collected["appRoles"],
            methods=collected.get("methods", []),
        )

    def _state(self, access: UserAccess) -> AccountState:
        user = access.user
        last = last_successful_sign_in(user)
        methods = [m for m in access.methods if m.get("@odata.type") != PASSWORD_METHOD]
        return AccountState(
            account=self._account(user),
            # Only an explicit false is "disabled": a missing value must never read as revoked.
            enabled=user.get("accountEnabled") is not False,
            read_at=utcnow(),
            locked=None,  # Graph exposes no lockout state per user
            entitlements=entitlements(access),
            mfa_registered=bool(methods) if access.methods else None,
            last_sign_in=last,
            sign_in_tracked=self.options.sign_in_activity,
            created_at=parse_time(user.get("createdDateTime")),
            sessions_valid_from=parse_time(user.get("signInSessionsValidFromDateTime")),
        )

    # ------------------------------------------------------------------ find / read

    async def find_account(self, worker: Worker) -> Account | None:
        attribute = self.options.correlation_attribute
        value = {
            "employeeId": worker.worker_id,
            "userPrincipalName": worker.upn,
            "mail": worker.email,
        }[attribute]
        if not value:
            return None
        if any(ord(c) < 32 for c in value):
            raise self._permanent(
                f"worker {attribute} contains control characters; refusing to query Graph with it",
                worker.worker_id,
            )
        body = await self.graph.get_json(
            "/users",
            params={
                "$filter": f"{attribute} eq {odata_quote(value)}",
                "$select": "id,userPrincipalName,employeeId,mail,accountEnabled",
            },
            op=f"find user by {attribute}",
            permission="User.Read.All",
            account_id=worker.worker_id,
        )
        users = (body or {}).get("value", [])
        if len(users) > 1:
            raise self._permanent(
                f"{len(users)} Entra users have {attribute} equal to this worker's; "
                "make the attribute unique before automating this worker",
                worker.worker_id,
            )
        return self._account(users[0]) if users else None

    async def read_state(self, account: Account) -> AccountState:
        return self._state(await self._read_access(account))

    # ------------------------------------------------------------------ termination

    async def disable(self, account: Account) -> ActionResult:
        return await self._set_enabled(account, enabled=False)

    async def enable(self, account: Account) -> ActionResult:
        return await self._set_enabled(account, enabled=True)

    async def _set_enabled(self, account: Account, *, enabled: bool) -> ActionResult:
        """``accountEnabled`` to ``enabled``, after reading whether it already is."""
        action = "enable" if enabled else "disable"
        started = utcnow()
        uid = self._object_id(account.account_id, account.account_id)
        user = await self.graph.get_json(
            f"/users/{uid}",
            params={"$select": "id,accountEnabled"},
            op="read accountEnabled",
            permission="User.Read.All",
            account_id=uid,
        )
        if user.get("accountEnabled") is enabled:
            return action_result(action, account, started, Outcome.ALREADY)
        response = await self.graph.request(
            "PATCH",
            f"/users/{uid}",
            json_body={"accountEnabled": enabled},
            op=f"{action} user (accountEnabled={str(enabled).lower()})",
            permission="User.EnableDisableAccount.All",
            account_id=uid,
        )
        return action_result(
            action,
            account,
            started,
            Outcome.DONE,
            vendor_request_id=response.request_id,
            response_sha256=response.sha256,
        )

    async def revoke_sessions(self, account: Account) -> ActionResult:
        started = utcnow()
        uid = self._object_id(account.account_id, account.account_id)
        response = await self.graph.request(
            "POST",
            f"/users/{uid}/revokeSignInSessions",
            op="revoke sign-in sessions",
            permission="User.RevokeSessions.All",
            account_id=uid,
        )
        if (response.json() or {}).get("value") is not True:
            raise self._permanent("revokeSignInSessions did not answer value=true", uid)
        user = await self.graph.get_json(
            f"/users/{uid}",
            params={"$select": "id,signInSessionsValidFromDateTime"},
            op="read signInSessionsValidFromDateTime",
            permission="User.Read.All",
            account_id=uid,
        )
        valid_from = parse_time(user.get("signInSessionsValidFromDateTime"))
        delay = timedelta(seconds=self.options.session_revocation_delay_seconds)
        detail = {
            "sessions": "requested",
            "requested_at": started.isoformat(),
            "effective_by": (started + delay).isoformat(),
        }
        if valid_from is not None and valid_from >= started - timedelta(seconds=5):
            detail["sessions_valid_from"] = valid_from.isoformat()
        else:
            detail["sessions_valid_from"] = "not yet reset in the read-back"
        return action_result(
            "revoke_sessions",
            account,
            started,
            Outcome.DONE,
            vendor_request_id=response.request_id,
            response_sha256=response.sha256,
            detail=detail,
        )

    def _removal_plan(
        self, uid: str, access: UserAccess
    ) -> tuple[list[tuple[BatchRequest, str]], list[Mapping[str, Any]], list[SkippedItem]]:
        """What to remove: (independent requests for one ``$batch`` with the entitlement each
        removes, phone methods for the ordered second wave, what cannot be removed and why)."""
        skipped: list[SkippedItem] = []
        first_wave: list[tuple[BatchRequest, str]] = []
        for group in access.groups:
            name = GROUP + str(group["id"])
            reason = group_skip_reason(group)
            if reason:
                skipped.append(SkippedItem(name, reason))
                continue
            first_wave.append(
                (
                    BatchRequest(
                        f"g{len(first_wave)}",
                        "DELETE",
                        f"/groups/{group['id']}/members/{uid}/$ref",
                        f"remove membership of group {group['id']}",
                        "GroupMember.ReadWrite.All",
                    ),
                    name,
                )
            )
        for assignment in access.app_roles:
            first_wave.append(
                (
                    BatchRequest(
                        f"a{len(first_wave)}",
                        "DELETE",
                        f"/users/{uid}/appRoleAssignments/{assignment['id']}",
                        f"remove app role assignment {assignment['id']}",
                        "AppRoleAssignment.ReadWrite.All",
                    ),
                    app_role_name(assignment),
                )
            )
        direct, by_group = licences(access.user)
        for sku, group_id in sorted(by_group.items()):
            skipped.append(SkippedItem(LICENSE + sku, f"licence assigned through group {group_id}"))
        if direct:
            first_wave.append(
                (
                    BatchRequest(
                        "licences",
                        "POST",
                        f"/users/{uid}/assignLicense",
                        "remove directly assigned licences",
                        "LicenseAssignment.ReadWrite.All",
                        body={"addLicenses": [], "removeLicenses": sorted(direct)},
                    ),
                    ",".join(LICENSE + sku for sku in sorted(direct)),
                )
            )
        phones: list[Mapping[str, Any]] = []
        for method in access.methods:
            kind = str(method.get("@odata.type"))
            if kind == PASSWORD_METHOD:
                continue  # cannot be deleted; the disabled account makes it useless
            collection = METHOD_COLLECTIONS.get(kind)
            name = f"authMethod:{kind.rsplit('.', 1)[-1]}/{method.get('id')}"
            if collection is None:
                skipped.append(SkippedItem(name, "method type not deletable through Graph v1.0"))
            elif collection == "phoneMethods":
                phones.append(method)
            else:
                first_wave.append(
                    (
                        BatchRequest(
                            f"m{len(first_wave)}",
                            "DELETE",
                            f"/users/{uid}/authentication/{collection}/{method['id']}",
                            f"delete authentication method {name}",
                            "UserAuthenticationMethod.ReadWrite.All",
                        ),
                        name,
                    )
                )
        return first_wave, phones, skipped

    async def remove_access(self, account: Account) -> ActionResult:
        started = utcnow()
        uid = self._object_id(account.account_id, account.account_id)
        first_wave, phones, skipped = self._removal_plan(uid, await self._read_access(account))
        removed: list[str] = []
        digests: list[str] = []
        request_id: str | None = None
        if first_wave:
            results = await self.graph.batch([r for r, _ in first_wave], account_id=uid)
            for request, name in first_wave:
                response = results[request.id]
                request_id = request_id or response.request_id
                digests.append(response.sha256)
                if response.status == 404:
                    continue  # gone already (a previous attempt, or someone else)
                if response.status == 400:
                    skipped += [SkippedItem(item, refused(response)) for item in name.split(",")]
                    continue
                self.graph.raise_for_item(request, response, account_id=uid)
                removed.extend(name.split(","))
        # Phone methods one at a time, in order, the default (mobile) one last.
        phones.sort(key=lambda m: PHONE_ORDER.get(str(m.get("phoneType")), 1))
        for method in phones:
            name = f"authMethod:phoneAuthenticationMethod/{method.get('id')}"
            try:
                response = await self.graph.request(
                    "DELETE",
                    f"/users/{uid}/authentication/phoneMethods/{method['id']}",
                    op=f"delete phone method ({method.get('phoneType')})",
                    permission="UserAuthenticationMethod.ReadWrite.All",
                    account_id=uid,
                )
            except GraphNotFoundError:
                continue
            except GraphBadRequestError as exc:
                skipped.append(SkippedItem(name, f"Graph refused: {exc.graph_message}"))
                continue
            digests.append(response.sha256)
            removed.append(name)
        outcome = change_outcome(bool(removed), bool(skipped))
        return action_result(
            "remove_access",
            account,
            started,
            outcome,
            vendor_request_id=request_id,
            response_sha256=sha256_hex("\n".join(digests).encode()),
            removed=tuple(removed),
            skipped=tuple(skipped),
        )

    async def restore_access(self, account: Account, snapshot: Sequence[str]) -> ActionResult:
        """Put back groups, app role assignments and licences of the snapshot in one ``$batch``.

        Not restorable, each reported with the reason: authentication methods (credentials
        only the worker can register again), groups or app roles that no longer exist,
        licences the tenant no longer holds (Graph's refusal is quoted). A licence comes back
        with every service plan enabled: the plans disabled before were not recorded.
        """
        started = utcnow()
        uid = self._object_id(account.account_id, account.account_id)
        plan, skipped = self._restore_plan(uid, snapshot)
        digests: list[str] = []
        request_id: str | None = None
        changed = False
        if plan:
            results = await self.graph.batch([r for r, _ in plan], account_id=uid)
            for request, item in plan:
                response = results[request.id]
                request_id = request_id or response.request_id
                digests.append(response.sha256)
                changed = changed or 200 <= response.status < 300
                reason = self._restore_refusal(request, response, uid)
                if reason:
                    skipped.append(SkippedItem(item, reason))
        held = entitlements(await self._read_access(account, methods=False))
        return restore_result(
            account,
            started,
            snapshot,
            held,
            skipped,
            changed=changed,
            vendor_request_id=request_id,
            response_sha256=sha256_hex("\n".join(digests).encode()) if digests else None,
        )

    def _restore_plan(
        self, uid: str, snapshot: Sequence[str]
    ) -> tuple[list[tuple[BatchRequest, str]], list[SkippedItem]]:
        """(one request per restorable snapshot item, the items that cannot be restored)."""
        plan: list[tuple[BatchRequest, str]] = []
        skipped: list[SkippedItem] = []
        for item in sorted(set(snapshot)):
            kind, _, ref = item.partition(":")
            n = f"r{len(plan)}"
            if item.startswith(GROUP) and OBJECT_ID.fullmatch(ref):
                request = BatchRequest(
                    n,
                    "POST",
                    f"/groups/{ref}/members/$ref",
                    f"restore membership of group {ref}",
                    "GroupMember.ReadWrite.All",
                    body={"@odata.id": self._directory_object(uid)},
                )
            elif item.startswith(LICENSE) and OBJECT_ID.fullmatch(ref):
                request = BatchRequest(
                    n,
                    "POST",
                    f"/users/{uid}/assignLicense",
                    f"restore licence {ref}",
                    "LicenseAssignment.ReadWrite.All",
                    body={
                        "addLicenses": [{"skuId": ref, "disabledPlans": []}],
                        "removeLicenses": [],
                    },
                )
            elif item.startswith(APP_ROLE) and app_role_ids(item) is not None:
                resource, role = app_role_ids(item) or ("", "")
                request = BatchRequest(
                    n,
                    "POST",
                    f"/users/{uid}/appRoleAssignments",
                    f"restore app role {role} of {resource}",
                    "AppRoleAssignment.ReadWrite.All",
                    body={"principalId": uid, "resourceId": resource, "appRoleId": role},
                )
            elif kind == "authMethod":
                skipped.append(SkippedItem(item, METHOD_NOT_RESTORABLE))
                continue
            else:
                skipped.append(SkippedItem(item, "not an entitlement this connector removes"))
                continue
            plan.append((request, item))
        return plan, skipped

    def _restore_refusal(
        self, request: BatchRequest, response: GraphResponse, uid: str
    ) -> str | None:
        """Why a restore request put nothing back, or ``None`` when the item is held now.

        404: the group or app is gone; 400: Graph's own reason (a licence the tenant no longer
        holds, a dynamic group), unless it says the item is already there. Anything else
        (403, throttling, 5xx) is raised.
        """
        if 200 <= response.status < 300:
            return None
        if response.status == 404:
            return "no longer exists in Entra ID"
        if response.status == 400:
            _, message = graph_error(response.json())
            if "already exist" in message:
                return None
            return refused(response)
        self.graph.raise_for_item(request, response, account_id=uid)
        return None

    async def verify_termination(
        self, account: Account, *, sessions_requested_at: datetime | None = None
    ) -> TerminationCheck:
        """Read the account back and say whether the termination holds (for +5 min / +24 h).

        Reads ``accountEnabled``, ``signInSessionsValidFromDateTime`` and what the user still
        holds; leftovers that Entra will not let us remove per user (dynamic groups,
        group-assigned licences) are listed, not counted as failures.
        """
        access = await self._read_access(account)
        state = self._state(access)
        problems: list[str] = []
        unremovable: list[SkippedItem] = []
        if state.enabled:
            problems.append("accountEnabled is still true")
        for group in access.groups:
            reason = group_skip_reason(group)
            if reason:
                unremovable.append(SkippedItem(GROUP + str(group["id"]), reason))
            else:
                problems.append(f"still a member of group {group['id']}")
        direct, by_group = licences(access.user)
        problems += [f"licence {sku} still directly assigned" for sku in sorted(direct)]
        unremovable += [
            SkippedItem(LICENSE + sku, f"licence assigned through group {gid}")
            for sku, gid in sorted(by_group.items())
        ]
        problems += [f"app role assignment {a.get('id')} remains" for a in access.app_roles]
        problems += [
            f"authentication method {m.get('@odata.type')} {m.get('id')} still registered"
            for m in access.methods
            if m.get("@odata.type") != PASSWORD_METHOD
        ]
        sessions: SessionStatus = "unknown"
        if sessions_requested_at is not None:
            sessions = session_revocation_status(
                state,
                sessions_requested_at,
                utcnow(),
                timedelta(seconds=self.options.session_revocation_delay_seconds),
            )
            if sessions == "not_reset":
                problems.append("signInSessionsValidFromDateTime predates the revocation")
        return TerminationCheck(
            state=state,
            verified=not problems,
            sessions=sessions,
            problems=tuple(problems),
            left_unremovable=tuple(unremovable),
        )

    # ------------------------------------------------------------------ joiner / mover

    def _split_desired(self, desired: DesiredAccess, account_id: str) -> tuple[set[str], set[str]]:
        groups: set[str] = set()
        licences: set[str] = set()
        for item in desired.entitlements:
            if item.startswith(GROUP):
                groups.add(self._object_id(item[len(GROUP) :], account_id))
            elif item.startswith(LICENSE):
                licences.add(self._object_id(item[len(LICENSE) :], account_id))
            else:
                raise self._permanent(
                    f"entitlement {item!r} is not 'group:<id>' or 'license:<skuId>'; "
                    "fix the playbook",
                    account_id,
                )
        return groups, licences

    async def _grant(
        self, uid: str, groups: set[str], licences: set[str]
    ) -> tuple[list[str], list[GraphResponse]]:
        requests: list[BatchRequest] = [
            BatchRequest(
                f"add{n}",
                "POST",
                f"/groups/{gid}/members/$ref",
                f"add to group {gid}",
                "GroupMember.ReadWrite.All",
                body={"@odata.id": self._directory_object(uid)},
            )
            for n, gid in enumerate(sorted(groups))
        ]
        if licences:
            requests.append(
                BatchRequest(
                    "addLicences",
                    "POST",
                    f"/users/{uid}/assignLicense",
                    "assign licences",
                    "LicenseAssignment.ReadWrite.All",
                    body={
                        "addLicenses": [
                            {"skuId": s, "disabledPlans": []} for s in sorted(licences)
                        ],
                        "removeLicenses": [],
                    },
                )
            )
        if not requests:
            return [], []
        results = await self.graph.batch(requests, account_id=uid)
        for request in requests:
            response = results[request.id]
            if request.url.endswith("/members/$ref") and response.status == 400:
                _, message = graph_error(response.json())
                if "already exist" in message:
                    continue  # already a member: the desired state holds
            self.graph.raise_for_item(request, response, account_id=uid)
        added = [GROUP + g for g in sorted(groups)] + [LICENSE + s for s in sorted(licences)]
        return added, list(results.values())

    async def create_account(self, worker: Worker, desired: DesiredAccess) -> Account:
        groups, licences = self._split_desired(desired, worker.worker_id)
        if licences and not self.options.usage_location:
            raise self._permanent(
                "licences need a usage location: set usage_location in the connector options",
                worker.worker_id,
            )
        if await self.find_account(worker) is not None:
            raise self._permanent(
                "an Entra account for this worker already exists", worker.worker_id
            )
        upn = worker.upn or (
            f"{worker.worker_id.lower()}@{self.options.upn_domain}"
            if self.options.upn_domain
            else None
        )
        if not upn:
            raise self._permanent(
                "worker has no UPN and upn_domain is not configured", worker.worker_id
            )
        nickname = re.sub(r"[^A-Za-z0-9._-]", "", upn.split("@", 1)[0])[:64] or worker.worker_id
        body: dict[str, Any] = {
            "accountEnabled": True,
            "displayName": worker.name or worker.worker_id,
            "mailNickname": nickname,
            "userPrincipalName": upn,
            "employeeId": worker.worker_id,
            "passwordProfile": {"forceChangePasswordNextSignIn": True, "password": new_password()},
        }
        if worker.email:
            body["mail"] = worker.email
        if self.options.usage_location:
            body["usageLocation"] = self.options.usage_location
        response = await self.graph.request(
            "POST",
            "/users",
            json_body=body,
            op="create user",
            permission="User.ReadWrite.All",
            account_id=worker.worker_id,
        )
        account = self._account(response.json())
        await self._grant(account.account_id, groups, licences)
        return account

    async def apply_entitlements(self, account: Account, desired: DesiredAccess) -> ActionResult:
        started = utcnow()
        uid = self._object_id(account.account_id, account.account_id)
        want_groups, want_licences = self._split_desired(desired, uid)
        access = await self._read_access(account, methods=False)
        skipped: list[SkippedItem] = []
        removals: list[tuple[BatchRequest, str]] = []
        have_groups: set[str] = set()
        for group in access.groups:
            gid = str(group["id"])
            have_groups.add(gid)
            if gid in want_groups:
                continue
            reason = group_skip_reason(group)
            if reason:
                skipped.append(SkippedItem(GROUP + gid, reason))
                continue
            removals.append(
                (
                    BatchRequest(
                        f"rm{len(removals)}",
                        "DELETE",
                        f"/groups/{gid}/members/{uid}/$ref",
                        f"remove membership of group {gid}",
                        "GroupMember.ReadWrite.All",
                    ),
                    GROUP + gid,
                )
            )
        direct, by_group = licences(access.user)
        drop = sorted(direct - want_licences)
        if drop:
            removals.append(
                (
                    BatchRequest(
                        "rmLicences",
                        "POST",
                        f"/users/{uid}/assignLicense",
                        "remove licences",
                        "LicenseAssignment.ReadWrite.All",
                        body={"addLicenses": [], "removeLicenses": drop},
                    ),
                    ",".join(LICENSE + s for s in drop),
                )
            )
        removed: list[str] = []
        if removals:
            results = await self.graph.batch([r for r, _ in removals], account_id=uid)
            for request, name in removals:
                if results[request.id].status != 404:
                    self.graph.raise_for_item(request, results[request.id], account_id=uid)
                removed.extend(name.split(","))
        added, _ = await self._grant(
            uid, want_groups - have_groups, want_licences - direct - set(by_group)
        )
        outcome = change_outcome(bool(removed or added), bool(skipped))
        return action_result(
            "apply_entitlements",
            account,
            started,
            outcome,
            removed=tuple(removed),
            added=tuple(added),
            skipped=tuple(skipped),
        )

    # ------------------------------------------------------------------ inactivity

    async def list_accounts(self) -> AsyncIterator[AccountState]:
        select = "id,userPrincipalName,employeeId,accountEnabled,createdDateTime"
        select += ",signInSessionsValidFromDateTime"
        if self.options.sign_in_activity:
            select += ",signInActivity"
        # Graph serves at most 120 users per page when signInActivity is selected, 999 otherwise.
        top = "120" if self.options.sign_in_activity else "999"
        async for user in self.graph.pages(
            "/users",
            params={"$select": select, "$top": top},
            op="list users",
            permission="User.Read.All"
            + (" and AuditLog.Read.All" if self.options.sign_in_activity else ""),
        ):
            yield self._state(UserAccess(user=user, groups=[], app_roles=[], methods=[]))

    # ------------------------------------------------------------------ policy

    async def read_policy(self) -> PolicyState:
        return await self.policy.read()

    async def apply_policy(self, baseline: PolicyBaseline) -> ActionResult:
        return await self.policy.apply(baseline)
