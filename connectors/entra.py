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

Required application permissions (admin consent): User.Read.All, User.EnableDisableAccount.All,
User.RevokeSessions.All, GroupMember.ReadWrite.All, AppRoleAssignment.ReadWrite.All,
UserAuthenticationMethod.ReadWrite.All, LicenseAssignment.ReadWrite.All, AuditLog.Read.All
(sign-in activity, needs Entra ID P1), User.ReadWrite.All (joiner), Policy.Read.All and
Policy.ReadWrite.ConditionalAccess, Directory.ReadWrite.All (smart lockout directory setting).
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from connectors.base import (
    Account,
    AccountState,
    ActionResult,
    Capability,
    Connector,
    ConnectorContext,
    Control,
    DesiredAccess,
    Outcome,
    PolicyBaseline,
    PolicySetting,
    PolicyState,
    SkippedItem,
    Worker,
    action_result,
    sha256_hex,
    utcnow,
)
from connectors.entra_graph import (
    BatchRequest,
    GraphBadRequestError,
    GraphClient,
    GraphNotFoundError,
    GraphResponse,
    GraphSettings,
    graph_error,
)
from connectors.entra_policy import (
    ENABLED,
    PASSWORD_RULE_TEMPLATE_ID,
    CaState,
    CaWanted,
    ca_body,
    ca_differences,
    lockout_values,
    read_lockout,
    sign_in_frequency_hours,
)
from lifecycle.exceptions import ConfigError, PermanentConnectorError
from lifecycle.retry import RetryPolicy
from lifecycle.secrets import resolve_secret

GROUP, LICENSE, APP_ROLE = "group:", "license:", "appRole:"
CorrelationAttribute = Literal["employeeId", "userPrincipalName", "mail"]

USER_FIELDS = (
    "id,userPrincipalName,employeeId,mail,accountEnabled,createdDateTime,"
    "signInSessionsValidFromDateTime,assignedLicenses,licenseAssignmentStates"
)
GROUP_FIELDS = (
    "id,displayName,groupTypes,membershipRule,onPremisesSyncEnabled,mailEnabled,securityEnabled"
)

#: authenticationMethod @odata.type -> the collection its DELETE goes to.
METHOD_COLLECTIONS: Mapping[str, str] = {
    "#microsoft.graph.phoneAuthenticationMethod": "phoneMethods",
    "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod": "microsoftAuthenticatorMethods",
    "#microsoft.graph.fido2AuthenticationMethod": "fido2Methods",
    "#microsoft.graph.emailAuthenticationMethod": "emailMethods",
    "#microsoft.graph.softwareOathAuthenticationMethod": "softwareOathMethods",
    "#microsoft.graph.temporaryAccessPassAuthenticationMethod": "temporaryAccessPassMethods",
    "#microsoft.graph.windowsHelloForBusinessAuthenticationMethod": (
        "windowsHelloForBusinessMethods"
    ),
    "#microsoft.graph.platformCredentialAuthenticationMethod": "platformCredentialMethods",
}
PASSWORD_METHOD = "#microsoft.graph.passwordAuthenticationMethod"  # noqa: S105 - a type name
#: Deletion order of phone methods: the mobile phone is Entra's default phone method and cannot
#: go while an alternate mobile is registered, so it is removed last.
PHONE_ORDER = {"alternateMobile": 0, "office": 1, "mobile": 2}


