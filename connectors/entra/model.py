"""What Microsoft Graph's bodies mean for lifecycle: entitlement names, removability, time.

Pure functions and value types over Graph's documented JSON (user, group, licenseAssignmentState,
authenticationMethod, signInActivity), kept apart from the connector's I/O so that each rule
(which memberships cannot be removed per user, which sign-in counts, when a session revocation
is effective) is stated once and tested directly.

Entitlements are named by kind and Graph id, because display names are not unique in Entra:
``group:<group id>``, ``license:<skuId>``, ``appRole:<resourceId>/<appRoleId>``.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from connectors.base import AccountState, SkippedItem
from connectors.entra.graph import GraphResponse, graph_error

GROUP, LICENSE, APP_ROLE = "group:", "license:", "appRole:"

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
METHOD_NOT_RESTORABLE = (
    "an authentication method is a credential only the worker can register again (issue a "
    "Temporary Access Pass so they can); an administrator cannot put it back"
)
OBJECT_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
"""An Entra object id (a GUID): checked before any id goes into a URL path."""
#: Deletion order of phone methods: the mobile phone is Entra's default phone method and cannot
#: go while an alternate mobile is registered, so it is removed last.
PHONE_ORDER = {"alternateMobile": 0, "office": 1, "mobile": 2}


@dataclass(frozen=True, slots=True)
class UserAccess:
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


def licences(user: Mapping[str, Any]) -> tuple[set[str], dict[str, str]]:
    """(directly assigned skuIds, skuId -> group id for licences held only through a group).

    ``licenseAssignmentStates`` tells direct from group-based assignment (``assignedByGroup``);
    a licence held both ways counts as direct, since the direct assignment can be removed.
    """
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


def entitlements(access: UserAccess) -> frozenset[str]:
    """Everything the user holds, named as playbooks and evidence name it."""
    direct, by_group = licences(access.user)
    return frozenset(
        [GROUP + str(g["id"]) for g in access.groups]
        + [LICENSE + sku for sku in direct | set(by_group)]
        + [app_role_name(a) for a in access.app_roles]
    )


def app_role_name(assignment: Mapping[str, Any]) -> str:
    return APP_ROLE + f"{assignment.get('resourceId')}/{assignment.get('appRoleId')}"


def app_role_ids(name: str) -> tuple[str, str] | None:
    """(resourceId, appRoleId) of an ``appRole:<resourceId>/<appRoleId>`` name, both GUIDs;
    ``None`` for anything else (a value that could address another resource)."""
    resource, _, role = name.removeprefix(APP_ROLE).partition("/")
    if name.startswith(APP_ROLE) and OBJECT_ID.fullmatch(resource) and OBJECT_ID.fullmatch(role):
        return resource, role
    return None
