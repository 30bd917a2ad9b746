"""Any SCIM 2.0 service (RFC 7643/7644): EHR or phone SaaS.

Payloads are scim2-models objects (``User``, ``Group``, ``PatchOp``, ``Error``,
``ServiceProviderConfig``); transport is our own ``httpx.AsyncClient`` (scim2-client would pull in
a second HTTP stack). The connector reads ``/ServiceProviderConfig`` once and adapts:

- PATCH ``active=false`` when ``patch.supported``; otherwise GET + PUT of the full resource,
  conditional on the ETag (``If-Match``) when ``etag.supported``, so a concurrent edit is never
  silently overwritten.
- Server-side filters when ``filter.supported`` (every value quoted by scim2-models, so a
  ``userName`` holding ``"`` or `` or `` cannot widen the filter, and every hit is re-checked
  locally); otherwise a paged scan matched on our side.
- Paging with ``startIndex``/``count``, bounded by ``filter.maxResults`` and
  ``pagination.maxPageSize``; a server may return fewer than asked, so paging follows what came.

Entitlements, as playbooks and read-backs name them: a plain name is a SCIM Group
``displayName``; ``role:<value>`` and ``entitlement:<value>`` are values of the User's ``roles``
and ``entitlements`` attributes, used only when the service's User schema declares them.

The undo of a termination: ``enable`` sets ``active`` back to true (read back like the
disable); ``restore_access`` rejoins the snapshot's groups, looked up again by displayName, and
puts its ``role:``/``entitlement:`` values back, reporting groups that no longer exist.

Retries: none here; transient errors (429 with ``retry_after``, 5xx, timeouts, a 412 to our own
``If-Match``) go to the service's executor. The token is refreshed once on a 401.

Error mapping (RFC 7644 §3.12): 429 is transient with ``retry_after``; 5xx, timeouts and
connection failures are transient; 400 (``invalidFilter`` and others), 401, 403, 404, 409
(``uniqueness``) and 501 are permanent with a message saying what to fix. 412 depends on who set
the precondition: see ``connectors.scim.api.ScimApi._raise_for``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Self

import httpx
from pydantic import SecretStr
from scim2_models import (
    Context,
    Email,
    Entitlement,
    PatchOperation,
    Role,
    ScimFilter,
    User,
)

from connectors._config import parse_options
from connectors._http import (
    BearerAuth,
    OAuthTokenSource,
    RestClient,
    ServiceCredentials,
    digest,
    http_client,
    only_match,
    request_id,
    switch_account,
)
from connectors.base import (
    OFFBOARDING,
    REVERSAL,
    Account,
    AccountState,
    ActionResult,
    Capability,
    Connector,
    ConnectorContext,
    DesiredAccess,
    Outcome,
    PermanentConnectorError,
    SkippedItem,
    Worker,
    action_result,
    change_outcome,
    restore_result,
    utcnow,
)
from connectors.scim.api import (
    DEFAULT_MATCH,
    ENTITLEMENT_PREFIX,
    ROLE_PREFIX,
    SCIM_JSON,
    USER_OP,
    MatchAttribute,
    ScimApi,
    ScimFeatures,
    any_of,
    attribute_entitlements,
    is_attribute,
    matches,
    replace_or_remove,
    str_or_none,
)
from connectors.scim.options import ScimOptions


class ScimConnector(Connector):
    """A SCIM 2.0 service provider, adapted to what its ServiceProviderConfig declares."""

    kind = "scim"
    capabilities = (
        OFFBOARDING
        | REVERSAL
        | {
            Capability.APPLY_ENTITLEMENTS,
            Capability.CREATE_ACCOUNT,
            Capability.LIST_ACCOUNTS,
        }
    )

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        client: httpx.AsyncClient,
        token: SecretStr | None = None,
        oauth: OAuthTokenSource | None = None,
        page_size: int = 100,
        match: Sequence[MatchAttribute] = DEFAULT_MATCH,
        owns_client: bool = True,
    ) -> None:
        super().__init__(name)
        auth = BearerAuth.of(name, token, oauth)
        rest = RestClient(
            name, base_url, client, auth, media_type=SCIM_JSON, owns_client=owns_client
        )
        self.api = ScimApi(rest, page_size=page_size)
        self.base_url = rest.base_url
        self.match = tuple(match)

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], context: ConnectorContext) -> Self:
        opts = parse_options(ScimOptions, name, options)
        credentials = ServiceCredentials.resolve(name, opts, context)
        client = http_client(opts.timeout_seconds, verify=opts.verify_tls)
        return cls(
            name,
            base_url=opts.base_url,
            client=client,
            token=credentials.token,
            oauth=credentials.oauth_source(client, name, opts),
            page_size=opts.page_size,
            match=opts.match,
        )

    async def aclose(self) -> None:
        await self.api.aclose()

    async def features(self) -> ScimFeatures:
        """What the service supports (read once from ServiceProviderConfig and the schema)."""
        return await self.api.features()

    def _wanted(self, worker: Worker) -> list[tuple[MatchAttribute, str]]:
        values: dict[MatchAttribute, str | None] = {
            "externalId": worker.worker_id,
            "userName": worker.upn or worker.email,
            "emails": worker.email,
        }
        return [(attr, v) for attr in self.match if (v := values[attr])]

    async def find_account(self, worker: Worker) -> Account | None:
        wanted = self._wanted(worker)
        if not wanted:
            return None
        features = await self.api.features()
        if features.filter:
            node = any_of(wanted)
            candidates = [
                item
                async for item in self.api.pages(
                    "/Users", what="searching users", params={"filter": str(ScimFilter(node))}
                )
            ]
        else:
            candidates = [item async for item in self.api.pages("/Users", what="listing users")]
        # Re-check every hit ourselves: a lenient filter parser must not widen the match.
        hits = {str(item["id"]): item for item in candidates if matches(item, wanted)}
        found = only_match(
            hits,
            connector=self.name,
            worker_id=worker.worker_id,
            matching=f"SCIM users match worker {worker.worker_id}",
            fix="remove the duplicate or narrow 'match'",
        )
        return None if found is None else self._account(found[1], found[0])

    def _account(self, raw: Mapping[str, Any], account_id: str) -> Account:
        return Account(
            self.name,
            account_id,
            login=str_or_none(raw.get("userName")),
            worker_id=str_or_none(raw.get("externalId")),
        )

    # ----------------------------------------------------------------- groups

    async def read_state(self, account: Account) -> AccountState:
        fetched, user = await self.api.get_user(account.account_id, "reading the user back")
        groups = await self.api.memberships(account.account_id, user)
        return AccountState(
            account=self._account(fetched.raw, account.account_id),
            enabled=user.active is not False,
            read_at=utcnow(),
            entitlements=frozenset(groups.values()) | attribute_entitlements(user),
            sign_in_tracked=False,
            created_at=user.meta.created if user.meta else None,
        )

    async def disable(self, account: Account) -> ActionResult:
        return await self._set_active(account, active=False)

    async def enable(self, account: Account) -> ActionResult:
        return await self._set_active(account, active=True)

    async def _set_active(self, account: Account, *, active: bool) -> ActionResult:
        """``active`` to the value wanted (PATCH, or conditional PUT), then read back."""

        async def read(what: str) -> User[Any]:
            return (await self.api.get_user(account.account_id, what))[1]

        async def write(_: User[Any], what: str) -> httpx.Response:
            return await self.api.write_user(
                account.account_id,
                what=what,
                operations=[USER_OP(op=PatchOperation.Op.replace_, path="active", value=active)],
                replace={"active": active},
            )

        return await switch_account(
            account,
            enable=active,
            connector=self.name,
            read=read,
            enabled=lambda user: user.active is not False,
            write=write,
            field=f"active={str(active).lower()}",
            hint="check that the service honours 'active' (some map it to a custom attribute)",
        )

    async def revoke_sessions(self, account: Account) -> ActionResult:
        """SCIM has no session resource; ``active=false`` is what makes the service refuse
        sign-ins. The user is still read so that a vanished account is reported."""
        started = utcnow()
        await self.api.get_user(account.account_id, "checking the user for session revocation")
        return action_result(
            "revoke_sessions",
            account,
            started,
            Outcome.NOT_APPLICABLE,
            detail={"reason": "SCIM defines no sessions; active=false blocks sign-in"},
        )

    async def remove_access(self, account: Account) -> ActionResult:
        """Leave every group and clear ``roles``/``entitlements``, then read back to verify."""
        started = utcnow()
        _, user = await self.api.get_user(account.account_id, "reading access to remove")
        groups = await self.api.memberships(account.account_id, user)
        bodies: list[bytes] = []
        vendor_id: str | None = None
        removed: list[str] = []
        for group_id, name in sorted(groups.items(), key=lambda kv: kv[1]):
            response = await self.api.change_membership(group_id, account.account_id, add=False)
            if response is not None:
                bodies.append(response.content)
                vendor_id = vendor_id or request_id(response)
            removed.append(name)
        attributes = attribute_entitlements(user)
        if attributes:
            ops = [
                USER_OP(op=PatchOperation.Op.remove, path=attr)
                for attr, present in (("roles", user.roles), ("entitlements", user.entitlements))
                if present
            ]
            response = await self.api.write_user(
                account.account_id,
                what="clearing roles and entitlements",
                operations=ops,
                replace={"roles": None, "entitlements": None},
            )
            bodies.append(response.content)
            removed.extend(sorted(attributes))
        # Verify: read the user and its groups again rather than trusting the 2xx answers.
        state = await self.read_state(account)
        skipped = tuple(
            SkippedItem(item, "still present when read back after removal")
            for item in sorted(state.entitlements)
        )
        outcome = change_outcome(bool(removed), bool(skipped))
        return action_result(
            "remove_access",
            account,
            started,
            outcome,
            vendor_request_id=vendor_id,
            response_sha256=digest(bodies) if bodies else None,
            removed=tuple(sorted(set(removed) - {s.item for s in skipped})),
            skipped=skipped,
        )

    async def restore_access(self, account: Account, snapshot: Sequence[str]) -> ActionResult:
        """Rejoin the snapshot's groups (by displayName, looked up again: ids may have changed)
        and put its ``role:``/``entitlement:`` values back; then read back.

        Groups that no longer exist, and values the service's User schema cannot hold, are
        reported as skipped.
        """
        started = utcnow()
        features = await self.api.features()
        _, user = await self.api.get_user(account.account_id, "reading access to restore")
        held = frozenset((await self.api.memberships(account.account_id, user)).values())
        skipped: list[SkippedItem] = []
        bodies: list[bytes] = []
        for name in sorted({i for i in snapshot if not is_attribute(i)} - held):
            group_id = await self.api.group_id(name, account.account_id)
            if group_id is None:
                skipped.append(SkippedItem(name, "no SCIM group with this displayName exists"))
                continue
            response = await self.api.change_membership(group_id, account.account_id, add=True)
            bodies.append(response.content if response is not None else b"")
        wanted = attribute_entitlements(user) | {i for i in snapshot if is_attribute(i)}
        change = await self._apply_attribute_entitlements(
            account.account_id, user, wanted, features, skipped
        )
        if change is not None:
            bodies.append(change[0].content)
        state = await self.read_state(account)
        return restore_result(
            account,
            started,
            snapshot,
            state.entitlements,
            skipped,
            changed=bool(bodies),
            response_sha256=digest(bodies) if bodies else None,
        )

    async def apply_entitlements(self, account: Account, desired: DesiredAccess) -> ActionResult:
        started = utcnow()
        features = await self.api.features()
        _, user = await self.api.get_user(account.account_id, "reading entitlements")
        groups = await self.api.memberships(account.account_id, user)
        current = frozenset(groups.values()) | attribute_entitlements(user)
        to_remove = sorted(current - desired.entitlements)
        to_add = sorted(desired.entitlements - current)
        removed: list[str] = []
        added: list[str] = []
        skipped: list[SkippedItem] = []
        bodies: list[bytes] = []
        by_name = {name: gid for gid, name in groups.items()}
        for item in to_remove:
            if is_attribute(item):
                continue
            response = await self.api.change_membership(
                by_name[item], account.account_id, add=False
            )
            bodies.append(response.content if response is not None else b"")
            removed.append(item)
        for item in to_add:
            if is_attribute(item):
                continue
            group_id = await self.api.group_id(item, account.account_id)
            if group_id is None:
                skipped.append(SkippedItem(item, "no SCIM group with this displayName exists"))
                continue
            response = await self.api.change_membership(group_id, account.account_id, add=True)
            bodies.append(response.content if response is not None else b"")
            added.append(item)
        attr_change = await self._apply_attribute_entitlements(
            account.account_id, user, desired.entitlements, features, skipped
        )
        if attr_change is not None:
            response, attr_removed, attr_added = attr_change
            bodies.append(response.content)
            removed.extend(attr_removed)
            added.extend(attr_added)
        changed = bool(removed or added)
        outcome = change_outcome(bool(changed), bool(skipped))
        return action_result(
            "apply_entitlements",
            account,
            started,
            outcome,
            response_sha256=digest(bodies) if bodies else None,
            removed=tuple(sorted(removed)),
            added=tuple(sorted(added)),
            skipped=tuple(skipped),
        )

    async def _apply_attribute_entitlements(
        self,
        account_id: str,
        user: User[Any],
        desired: frozenset[str],
        features: ScimFeatures,
        skipped: list[SkippedItem],
    ) -> tuple[httpx.Response, list[str], list[str]] | None:
        """Make ``roles``/``entitlements`` equal the ``role:``/``entitlement:`` items wanted."""
        wanted_roles = sorted(i[len(ROLE_PREFIX) :] for i in desired if i.startswith(ROLE_PREFIX))
        wanted_ents = sorted(
            i[len(ENTITLEMENT_PREFIX) :] for i in desired if i.startswith(ENTITLEMENT_PREFIX)
        )
        have_roles = sorted(r.value for r in user.roles or [] if r.value)
        have_ents = sorted(e.value for e in user.entitlements or [] if e.value)
        if wanted_roles and not features.roles:
            skipped.extend(
                SkippedItem(ROLE_PREFIX + r, "the service's User schema has no 'roles'")
                for r in wanted_roles
            )
            wanted_roles = have_roles
        if wanted_ents and not features.entitlements:
            skipped.extend(
                SkippedItem(
                    ENTITLEMENT_PREFIX + e, "the service's User schema has no 'entitlements'"
                )
                for e in wanted_ents
            )
            wanted_ents = have_ents
        if wanted_roles == have_roles and wanted_ents == have_ents:
            return None
        ops: list[PatchOperation[Any]] = []
        replace: dict[str, Any] = {}
        if wanted_roles != have_roles:
            roles = [
                Role(value=v).model_dump(scim_ctx=Context.RESOURCE_PATCH_REQUEST)
                for v in wanted_roles
            ]
            ops.append(replace_or_remove("roles", roles))
            replace["roles"] = roles or None
        if wanted_ents != have_ents:
            ents = [
                Entitlement(value=v).model_dump(scim_ctx=Context.RESOURCE_PATCH_REQUEST)
                for v in wanted_ents
            ]
            ops.append(replace_or_remove("entitlements", ents))
            replace["entitlements"] = ents or None
        response = await self.api.write_user(
            account_id, what="setting roles and entitlements", operations=ops, replace=replace
        )
        removed = [ROLE_PREFIX + r for r in set(have_roles) - set(wanted_roles)]
        removed += [ENTITLEMENT_PREFIX + e for e in set(have_ents) - set(wanted_ents)]
        added = [ROLE_PREFIX + r for r in set(wanted_roles) - set(have_roles)]
        added += [ENTITLEMENT_PREFIX + e for e in set(wanted_ents) - set(have_ents)]
        return response, removed, added

    async def create_account(self, worker: Worker, desired: DesiredAccess) -> Account:
        features = await self.api.features()
        login = worker.upn or worker.email or worker.worker_id
        roles = [
            i[len(ROLE_PREFIX) :] for i in sorted(desired.entitlements) if i.startswith(ROLE_PREFIX)
        ]
        ents = [
            i[len(ENTITLEMENT_PREFIX) :]
            for i in sorted(desired.entitlements)
            if i.startswith(ENTITLEMENT_PREFIX)
        ]
        unsupported = [ROLE_PREFIX + r for r in roles if not features.roles]
        unsupported += [ENTITLEMENT_PREFIX + e for e in ents if not features.entitlements]
        if unsupported:
            raise PermanentConnectorError(
                f"the service's User schema cannot hold {', '.join(unsupported)}; remove them "
                "from the playbook for this system",
                connector=self.name,
                account_id=worker.worker_id,
            )
        group_ids: dict[str, str] = {}
        for name in sorted(i for i in desired.entitlements if not is_attribute(i)):
            group_id = await self.api.group_id(name, worker.worker_id)
            if group_id is None:
                raise PermanentConnectorError(
                    f"no SCIM group named {name!r} exists; create it in the service or fix "
                    "the playbook",
                    connector=self.name,
                    account_id=worker.worker_id,
                )
            group_ids[name] = group_id
        user: User[Any] = User(
            user_name=login,
            external_id=worker.worker_id,
            display_name=worker.name,
            active=True,
            emails=[Email(value=worker.email, primary=True)] if worker.email else None,
            roles=[Role(value=r) for r in roles] or None,
            entitlements=[Entitlement(value=e) for e in ents] or None,
        )
        response = await self.api.request(
            "POST",
            "/Users",
            what="creating the user",
            account_id=worker.worker_id,
            json_body=user.model_dump(scim_ctx=Context.RESOURCE_CREATION_REQUEST),
            resource="user",
        )
        raw = self.api.json_object(response, account_id=worker.worker_id, what="creating the user")
        if not raw.get("id"):
            raise PermanentConnectorError(
                "the service created the user but returned no id; find it by externalId and "
                "link it by hand",
                connector=self.name,
                account_id=worker.worker_id,
            )
        account = self._account(raw, str(raw["id"]))
        for group_id in group_ids.values():
            await self.api.change_membership(group_id, account.account_id, add=True)
        return account

    async def list_accounts(self) -> AsyncIterator[AccountState]:
        """Every user with its groups; group memberships are read in one pass over Groups."""
        members: dict[str, set[str]] = {}
        async for group in self.api.pages(
            "/Groups", what="listing groups", params={"attributes": "displayName,members"}
        ):
            name = str(group.get("displayName") or group["id"])
            for member in group.get("members") or []:
                if isinstance(member, dict) and member.get("value"):
                    members.setdefault(str(member["value"]), set()).add(name)
        async for raw in self.api.pages("/Users", what="listing users"):
            account_id = str(raw["id"])
            user = self.api.user(raw, account_id)
            groups = members.get(account_id, set()) | {
                g.display or g.value for g in user.groups or [] if g.value
            }
            yield AccountState(
                account=self._account(raw, account_id),
                enabled=user.active is not False,
                read_at=utcnow(),
                entitlements=frozenset(groups) | attribute_entitlements(user),
                sign_in_tracked=False,
                created_at=user.meta.created if user.meta else None,
            )