class EntraOptions(BaseModel):
    """``[connectors.<name>]`` with ``kind = "entra"``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["entra"] = "entra"
    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    """A secret reference, ``env:NAME`` or ``file:/path``."""
    authority_host: str = "https://login.microsoftonline.com"
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    correlation_attribute: CorrelationAttribute = "employeeId"
    va_group_id: str | None = None
    """The virtual-assistant group the Conditional Access policy targets."""
    break_glass_ids: list[str] = Field(default_factory=list)
    """Object ids of emergency-access accounts, always excluded from the policy."""
    ca_state: CaState = "report-only"
    ca_policy_name: str = "lifecycle: require MFA for virtual assistants"
    upn_domain: str | None = None
    """Domain for new accounts' userPrincipalName when the worker has no UPN."""
    usage_location: str | None = Field(default=None, min_length=2, max_length=2)
    """Two-letter country code set on new accounts; Graph requires one to assign licences."""
    sign_in_activity: bool = True
    """Read ``signInActivity`` (needs AuditLog.Read.All and Entra ID P1)."""
    session_revocation_delay_seconds: int = Field(default=300, ge=0)
    """How long after revokeSignInSessions Microsoft allows for every session to end."""
    max_concurrency: int = Field(default=8, ge=1, le=64)
    timeout_seconds: float = Field(default=30.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    retry_attempts: int = Field(default=4, ge=1, le=10)
    retry_initial_seconds: float = Field(default=0.5, ge=0)
    inline_retry_after_max_seconds: float = Field(default=10.0, ge=0)
    """A Retry-After up to this is waited for in the connector; longer goes back to the engine."""

    @field_validator("authority_host", "graph_base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (msal and bearer tokens need TLS)")
        return value.rstrip("/")


@dataclass(frozen=True, slots=True)
class _Access:
    """What a user holds, as read from Graph (one ``$batch``)."""

    user: Mapping[str, Any]
    groups: list[Mapping[str, Any]]
    app_roles: list[Mapping[str, Any]]
    methods: list[Mapping[str, Any]]


def odata_quote(value: str) -> str:
    """An OData string literal: single quotes doubled (the only escape OData string literals
    have); the whole query is percent-encoded by httpx."""
    return "'" + value.replace("'", "''") + "'"


def parse_time(value: Any) -> datetime | None:
    """A Graph timestamp; ``None`` for null and for Graph's "never" value 0001-01-01."""
    if not value or str(value).startswith("0001-01-01"):
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def last_successful_sign_in(user: Mapping[str, Any]) -> datetime | None:
    """The last *successful* sign-in; ``None`` when the user never signed in.

    ``signInActivity`` is null for users who never signed in. ``lastSignInDateTime`` also
    counts failed interactive attempts, so it is only a fallback for tenants whose answers
    predate ``lastSuccessfulSignInDateTime``.
    """
    activity = user.get("signInActivity")
    if not activity:
        return None
    if "lastSuccessfulSignInDateTime" in activity:
        return parse_time(activity.get("lastSuccessfulSignInDateTime"))
    candidates = [
        parse_time(activity.get("lastSignInDateTime")),
        parse_time(activity.get("lastNonInteractiveSignInDateTime")),
    ]
    present = [c for c in candidates if c is not None]
    return max(present) if present else None


def session_revocation_status(
    state: AccountState, requested_at: datetime, now: datetime, delay: timedelta
) -> Literal["not_reset", "requested", "effective"]:
    """Where a session revocation stands, from a read-back: for re-verification at +5 min.

    ``not_reset``: ``signInSessionsValidFromDateTime`` predates the request; ``requested``: it
    was reset but Microsoft's propagation window has not passed; ``effective``: both.
    """
    valid_from = state.sessions_valid_from
    if valid_from is None or valid_from < requested_at - timedelta(seconds=5):
        return "not_reset"
    return "effective" if now >= valid_from + delay else "requested"


def group_skip_reason(group: Mapping[str, Any]) -> str | None:
    """Why a membership cannot be removed per user, or ``None`` when it can."""
    if "DynamicMembership" in (group.get("groupTypes") or []):
        return "dynamic group: membership follows its rule; change the user's attributes or rule"
    if group.get("onPremisesSyncEnabled"):
        return "group synced from on-premises AD: remove the membership there"
    if group.get("mailEnabled") and "Unified" not in (group.get("groupTypes") or []):
        return "mail-enabled security group or distribution list: managed in Exchange Online"
    return None


def refused(response: GraphResponse) -> str:
    """The reason Graph gave for refusing a removal (400), for ``SkippedItem.reason``."""
    code, message = graph_error(response.json())
    return f"Graph refused: {code}: {message}"


def new_password(length: int = 24) -> str:
    """A random initial password meeting Entra's complexity rules (never logged or kept)."""
    alphabet = string.ascii_letters + string.digits + "!#%*+-=?@^_"
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(length))
        classes = [
            any(c.islower() for c in candidate),
            any(c.isupper() for c in candidate),
            any(c.isdigit() for c in candidate),
            any(not c.isalnum() for c in candidate),
        ]
        if all(classes):
            return candidate


