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

Error mapping (RFC 7644 §3.12): 429 is transient with ``retry_after``; 5xx, timeouts and
connection failures are transient; 400 (``invalidFilter`` and others), 401, 403, 404, 409
(``uniqueness``) and 501 are permanent with a message saying what to fix. 412 depends on who set
the precondition: see ``ScimConnector._raise_for``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self
from urllib.parse import quote

import anyio
import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from scim2_models import (
    Context,
    Email,
    Entitlement,
    Error,
    Group,
    PatchOp,
    PatchOperation,
    Role,
    ScimFilter,
    ServiceProviderConfig,
    User,
)
from scim2_models.path import AttrPath, CompareOperator, Comparison, FilterNode

from connectors._http import (
    OAuthTokenSource,
    digest,
    pydantic_summary,
    request_id,
    short,
    status_error,
    transport_error,
)
from connectors.base import (
    Account,
    AccountState,
    ActionResult,
    Capability,
    Connector,
    ConnectorContext,
    DesiredAccess,
    Outcome,
    SkippedItem,
    Worker,
    action_result,
    utcnow,
)
from lifecycle.exceptions import (
    ConfigError,
    ConnectorError,
    PermanentConnectorError,
    TransientConnectorError,
)
from lifecycle.secrets import resolve_secret

log = logging.getLogger("lifecycle.connectors.scim")

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
SCIM_JSON = "application/scim+json"
ROLE_PREFIX = "role:"
ENTITLEMENT_PREFIX = "entitlement:"
MAX_PAGES = 10_000

#: Parametrised at runtime: the parameter is what resolves the paths of the operations.
_USER_OP: Any = PatchOperation[User]  # type: ignore[type-arg]
_USER_PATCH: Any = PatchOp[User]  # type: ignore[type-arg]

MatchAttribute = Literal["externalId", "userName", "emails"]
DEFAULT_MATCH: tuple[MatchAttribute, ...] = ("externalId", "userName", "emails")


# --------------------------------------------------------------------------- options


class ScimOAuthOptions(BaseModel):
    """OAuth 2.0 client credentials (RFC 6749 §4.4) instead of a static bearer token."""

    model_config = ConfigDict(extra="forbid")

    token_url: str
    client_id: str
    client_secret: str
    """``env:NAME`` or ``file:/path``."""
    scope: str | None = None


class ScimOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["scim"] = "scim"
    base_url: str
    """The SCIM root, e.g. ``https://ehr.example.org/scim/v2`` (``/Users`` is appended)."""
    token: str | None = None
    """Static bearer token reference, ``env:NAME`` or ``file:/path``."""
    oauth: ScimOAuthOptions | None = None
    timeout_seconds: float = Field(default=15.0, gt=0)
    page_size: int = Field(default=100, ge=1, le=1000)
    match: list[MatchAttribute] = Field(default_factory=lambda: list(DEFAULT_MATCH), min_length=1)
    """Which User attributes correlate a worker: externalId = worker id, userName = UPN (or
    email), emails = email."""
    verify_tls: bool = True

    @model_validator(mode="after")
    def _one_auth(self) -> Self:
        if (self.token is None) == (self.oauth is None):
            raise ValueError("set exactly one of 'token' (bearer) or [oauth] (client credentials)")
        if not self.base_url.startswith(("https://", "http://")):
            raise ValueError("'base_url' must be an http(s) URL")
        return self


# --------------------------------------------------------------------------- discovery


@dataclass(frozen=True, slots=True)
class ScimFeatures:
    """What the service said it supports (ServiceProviderConfig + the User schema)."""

    patch: bool
    filter: bool
    etag: bool
    max_results: int | None
    roles: bool
    entitlements: bool

    def page_size(self, wanted: int) -> int:
        return min(wanted, self.max_results) if self.max_results else wanted


@dataclass(slots=True)
class _Fetched:
    """A resource as the service returned it: raw JSON (kept for a faithful PUT) and its ETag."""

    raw: dict[str, Any]
    etag: str | None
    body: bytes


