"""The SCIM 2.0 protocol side of the SCIM connector: one service provider, spoken to over httpx.

``ScimApi`` knows the wire: authentication (static bearer or OAuth client credentials), error
responses (RFC 7644 §3.12) turned into the engine's two kinds of error, discovery of
``/ServiceProviderConfig`` and the User schema, ``startIndex``/``count`` paging, group
membership changes and User attribute writes, each by PATCH where the service supports it and
by GET + conditional PUT otherwise. ``connectors.scim`` builds the connector contract on it.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import httpx
from pydantic import ValidationError
from scim2_models import (
    Context,
    Error,
    Group,
    PatchOp,
    PatchOperation,
    ScimFilter,
    ServiceProviderConfig,
    User,
)
from scim2_models.path import AttrPath, CompareOperator, Comparison, FilterNode

from connectors._http import (
    RestClient,
    json_object,
    path_segment,
    short,
    status_error,
)
from connectors.base import ConnectorError, PermanentConnectorError, TransientConnectorError

log = logging.getLogger("connectors.scim")

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_JSON = "application/scim+json"
ROLE_PREFIX = "role:"
ENTITLEMENT_PREFIX = "entitlement:"
MAX_PAGES = 10_000

#: Parametrised at runtime: the parameter is what resolves the paths of the operations.
USER_OP: Any = PatchOperation[User]  # type: ignore[type-arg]
USER_PATCH: Any = PatchOp[User]  # type: ignore[type-arg]

MatchAttribute = Literal["externalId", "userName", "emails"]
DEFAULT_MATCH: tuple[MatchAttribute, ...] = ("externalId", "userName", "emails")


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


# --------------------------------------------------------------------------- the protocol


class ScimApi:
    """One SCIM service provider: HTTP, errors, discovery, paging and the writes we make."""

    def __init__(self, rest: RestClient, *, page_size: int = 100) -> None:
        self.rest = rest
        self.name = rest.connector
        self.base_url = rest.base_url
        self.page_size = page_size
        self._features: ScimFeatures | None = None
        self._discover_lock = anyio.Lock()

    async def aclose(self) -> None:
        await self.rest.aclose()

    async def request(
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
        response = await self.rest.send(
            method,
            path,
            what=what,
            account_id=account_id,
            params=params,
            json_body=json_body,
            if_match=if_match,
        )
        if response.is_success:
            return response
        raise self._raise_for(
            response,
            what=what,
            account_id=account_id,
            conditional=if_match is not None,
            resource=resource,
        )

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
        scim_type, detail = scim_error(response)
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
            response = await self.request(
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
        log.info("discovered SCIM features", extra={"connector": self.name, **asdict(features)})
        return features

    async def _user_schema_attributes(self) -> tuple[bool, bool]:
        """Whether the User schema declares ``roles`` and ``entitlements`` (RFC 7643 §7)."""
        try:
            response = await self.request(
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

    def json_object(
        self, response: httpx.Response, *, account_id: str | None, what: str
    ) -> dict[str, Any]:
        return json_object(
            response,
            connector=self.name,
            account_id=account_id,
            what=what,
            hint="check base_url points at the SCIM root",
        )

    async def get(self, path: str, *, what: str, account_id: str | None, resource: str) -> _Fetched:
        response = await self.request(
            "GET", path, what=what, account_id=account_id, resource=resource
        )
        raw = self.json_object(response, account_id=account_id, what=what)
        return _Fetched(raw, response.headers.get("ETag") or meta_version(raw), response.content)

    async def get_user(self, account_id: str, what: str) -> tuple[_Fetched, User[Any]]:
        fetched = await self.get(
            f"/Users/{path_segment(account_id, connector=self.name)}",
            what=what,
            account_id=account_id,
            resource="user",
        )
        return fetched, self.user(fetched.raw, account_id)

    def user(self, raw: Mapping[str, Any], account_id: str | None) -> User[Any]:
        try:
            return User.model_validate(core(raw, USER_SCHEMA), scim_ctx=Context.DEFAULT)
        except ValidationError as exc:
            raise PermanentConnectorError(
                f"the service returned a User that is not valid SCIM: {short(str(exc))}",
                connector=self.name,
                account_id=account_id,
            ) from exc

    async def pages(
        self, endpoint: str, *, what: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every resource of a search, page by page (RFC 7644 §3.4.2.4)."""
        features = await self.features()
        count = features.page_size(self.page_size)
        start = 1
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            query: dict[str, str | int] = {**(params or {}), "startIndex": start, "count": count}
            response = await self.request("GET", endpoint, what=what, params=query)
            body = self.json_object(response, account_id=None, what=what)
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

    async def memberships(self, account_id: str, user: User[Any] | None) -> dict[str, str]:
        """Group id -> displayName of every group holding the user, asked from the group side.

        Many services do not fill the read-only ``User.groups``; a ``members.value`` search (or
        a scan when filters are off) is the authority, and ``User.groups`` adds anything else.
        """
        features = await self.features()
        found: dict[str, str] = {}
        if features.filter:
            node = Comparison(AttrPath("members", sub_attr="value"), CompareOperator.eq, account_id)
            params = {"filter": str(ScimFilter(node)), "attributes": "displayName"}
            async for item in self.pages("/Groups", what="searching groups", params=params):
                found[str(item["id"])] = str(item.get("displayName") or item["id"])
        else:
            params = {"attributes": "displayName,members"}
            async for item in self.pages("/Groups", what="listing groups", params=params):
                if any(member_is(m, account_id) for m in item.get("members") or []):
                    found[str(item["id"])] = str(item.get("displayName") or item["id"])
        for membership in (user.groups if user else None) or []:
            if membership.value and membership.value not in found:
                found[membership.value] = membership.display or membership.value
        return found

    async def group_id(self, name: str, account_id: str) -> str | None:
        """Look the group up each time: joiners are rare, and a cached id could be stale."""
        features = await self.features()
        if features.filter:
            node = Comparison(AttrPath("displayName"), CompareOperator.eq, name)
            params = {"filter": str(ScimFilter(node)), "attributes": "displayName"}
        else:
            params = {"attributes": "displayName"}
        async for item in self.pages("/Groups", what="looking up a group", params=params):
            if str(item.get("displayName", "")).casefold() == name.casefold():
                return str(item["id"])
        return None

    async def change_membership(
        self, group_id: str, account_id: str, *, add: bool
    ) -> httpx.Response | None:
        """Add or remove one member; PATCH when supported, else GET + conditional PUT.

        Returns ``None`` when the group no longer exists (nothing left to remove).
        """
        what = f"{'adding to' if add else 'removing from'} group {group_id}"
        features = await self.features()
        path = f"/Groups/{path_segment(group_id, connector=self.name)}"
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
                return await self.request(
                    "PATCH",
                    path,
                    what=what,
                    account_id=account_id,
                    json_body=patch_body(PatchOp[Group](operations=[op])),
                    resource="group",
                )
            fetched = await self.get(path, what=what, account_id=account_id, resource="group")
            members = [m for m in fetched.raw.get("members") or [] if not member_is(m, account_id)]
            if add:
                members.append({"value": account_id, "type": "User"})
            raw = replacement(fetched.raw)
            raw["members"] = members
            return await self.request(
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

    async def write_user(
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
        path = f"/Users/{path_segment(account_id, connector=self.name)}"
        if features.patch:
            return await self.request(
                "PATCH",
                path,
                what=what,
                account_id=account_id,
                json_body=patch_body(USER_PATCH(operations=list(operations))),
                resource="user",
            )
        fetched = await self.get(path, what=what, account_id=account_id, resource="user")
        raw = replacement(fetched.raw)
        for key, value in replace.items():
            if value is None:
                raw.pop(key, None)
            else:
                raw[key] = value
        return await self.request(
            "PUT",
            path,
            what=what,
            account_id=account_id,
            json_body=raw,
            if_match=fetched.etag if features.etag else None,
            resource="user",
        )


# --------------------------------------------------------------------------- helpers


def asdict(features: ScimFeatures) -> dict[str, Any]:
    return {f"scim_{k}": getattr(features, k) for k in features.__slots__}


def core(raw: Mapping[str, Any], schema: str) -> dict[str, Any]:
    """The core attributes of a resource; extension blocks (``urn:...`` keys) are left out so
    that a vendor extension does not make the core model refuse the resource."""
    core = {k: v for k, v in raw.items() if not k.lower().startswith("urn:")}
    core["schemas"] = [schema]
    return core


def replacement(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A resource as read, made into a PUT body: read-only ``meta``/``groups`` dropped, every
    other attribute (extensions included) kept, so nothing is lost by replacing."""
    return {k: v for k, v in raw.items() if k not in ("meta", "groups")}


def meta_version(raw: Mapping[str, Any]) -> str | None:
    meta = raw.get("meta")
    return str(meta["version"]) if isinstance(meta, dict) and meta.get("version") else None


def scim_error(response: httpx.Response) -> tuple[str | None, str]:
    """``(scimType, detail)`` of a SCIM Error body; tolerant of services that send none."""
    try:
        error = Error.model_validate(response.json())
    except (ValueError, ValidationError):
        return None, response.reason_phrase
    return error.scim_type, error.detail or response.reason_phrase


def patch_body(patch: PatchOp[Any]) -> dict[str, Any]:
    return patch.model_dump(scim_ctx=Context.RESOURCE_PATCH_REQUEST)


def replace_or_remove(path: str, values: list[dict[str, Any]]) -> PatchOperation[Any]:
    op: PatchOperation[Any]
    if values:
        op = USER_OP(op=PatchOperation.Op.replace_, path=path, value=values)
    else:
        op = USER_OP(op=PatchOperation.Op.remove, path=path)
    return op


def any_of(wanted: Iterable[tuple[MatchAttribute, str]]) -> FilterNode:
    """``externalId eq "..." or userName eq "..."``, every value quoted by scim2-models."""
    nodes: list[FilterNode] = []
    for attr, value in wanted:
        path = AttrPath("emails", sub_attr="value") if attr == "emails" else AttrPath(attr)
        nodes.append(Comparison(path, CompareOperator.eq, value))
    node = nodes[0]
    for other in nodes[1:]:
        node = node | other
    return node


def matches(raw: Mapping[str, Any], wanted: Iterable[tuple[MatchAttribute, str]]) -> bool:
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


def member_is(member: Any, account_id: str) -> bool:
    return isinstance(member, dict) and member.get("value") == account_id


def is_attribute(item: str) -> bool:
    return item.startswith((ROLE_PREFIX, ENTITLEMENT_PREFIX))


def attribute_entitlements(user: User[Any]) -> frozenset[str]:
    roles = {ROLE_PREFIX + r.value for r in user.roles or [] if r.value}
    ents = {ENTITLEMENT_PREFIX + e.value for e in user.entitlements or [] if e.value}
    return frozenset(roles | ents)


def str_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None