SessionStatus = Literal["not_reset", "requested", "effective", "unknown"]


@dataclass(frozen=True, slots=True)
class TerminationCheck:
    """A read-back of a terminated account, judged: what still gives access, and sessions."""

    state: AccountState
    verified: bool
    """The account is disabled and holds nothing that could have been removed."""
    sessions: SessionStatus
    """``requested`` until Microsoft's propagation window has passed, then ``effective``."""
    problems: tuple[str, ...]
    left_unremovable: tuple[SkippedItem, ...]


class EntraConnector(Connector):
    """Microsoft Entra ID (Azure AD) through Microsoft Graph."""

    kind = "entra"
    capabilities = frozenset(Capability)

    def __init__(self, name: str, options: EntraOptions, client_secret: SecretStr) -> None:
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
                retry=RetryPolicy(
                    attempts=options.retry_attempts, initial_seconds=options.retry_initial_seconds
                ),
                inline_retry_after_max=options.inline_retry_after_max_seconds,
            ),
        )

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], context: ConnectorContext) -> Self:
        try:
            opts = EntraOptions.model_validate(dict(options))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '?'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(f"[connectors.{name}]: {problems}") from None
        secret = resolve_secret(
            opts.client_secret,
            allow_inline=context.allow_inline_secrets,
            what=f"[connectors.{name}] client_secret",
        )
        return cls(name, opts, secret)

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

    def _directory_object(self, object_id: str) -> str:
        return f"{self.options.graph_base_url}/directoryObjects/{object_id}"

    async def _read_access(self, account: Account, *, methods: bool = True) -> _Access:
        """User, direct group memberships, app role assignments and auth methods in one batch."""
        uid = account.account_id
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
        return _Access(
            user=user_response.json(),
            groups=collected["groups"],
            app_roles=collected["appRoles"],
            methods=collected.get("methods", []),
        )

    @staticmethod
    def _licences(user: Mapping[str, Any]) -> tuple[set[str], dict[str, str]]:
        """(directly assigned skuIds, skuId -> group id for group-only assignments)."""
        direct: set[str] = set()
        by_group: dict[str, str] = {}
        states = user.get("licenseAssignmentStates")
        if states is None:  # not selected or not returned: every assignedLicense counts as direct
            return {str(lic["skuId"]) for lic in user.get("assignedLicenses") or []}, {}
        for state in states:
            sku = str(state.get("skuId"))
            group = state.get("assignedByGroup")
            if group:
                by_group.setdefault(sku, str(group))
            else:
                direct.add(sku)
        return direct, {sku: g for sku, g in by_group.items() if sku not in direct}

    def _entitlements(self, access: _Access) -> frozenset[str]:
        direct, by_group = self._licences(access.user)
        return frozenset(
            [GROUP + str(g["id"]) for g in access.groups]
            + [LICENSE + sku for sku in direct | set(by_group)]
            + [APP_ROLE + f"{a.get('resourceId')}/{a.get('appRoleId')}" for a in access.app_roles]
        )

    def _state(self, access: _Access) -> AccountState:
        user = access.user
        last = last_successful_sign_in(user)
        methods = [m for m in access.methods if m.get("@odata.type") != PASSWORD_METHOD]
        return AccountState(
            account=self._account(user),
            enabled=bool(user.get("accountEnabled")),
            read_at=utcnow(),
            locked=None,  # Graph exposes no lockout state per user
            entitlements=self._entitlements(access),
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
        started = utcnow()
        uid = account.account_id
        user = await self.graph.get_json(
            f"/users/{uid}",
            params={"$select": "id,accountEnabled"},
            op="read accountEnabled",
            permission="User.Read.All",
            account_id=uid,
        )
        if user.get("accountEnabled") is False:
            return action_result("disable", account, started, Outcome.ALREADY)
        response = await self.graph.request(
            "PATCH",
            f"/users/{uid}",
            json_body={"accountEnabled": False},
            op="disable user (accountEnabled=false)",
            permission="User.EnableDisableAccount.All",
            account_id=uid,
        )
        return action_result(
            "disable",
            account,
            started,
            Outcome.DONE,
            vendor_request_id=response.request_id,
            response_sha256=response.sha256,
        )

    async def revoke_sessions(self, account: Account) -> ActionResult:
        started = utcnow()
        uid = account.account_id
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

    async def remove_access(self, account: Account) -> ActionResult:
        started = utcnow()
        uid = account.account_id
        access = await self._read_access(account)
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
                    APP_ROLE + f"{assignment.get('resourceId')}/{assignment.get('appRoleId')}",
                )
            )
        direct, by_group = self._licences(access.user)
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
        outcome = Outcome.PARTIAL if skipped else (Outcome.DONE if removed else Outcome.ALREADY)
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
        direct, by_group = self._licences(access.user)
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
                groups.add(item[len(GROUP) :])
            elif item.startswith(LICENSE):
                licences.add(item[len(LICENSE) :])
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
            if request.id.startswith("add") and response.status == 400:
                code = (response.json() or {}).get("error", {}).get("message", "")
                if "already exist" in code:
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
        uid = account.account_id
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
        direct, by_group = self._licences(access.user)
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
        outcome = (
            Outcome.PARTIAL
            if skipped
            else (Outcome.DONE if (removed or added) else Outcome.ALREADY)
        )
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
            yield self._state(_Access(user=user, groups=[], app_roles=[], methods=[]))

    # ------------------------------------------------------------------ policy

    def _ca_wanted(self, baseline: PolicyBaseline) -> CaWanted:
        if not self.options.va_group_id:
            raise self._permanent(
                "va_group_id is not configured: the MFA policy needs the virtual-assistant group",
                None,
            )
        return CaWanted(
            display_name=self.options.ca_policy_name,
            group_id=self.options.va_group_id,
            break_glass_ids=tuple(self.options.break_glass_ids),
            state=self.options.ca_state,
            mfa_required=baseline.mfa_required,
            sign_in_frequency_hours=baseline.session_max_hours,
        )

    async def _ca_policy(self) -> Mapping[str, Any] | None:
        async for policy in self.graph.pages(
            "/identity/conditionalAccess/policies",
            op="read Conditional Access policies",
            permission="Policy.Read.All",
        ):
            if policy.get("displayName") == self.options.ca_policy_name:
                return policy
        return None

    async def _settings(self) -> list[Mapping[str, Any]]:
        return [
            s
            async for s in self.graph.pages(
                "/groupSettings",
                op="read directory settings",
                permission="Directory.Read.All",
            )
        ]

    async def read_policy(self) -> PolicyState:
        policy = await self._ca_policy()
        lockout = read_lockout(await self._settings())
        name = self.options.ca_policy_name
        if policy is None:
            mfa: bool | str = False
            mfa_source = f"Conditional Access: no policy named {name!r}"
        else:
            wanted = self._ca_wanted(PolicyBaseline()) if self.options.va_group_id else None
            diffs = ca_differences(policy, wanted) if wanted else []
            state = policy.get("state")
            relevant = [d for d in diffs if not d.startswith("sign-in frequency")]
            # Coverage gaps make MFA not required for assistants; a missing break-glass
            # exclusion or a pending "enforce" is a finding in the source, not a gap.
            gaps = [
                d
                for d in relevant
                if not d.startswith("break-glass") and "configuration says enforce" not in d
            ]
            if "mfa" not in ((policy.get("grantControls") or {}).get("builtInControls") or []):
                gaps.append("no mfa grant")
            if gaps or state == "disabled":
                mfa = False
            else:
                mfa = True if state == ENABLED else "report-only"
            mfa_source = f"Conditional Access policy {name!r} ({policy.get('id')}) state={state}"
            if relevant:
                mfa_source += "; differs: " + "; ".join(relevant)
        setting_source = (
            f"directory setting {lockout.setting_id} (Password Rule Settings)"
            if lockout.setting_id
            else "Entra default (no Password Rule Settings directory setting)"
        )
        settings = (
            PolicySetting(Control.MFA, mfa, mfa_source),
            PolicySetting(
                Control.SESSION_MAX_HOURS,
                sign_in_frequency_hours(policy) if policy else None,
                f"Conditional Access policy {name!r} sessionControls.signInFrequency",
            ),
            PolicySetting(
                Control.LOCKOUT_THRESHOLD,
                lockout.threshold,
                f"{setting_source}: LockoutThreshold",
            ),
            PolicySetting(
                Control.LOCKOUT_DURATION_MINUTES,
                lockout.duration_seconds // 60,
                f"{setting_source}: LockoutDurationInSeconds={lockout.duration_seconds}",
            ),
            PolicySetting(
                Control.LOCKOUT_WINDOW_MINUTES,
                None,
                "not configurable: Entra smart lockout has no observation window setting",
            ),
            PolicySetting(
                Control.SESSION_IDLE_MINUTES,
                None,
                "not configurable in Entra ID: idle timeout belongs to each app / Microsoft 365",
            ),
        )
        return PolicyState(system=self.name, settings=settings, read_at=utcnow())

    async def apply_policy(self, baseline: PolicyBaseline) -> ActionResult:
        started = utcnow()
        wanted = self._ca_wanted(baseline)
        detail: dict[str, str] = {}
        digests: list[str] = []
        policy = await self._ca_policy()
        diffs = ca_differences(policy, wanted)
        if policy is None:
            response = await self.graph.request(
                "POST",
                "/identity/conditionalAccess/policies",
                json_body=ca_body(None, wanted),
                op="create Conditional Access policy",
                permission="Policy.ReadWrite.ConditionalAccess",
            )
            created = response.json() or {}
            detail["conditional_access"] = (
                f"created {created.get('id')} in state {created.get('state')}"
            )
            digests.append(response.sha256)
        elif diffs:
            body = ca_body(policy, wanted)
            response = await self.graph.request(
                "PATCH",
                f"/identity/conditionalAccess/policies/{policy['id']}",
                json_body=body,
                op="update Conditional Access policy",
                permission="Policy.ReadWrite.ConditionalAccess",
            )
            detail["conditional_access"] = "updated: " + "; ".join(diffs)
            digests.append(response.sha256)
        all_settings = await self._settings()
        lockout = read_lockout(all_settings)
        want_seconds = baseline.lockout_duration_minutes * 60
        if (lockout.threshold, lockout.duration_seconds) != (
            baseline.lockout_threshold,
            want_seconds,
        ):
            if lockout.setting_id is None:
                response = await self.graph.request(
                    "POST",
                    "/groupSettings",
                    json_body={
                        "templateId": PASSWORD_RULE_TEMPLATE_ID,
                        "values": lockout_values([], baseline.lockout_threshold, want_seconds),
                    },
                    op="create Password Rule Settings",
                    permission="Directory.ReadWrite.All",
                )
            else:
                existing = next(s for s in all_settings if str(s.get("id")) == lockout.setting_id)
                response = await self.graph.request(
                    "PATCH",
                    f"/groupSettings/{lockout.setting_id}",
                    json_body={
                        "values": lockout_values(
                            existing.get("values") or [], baseline.lockout_threshold, want_seconds
                        )
                    },
                    op="update Password Rule Settings",
                    permission="Directory.ReadWrite.All",
                )
            digests.append(response.sha256)
            if lockout.threshold != baseline.lockout_threshold:
                detail["lockout_threshold"] = f"{lockout.threshold} -> {baseline.lockout_threshold}"
            if lockout.duration_seconds != want_seconds:
                detail["lockout_duration_seconds"] = f"{lockout.duration_seconds} -> {want_seconds}"
        return action_result(
            "apply_policy",
            Account(self.name, "policy"),
            started,
            Outcome.DONE if detail else Outcome.ALREADY,
            response_sha256=sha256_hex("\n".join(digests).encode()) if digests else None,
            detail=detail,
        )