class _Precondition(TransientConnectorError):
    """The resource changed between our read and our conditional write; re-read and retry."""


class _NotFound(PermanentConnectorError):
    """The service answered 404 for the resource."""


class _Unimplemented(PermanentConnectorError):
    """The service answered 501: it does not implement the endpoint or operation."""


# --------------------------------------------------------------------------- the connector


class ScimConnector(Connector):
    """A SCIM 2.0 service provider, adapted to what its ServiceProviderConfig declares."""

    kind = "scim"
    capabilities = frozenset(
        {
            Capability.FIND_ACCOUNT,
            Capability.READ_STATE,
            Capability.DISABLE,
            Capability.REVOKE_SESSIONS,
            Capability.REMOVE_ACCESS,
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
        match: Sequence[MatchAttribute] = ("externalId", "userName", "emails"),
        owns_client: bool = True,
    ) -> None:
        super().__init__(name)
        if (token is None) == (oauth is None):
            raise ConfigError(f"[connectors.{name}]: give exactly one of token or oauth")
        self.base_url = base_url.rstrip("/")
        self._client = client
        self._owns_client = owns_client
        self._token = token
        self._oauth = oauth
        self.page_size = page_size
        self.match = tuple(match)
        self._features: ScimFeatures | None = None
        self._discover_lock = anyio.Lock()

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], context: ConnectorContext) -> Self:
        try:
            opts = ScimOptions.model_validate(dict(options))
        except ValidationError as exc:
            raise ConfigError(f"[connectors.{name}]: {pydantic_summary(exc)}") from exc
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(opts.timeout_seconds), verify=opts.verify_tls
        )
        token = oauth = None
        if opts.token is not None:
            token = resolve_secret(
                opts.token,
                allow_inline=context.allow_inline_secrets,
                what=f"[connectors.{name}] token",
            )
        elif opts.oauth is not None:
            secret = resolve_secret(
                opts.oauth.client_secret,
                allow_inline=context.allow_inline_secrets,
                what=f"[connectors.{name}.oauth] client_secret",
            )
            form: dict[str, SecretStr | str] = {"grant_type": "client_credentials"}
            if opts.oauth.scope:
                form["scope"] = opts.oauth.scope
            oauth = OAuthTokenSource(
                client,
                connector=name,
                token_url=opts.oauth.token_url,
                client_id=opts.oauth.client_id,
                client_secret=secret,
                form=form,
            )
        return cls(
            name,
            base_url=opts.base_url,
            client=client,
            token=token,
            oauth=oauth,
            page_size=opts.page_size,
            match=opts.match,
        )

    async def aclose(self) -> None:
        if self._owns_client and not self._client.is_closed:
            await self._client.aclose()

    # ----------------------------------------------------------------- HTTP

    async def _auth(self) -> str:
        if self._oauth is not None:
            return f"Bearer {await self._oauth.token()}"
        assert self._token is not None
        return f"Bearer {self._token.get_secret_value()}"

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        account_id: str | None = None,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int] | None = None,
        if_match: str | None = None,
        resource: str = "resource",
    ) -> httpx.Response:
        """One SCIM call; any non-2xx answer becomes a ConnectorError (see ``_raise_for``)."""
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        for attempt in (1, 2):
            headers = {"Accept": SCIM_JSON, "Authorization": await self._auth()}
            if json_body is not None:
                headers["Content-Type"] = SCIM_JSON
            if if_match:
                headers["If-Match"] = if_match
            content = None if json_body is None else json.dumps(json_body).encode()
            try:
                response = await self._client.request(
                    method, url, headers=headers, params=params, content=content
                )
            except httpx.HTTPError as exc:
                raise transport_error(
                    exc, connector=self.name, account_id=account_id, what=what
                ) from exc
            # A cached OAuth token can be revoked early: fetch a fresh one once.
            if response.status_code == 401 and self._oauth is not None and attempt == 1:
                self._oauth.invalidate()
                continue
            if response.is_success:
                return response
            raise self._raise_for(
                response,
                what=what,
                account_id=account_id,
                conditional=if_match is not None,
                resource=resource,
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for(
        self,
        response: httpx.Response,
        *,
        what: str,
        account_id: str | None,
        conditional: bool,
        resource: str,
    ) -> ConnectorError:
        """Translate a SCIM error response (RFC 7644 §3.12) into the engine's two kinds.

        412 Precondition Failed: when *we* sent ``If-Match`` (the GET + PUT path), it means a
        concurrent writer changed the resource between our read and our write. Nothing needs
        fixing by a human, and re-reading resolves it, so it is transient with
        ``retry_after=0``: the engine's step retry re-reads and re-applies. A 412 to a request
        without a precondition means the service demands one we do not send (a contract
        mismatch), which will not heal by retrying: permanent.
        """
        scim_type, detail = _scim_error(response)
        status = response.status_code
        label = f"{detail} (scimType {scim_type})" if scim_type else detail
        if status == 412 and conditional:
            return _Precondition(
                f"{what}: the {resource} changed since it was read (HTTP 412, ETag mismatch); "
                "it will be re-read and the change re-applied",
                connector=self.name,
                account_id=account_id,
                retry_after=0.0,
            )
        hints = {
            400: (
                "the service rejected the search filter; check that it can filter on the "
                f"attributes in 'match' of [connectors.{self.name}]"
                if scim_type == "invalidFilter"
                else "the service rejected the request as invalid; check the connector options "
                "and the service's schema"
            ),
            401: f"the service refused the credentials; renew 'token' (or [oauth]) of "
            f"[connectors.{self.name}]",
            403: "the credentials lack permission for this call; grant the SCIM client "
            "read/write on Users and Groups",
            404: f"the {resource} does not exist in the service (deleted outside lifecycle?); "
            "re-run correlation or unlink the account",
            409: "another resource already holds this userName or externalId (uniqueness); "
            "resolve the duplicate in the service"
            if scim_type == "uniqueness" or scim_type is None
            else "the service reported a conflict",
            412: "the service requires a precondition (If-Match) that was not sent; enable "
            "etag in its ServiceProviderConfig or disable the requirement",
            501: "the service does not implement this operation; check its ServiceProviderConfig",
        }
        return status_error(
            response,
            connector=self.name,
            account_id=account_id,
            what=what,
            detail=label,
            hints=hints,
            classes={404: _NotFound, 501: _Unimplemented},
        )

    # ----------------------------------------------------------------- discovery

    async def features(self) -> ScimFeatures:
        """Read ServiceProviderConfig and the User schema once; later calls reuse them."""
        if self._features is not None:
            return self._features
        async with self._discover_lock:
            if self._features is None:
                self._features = await self._discover()
        return self._features

    async def _discover(self) -> ScimFeatures:
        try:
            response = await self._request(
                "GET", "/ServiceProviderConfig", what="reading ServiceProviderConfig"
            )
            config = ServiceProviderConfig.model_validate(
                response.json(), scim_ctx=Context.RESOURCE_QUERY_RESPONSE
            )
        except (_NotFound, _Unimplemented) as exc:
            # RFC 7644 §4 requires the endpoint, but some services omit it: assume the least.
            # Any other refusal (401, 403, ...) is raised: it would fail every later call too.
            log.warning(
                "no usable ServiceProviderConfig, assuming no PATCH/filter/ETag",
                extra={"connector": self.name, "error": exc.message},
            )
            config = ServiceProviderConfig()
        except (ValueError, ValidationError) as exc:
            raise PermanentConnectorError(
                f"ServiceProviderConfig is not valid SCIM ({short(str(exc))}); check base_url "
                f"of [connectors.{self.name}] points at the SCIM root",
                connector=self.name,
            ) from exc
        roles, entitlements = await self._user_schema_attributes()
        max_results = config.filter.max_results if config.filter else None
        max_page = config.pagination.max_page_size if config.pagination else None
        bounds = [b for b in (max_results, max_page) if b]
        features = ScimFeatures(
            patch=bool(config.patch and config.patch.supported),
            filter=bool(config.filter and config.filter.supported),
            etag=bool(config.etag and config.etag.supported),
            max_results=min(bounds) if bounds else None,
            roles=roles,
            entitlements=entitlements,
        )
        log.info("discovered SCIM features", extra={"connector": self.name, **_asdict(features)})
        return features

    async def _user_schema_attributes(self) -> tuple[bool, bool]:
        """Whether the User schema declares ``roles`` and ``entitlements`` (RFC 7643 §7)."""
        try:
            response = await self._request(
                "GET", f"/Schemas/{USER_SCHEMA}", what="reading the User schema"
            )
            names = {
                str(attr.get("name", "")).casefold()
                for attr in response.json().get("attributes", [])
                if isinstance(attr, dict)
            }
        except (_NotFound, _Unimplemented, ValueError, AttributeError):
            return False, False  # no schema discovery: use no optional attribute
        return "roles" in names, "entitlements" in names

    # ----------------------------------------------------------------- resources

    async def _get(
        self, path: str, *, what: str, account_id: str | None, resource: str
    ) -> _Fetched:
        response = await self._request(
            "GET", path, what=what, account_id=account_id, resource=resource
        )
        raw = _json_object(response, connector=self.name, account_id=account_id, what=what)
        return _Fetched(raw, response.headers.get("ETag") or _meta_version(raw), response.content)

    async def _get_user(self, account_id: str, what: str) -> tuple[_Fetched, User[Any]]:
        fetched = await self._get(
            f"/Users/{_seg(account_id)}", what=what, account_id=account_id, resource="user"
        )
        return fetched, self._user(fetched.raw, account_id)

    def _user(self, raw: Mapping[str, Any], account_id: str | None) -> User[Any]:
        try:
            return User.model_validate(_core(raw, USER_SCHEMA), scim_ctx=Context.DEFAULT)
        except ValidationError as exc:
            raise PermanentConnectorError(
                f"the service returned a User that is not valid SCIM: {short(str(exc))}",
                connector=self.name,
                account_id=account_id,
            ) from exc

    async def _pages(
        self, endpoint: str, *, what: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every resource of a search, page by page (RFC 7644 §3.4.2.4)."""
        features = await self.features()
        count = features.page_size(self.page_size)
        start = 1
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            query: dict[str, str | int] = {**(params or {}), "startIndex": start, "count": count}
            response = await self._request("GET", endpoint, what=what, params=query)
            body = _json_object(response, connector=self.name, account_id=None, what=what)
            resources = body.get("Resources") or []
            if not isinstance(resources, list):
                raise PermanentConnectorError(
                    f"{what}: ListResponse 'Resources' is not a list", connector=self.name
                )
            page = [item for item in resources if isinstance(item, dict) and "id" in item]
            fresh = [item for item in page if str(item["id"]) not in seen]
            if page and not fresh:
                raise PermanentConnectorError(
                    f"{what}: the service returned the same page again for startIndex={start}; "
                    "it does not honour startIndex paging",
                    connector=self.name,
                )
            for item in fresh:
                seen.add(str(item["id"]))
                yield item
            total = body.get("totalResults")
            start += len(resources)
            if not resources or (isinstance(total, int) and start > total):
                return
        raise PermanentConnectorError(
            f"{what}: more than {MAX_PAGES} pages; raise page_size", connector=self.name
        )

    # ----------------------------------------------------------------- correlation

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
        features = await self.features()
        if features.filter:
            node = _any_of(wanted)
            candidates = [
                item
                async for item in self._pages(
                    "/Users", what="searching users", params={"filter": str(ScimFilter(node))}
                )
            ]
        else:
            candidates = [item async for item in self._pages("/Users", what="listing users")]
        # Re-check every hit ourselves: a lenient filter parser must not widen the match.
        hits = {str(item["id"]): item for item in candidates if _matches(item, wanted)}
        if not hits:
            return None
        if len(hits) > 1:
            raise PermanentConnectorError(
                f"{len(hits)} SCIM users match worker {worker.worker_id} "
                f"({', '.join(sorted(hits))}); remove the duplicate or narrow 'match'",
                connector=self.name,
                account_id=worker.worker_id,
            )
        account_id, raw = next(iter(hits.items()))
        return self._account(raw, account_id)

    def _account(self, raw: Mapping[str, Any], account_id: str) -> Account:
        return Account(
            self.name,
            account_id,
            login=_str_or_none(raw.get("userName")),
            worker_id=_str_or_none(raw.get("externalId")),
        )

    # ----------------------------------------------------------------- groups

    async def _memberships(self, account_id: str, user: User[Any] | None) -> dict[str, str]:
        """Group id -> displayName of every group holding the user, asked from the group side.

        Many services do not fill the read-only ``User.groups``; a ``members.value`` search (or
        a scan when filters are off) is the authority, and ``User.groups`` adds anything else.
        """
        features = await self.features()
        found: dict[str, str] = {}
        if features.filter:
            node = Comparison(AttrPath("members", sub_attr="value"), CompareOperator.eq, account_id)
            params = {"filter": str(ScimFilter(node)), "attributes": "displayName"}
            async for item in self._pages("/Groups", what="searching groups", params=params):
                found[str(item["id"])] = str(item.get("displayName") or item["id"])
        else:
            params = {"attributes": "displayName,members"}
            async for item in self._pages("/Groups", what="listing groups", params=params):
                if any(_member_is(m, account_id) for m in item.get("members") or []):
                    found[str(item["id"])] = str(item.get("displayName") or item["id"])
        for membership in (user.groups if user else None) or []:
            if membership.value and membership.value not in found:
                found[membership.value] = membership.display or membership.value
        return found

    async def _group_id(self, name: str, account_id: str) -> str | None:
        """Look the group up each time: joiners are rare, and a cached id could be stale."""
        features = await self.features()
        if features.filter:
            node = Comparison(AttrPath("displayName"), CompareOperator.eq, name)
            params = {"filter": str(ScimFilter(node)), "attributes": "displayName"}
        else:
            params = {"attributes": "displayName"}
        async for item in self._pages("/Groups", what="looking up a group", params=params):
            if str(item.get("displayName", "")).casefold() == name.casefold():
                return str(item["id"])
        return None

    async def _change_membership(
        self, group_id: str, account_id: str, *, add: bool
    ) -> httpx.Response | None:
        """Add or remove one member; PATCH when supported, else GET + conditional PUT.

        Returns ``None`` when the group no longer exists (nothing left to remove).
        """
        what = f"{'adding to' if add else 'removing from'} group {group_id}"
        features = await self.features()
        path = f"/Groups/{_seg(group_id)}"
        try:
            if features.patch:
                if add:
                    op = PatchOperation[Group](
                        op=PatchOperation.Op.add, path="members", value=[{"value": account_id}]
                    )
                else:
                    op = PatchOperation[Group](
                        op=PatchOperation.Op.remove,
                        path=f"members[value eq {ScimFilter.quote(account_id)}]",
                    )
                return await self._request(
                    "PATCH",
                    path,
                    what=what,
                    account_id=account_id,
                    json_body=_patch_body(PatchOp[Group](operations=[op])),
                    resource="group",
                )
            fetched = await self._get(path, what=what, account_id=account_id, resource="group")
            members = [m for m in fetched.raw.get("members") or [] if not _member_is(m, account_id)]
            if add:
                members.append({"value": account_id, "type": "User"})
            raw = _replacement(fetched.raw)
            raw["members"] = members
            return await self._request(
                "PUT",
                path,
                what=what,
                account_id=account_id,
                json_body=raw,
                if_match=fetched.etag if features.etag else None,
                resource="group",
            )
        except _NotFound:
            if add:
                raise
            return None

    # ----------------------------------------------------------------- user attribute writes

    async def _write_user(
        self,
        account_id: str,
        *,
        what: str,
        operations: Sequence[PatchOperation[Any]],
        replace: Mapping[str, Any],
    ) -> httpx.Response:
        """Change User attributes: PATCH ``operations``, or PUT the resource with ``replace``
        applied (``None`` drops an attribute) when the service has no PATCH."""
        features = await self.features()
        path = f"/Users/{_seg(account_id)}"
        if features.patch:
            return await self._request(
                "PATCH",
                path,
                what=what,
                account_id=account_id,
                json_body=_patch_body(_USER_PATCH(operations=list(operations))),
                resource="user",
            )
        fetched = await self._get(path, what=what, account_id=account_id, resource="user")
        raw = _replacement(fetched.raw)
        for key, value in replace.items():
            if value is None:
                raw.pop(key, None)
            else:
                raw[key] = value
        return await self._request(
            "PUT",
            path,
            what=what,
            account_id=account_id,
            json_body=raw,
            if_match=fetched.etag if features.etag else None,
            resource="user",
        )

    # ----------------------------------------------------------------- the contract

    async def read_state(self, account: Account) -> AccountState:
        fetched, user = await self._get_user(account.account_id, "reading the user back")
        groups = await self._memberships(account.account_id, user)
        return AccountState(
            account=self._account(fetched.raw, account.account_id),
            enabled=user.active is not False,
            read_at=utcnow(),
            entitlements=frozenset(groups.values()) | _attribute_entitlements(user),
            sign_in_tracked=False,
            created_at=user.meta.created if user.meta else None,
        )

    async def disable(self, account: Account) -> ActionResult:
        started = utcnow()
        what = "disabling the user"
        _, user = await self._get_user(account.account_id, what)
        if user.active is False:
            return action_result("disable", account, started, Outcome.ALREADY)
        response = await self._write_user(
            account.account_id,
            what=what,
            operations=[_USER_OP(op=PatchOperation.Op.replace_, path="active", value=False)],
            replace={"active": False},
        )
        _, after = await self._get_user(account.account_id, "verifying the disable")
        if after.active is not False:
            raise PermanentConnectorError(
                "the service accepted active=false but the user still reads active; check that "
                "the service honours 'active' (some map it to a custom attribute)",
                connector=self.name,
                account_id=account.account_id,
            )
        return action_result(
            "disable",
            account,
            started,
            Outcome.DONE,
            vendor_request_id=request_id(response),
            response_sha256=digest([response.content]),
            detail={"method": response.request.method},
        )

    async def revoke_sessions(self, account: Account) -> ActionResult:
        """SCIM has no session resource; ``active=false`` is what makes the service refuse
        sign-ins. The user is still read so that a vanished account is reported."""
        started = utcnow()
        await self._get_user(account.account_id, "checking the user for session revocation")
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
        _, user = await self._get_user(account.account_id, "reading access to remove")
        groups = await self._memberships(account.account_id, user)
        bodies: list[bytes] = []
        vendor_id: str | None = None
        removed: list[str] = []
        for group_id, name in sorted(groups.items(), key=lambda kv: kv[1]):
            response = await self._change_membership(group_id, account.account_id, add=False)
            if response is not None:
                bodies.append(response.content)
                vendor_id = vendor_id or request_id(response)
            removed.append(name)
        attributes = _attribute_entitlements(user)
        if attributes:
            ops = [
                _USER_OP(op=PatchOperation.Op.remove, path=attr)
                for attr, present in (("roles", user.roles), ("entitlements", user.entitlements))
                if present
            ]
            response = await self._write_user(
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
        outcome = Outcome.PARTIAL if skipped else (Outcome.DONE if removed else Outcome.ALREADY)
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

    async def apply_entitlements(self, account: Account, desired: DesiredAccess) -> ActionResult:
        started = utcnow()
        features = await self.features()
        _, user = await self._get_user(account.account_id, "reading entitlements")
        groups = await self._memberships(account.account_id, user)
        current = frozenset(groups.values()) | _attribute_entitlements(user)
        to_remove = sorted(current - desired.entitlements)
        to_add = sorted(desired.entitlements - current)
        removed: list[str] = []
        added: list[str] = []
        skipped: list[SkippedItem] = []
        bodies: list[bytes] = []
        by_name = {name: gid for gid, name in groups.items()}
        for item in to_remove:
            if _is_attribute(item):
                continue
            response = await self._change_membership(by_name[item], account.account_id, add=False)
            bodies.append(response.content if response is not None else b"")
            removed.append(item)
        for item in to_add:
            if _is_attribute(item):
                continue
            group_id = await self._group_id(item, account.account_id)
            if group_id is None:
                skipped.append(SkippedItem(item, "no SCIM group with this displayName exists"))
                continue
            response = await self._change_membership(group_id, account.account_id, add=True)
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
        outcome = Outcome.PARTIAL if skipped else (Outcome.DONE if changed else Outcome.ALREADY)
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
            ops.append(_replace_or_remove("roles", roles))
            replace["roles"] = roles or None
        if wanted_ents != have_ents:
            ents = [
                Entitlement(value=v).model_dump(scim_ctx=Context.RESOURCE_PATCH_REQUEST)
                for v in wanted_ents
            ]
            ops.append(_replace_or_remove("entitlements", ents))
            replace["entitlements"] = ents or None
        response = await self._write_user(
            account_id, what="setting roles and entitlements", operations=ops, replace=replace
        )
        removed = [ROLE_PREFIX + r for r in set(have_roles) - set(wanted_roles)]
        removed += [ENTITLEMENT_PREFIX + e for e in set(have_ents) - set(wanted_ents)]
        added = [ROLE_PREFIX + r for r in set(wanted_roles) - set(have_roles)]
        added += [ENTITLEMENT_PREFIX + e for e in set(wanted_ents) - set(have_ents)]
        return response, removed, added

    async def create_account(self, worker: Worker, desired: DesiredAccess) -> Account:
        features = await self.features()
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
        for name in sorted(i for i in desired.entitlements if not _is_attribute(i)):
            group_id = await self._group_id(name, worker.worker_id)
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
        response = await self._request(
            "POST",
            "/Users",
            what="creating the user",
            account_id=worker.worker_id,
            json_body=user.model_dump(scim_ctx=Context.RESOURCE_CREATION_REQUEST),
            resource="user",
        )
        raw = _json_object(
            response, connector=self.name, account_id=worker.worker_id, what="creating the user"
        )
        account = self._account(raw, str(raw["id"]))
        for group_id in group_ids.values():
            await self._change_membership(group_id, account.account_id, add=True)
        return account

    async def list_accounts(self) -> AsyncIterator[AccountState]:
        """Every user with its groups; group memberships are read in one pass over Groups."""
        members: dict[str, set[str]] = {}
        async for group in self._pages(
            "/Groups", what="listing groups", params={"attributes": "displayName,members"}
        ):
            name = str(group.get("displayName") or group["id"])
            for member in group.get("members") or []:
                if isinstance(member, dict) and member.get("value"):
                    members.setdefault(str(member["value"]), set()).add(name)
        async for raw in self._pages("/Users", what="listing users"):
            account_id = str(raw["id"])
            user = self._user(raw, account_id)
            groups = members.get(account_id, set()) | {
                g.display or g.value for g in user.groups or [] if g.value
            }
            yield AccountState(
                account=self._account(raw, account_id),
                enabled=user.active is not False,
                read_at=utcnow(),
                entitlements=frozenset(groups) | _attribute_entitlements(user),
                sign_in_tracked=False,
                created_at=user.meta.created if user.meta else None,
            )


# --------------------------------------------------------------------------- helpers


def _asdict(features: ScimFeatures) -> dict[str, Any]:
    return {f"scim_{k}": getattr(features, k) for k in features.__slots__}


def _seg(value: str) -> str:
    """A resource id as one URL path segment (ids are opaque; never let one add a path)."""
    return quote(value, safe="")


def _core(raw: Mapping[str, Any], schema: str) -> dict[str, Any]:
    """The core attributes of a resource; extension blocks (``urn:...`` keys) are left out so
    that a vendor extension does not make the core model refuse the resource."""
    core = {k: v for k, v in raw.items() if not k.lower().startswith("urn:")}
    core["schemas"] = [schema]
    return core


def _replacement(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A resource as read, made into a PUT body: read-only ``meta``/``groups`` dropped, every
    other attribute (extensions included) kept, so nothing is lost by replacing."""
    return {k: v for k, v in raw.items() if k not in ("meta", "groups")}


def _meta_version(raw: Mapping[str, Any]) -> str | None:
    meta = raw.get("meta")
    return str(meta["version"]) if isinstance(meta, dict) and meta.get("version") else None


def _json_object(
    response: httpx.Response, *, connector: str, account_id: str | None, what: str
) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise PermanentConnectorError(
            f"{what}: the service answered HTTP {response.status_code} without JSON; check "
            "base_url points at the SCIM root",
            connector=connector,
            account_id=account_id,
        ) from exc
    if not isinstance(body, dict):
        raise PermanentConnectorError(
            f"{what}: expected a JSON object", connector=connector, account_id=account_id
        )
    return body


def _scim_error(response: httpx.Response) -> tuple[str | None, str]:
    """``(scimType, detail)`` of a SCIM Error body; tolerant of services that send none."""
    try:
        error = Error.model_validate(response.json())
    except (ValueError, ValidationError):
        return None, response.reason_phrase
    return error.scim_type, error.detail or response.reason_phrase


def _patch_body(patch: PatchOp[Any]) -> dict[str, Any]:
    return patch.model_dump(scim_ctx=Context.RESOURCE_PATCH_REQUEST)


def _replace_or_remove(path: str, values: list[dict[str, Any]]) -> PatchOperation[Any]:
    op: PatchOperation[Any]
    if values:
        op = _USER_OP(op=PatchOperation.Op.replace_, path=path, value=values)
    else:
        op = _USER_OP(op=PatchOperation.Op.remove, path=path)
    return op


def _any_of(wanted: Iterable[tuple[MatchAttribute, str]]) -> FilterNode:
    """``externalId eq "..." or userName eq "..."``, every value quoted by scim2-models."""
    nodes: list[FilterNode] = []
    for attr, value in wanted:
        path = AttrPath("emails", sub_attr="value") if attr == "emails" else AttrPath(attr)
        nodes.append(Comparison(path, CompareOperator.eq, value))
    node = nodes[0]
    for other in nodes[1:]:
        node = node | other
    return node


def _matches(raw: Mapping[str, Any], wanted: Iterable[tuple[MatchAttribute, str]]) -> bool:
    """The same test as the filter, done locally: externalId is caseExact, the others not."""
    for attr, value in wanted:
        if attr == "externalId" and raw.get("externalId") == value:
            return True
        if attr == "userName" and str(raw.get("userName", "")).casefold() == value.casefold():
            return True
        if attr == "emails":
            for email in raw.get("emails") or []:
                if isinstance(email, dict) and str(email.get("value", "")).casefold() == (
                    value.casefold()
                ):
                    return True
    return False


def _member_is(member: Any, account_id: str) -> bool:
    return isinstance(member, dict) and member.get("value") == account_id


def _is_attribute(item: str) -> bool:
    return item.startswith((ROLE_PREFIX, ENTITLEMENT_PREFIX))


def _attribute_entitlements(user: User[Any]) -> frozenset[str]:
    roles = {ROLE_PREFIX + r.value for r in user.roles or [] if r.value}
    ents = {ENTITLEMENT_PREFIX + e.value for e in user.entitlements or [] if e.value}
    return frozenset(roles | ents)


def _str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
