"""EHRs that expose workforce accounts as FHIR R4 Practitioner / PractitionerRole (e.g. OpenEMR).

A worker is found by ``Practitioner.identifier`` (``GET [base]/Practitioner?identifier=
<system>|<value>``, the value escaped per FHIR search rules and every hit re-checked locally).
Terminating means ``Practitioner.active = false`` (``disable``) and ``PractitionerRole.active =
false`` on each of its roles (``remove_access``); both are a read, then a ``PUT`` of the whole
resource with ``If-Match: W/"<versionId>"`` so a concurrent edit is never overwritten, then a
read back. Nothing is deleted. FHIR has no sessions: ``revoke_sessions`` is not applicable.
The undo is the same writes the other way: ``enable`` sets ``Practitioner.active = true``;
``restore_access`` reactivates the practitioner's roles whose codes the snapshot lists, and
reports a code no role carries any more.

OpenEMR (``/apis/default/fhir``) accepts ``PUT /fhir/Practitioner/:uuid`` but serves
PractitionerRole read-only: set ``update_roles = false`` there, and its roles are reported as
skipped (with the reason) rather than failing the step; ``Practitioner.active=false`` is what
ends the access. A server that answers 405/501 to a role update is treated the same way.

Entitlements are the codes of the practitioner's *active* roles (``PractitionerRole.code``,
first coding's ``code``; ``PractitionerRole/<id>`` when a role has no code).

Errors: 429 (with Retry-After) and 5xx are transient; 412 or 409 (which HAPI-style servers
answer to a version conflict) to a request carrying our ``If-Match`` mean a concurrent writer
won: transient with ``retry_after=0``, the engine's retry re-reads. Without ``If-Match`` they
are business-rule refusals: permanent. 400/401/403/404/410/422 are permanent, with the
server's OperationOutcome diagnostics in the message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal, Self
from urllib.parse import urlsplit

import httpx
from pydantic import Field, SecretStr

from connectors._config import parse_options
from connectors._http import (
    BearerAuth,
    BearerOrOAuthOptions,
    OAuthOptions,
    OAuthTokenSource,
    RestClient,
    ServiceCredentials,
    digest,
    http_client,
    json_object,
    only_match,
    path_segment,
    request_id,
    short,
    status_error,
    switch_account,
)
from connectors.base import (
    OFFBOARDING,
    REVERSAL,
    Account,
    AccountState,
    ActionResult,
    Connector,
    ConnectorContext,
    ConnectorError,
    Outcome,
    PermanentConnectorError,
    SkippedItem,
    TransientConnectorError,
    Worker,
    action_result,
    change_outcome,
    restore_result,
    utcnow,
)

FHIR_JSON = "application/fhir+json"
MAX_PAGES = 1000


class FhirOAuthOptions(OAuthOptions):
    scope: str | None = "system/Practitioner.write system/PractitionerRole.write"


class FhirOptions(BearerOrOAuthOptions):
    kind: Literal["fhir"] = "fhir"
    oauth: FhirOAuthOptions | None = None
    identifier_system: str
    """The ``Identifier.system`` under which the worker's id is recorded."""
    identifier_from: Literal["worker_id", "email", "upn"] = "worker_id"
    update_roles: bool = True
    """False for servers whose PractitionerRole is read-only (OpenEMR)."""
    page_size: int = Field(default=50, ge=1, le=500)


class _NotFound(PermanentConnectorError):
    """The FHIR server answered 404 or 410 for the resource."""


class _ReadOnly(PermanentConnectorError):
    """The FHIR server does not allow this update (405 or 501)."""


class FhirConnector(Connector):
    """Practitioner accounts of a FHIR R4 server."""

    kind = "fhir"
    capabilities = OFFBOARDING | REVERSAL

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        client: httpx.AsyncClient,
        identifier_system: str,
        identifier_from: Literal["worker_id", "email", "upn"] = "worker_id",
        token: SecretStr | None = None,
        oauth: OAuthTokenSource | None = None,
        page_size: int = 50,
        update_roles: bool = True,
        owns_client: bool = True,
    ) -> None:
        super().__init__(name)
        self.rest = RestClient(
            name,
            base_url,
            client,
            BearerAuth.of(name, token, oauth),
            media_type=FHIR_JSON,
            owns_client=owns_client,
        )
        self.base_url = self.rest.base_url
        self.identifier_system = identifier_system
        self.identifier_from = identifier_from
        self.page_size = page_size
        self.update_roles = update_roles

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], context: ConnectorContext) -> Self:
        opts = parse_options(FhirOptions, name, options)
        credentials = ServiceCredentials.resolve(name, opts, context)
        client = http_client(opts.timeout_seconds)
        return cls(
            name,
            base_url=opts.base_url,
            client=client,
            identifier_system=opts.identifier_system,
            identifier_from=opts.identifier_from,
            token=credentials.token,
            oauth=credentials.oauth_source(client, name, opts),
            page_size=opts.page_size,
            update_roles=opts.update_roles,
        )

    async def aclose(self) -> None:
        await self.rest.aclose()

    # ----------------------------------------------------------------- HTTP

    async def _call(
        self,
        method: str,
        path: str,
        *,
        what: str,
        account_id: str | None,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
        if_match: str | None = None,
    ) -> httpx.Response:
        response = await self.rest.send(
            method,
            path,
            what=what,
            account_id=account_id,
            params=params,
            json_body=body,
            if_match=if_match,
        )
        if response.is_success:
            return response
        raise self._error(response, what=what, account_id=account_id, conditional=bool(if_match))

    def _error(
        self, response: httpx.Response, *, what: str, account_id: str | None, conditional: bool
    ) -> ConnectorError:
        detail = _outcome_text(response)
        status = response.status_code
        if status in (409, 412) and conditional:
            return TransientConnectorError(
                f"{what}: the resource changed since it was read (HTTP {status}, version "
                f"conflict{': ' + detail if detail else ''}); it will be re-read and re-applied",
                connector=self.name,
                account_id=account_id,
                retry_after=0.0,
            )
        return status_error(
            response,
            connector=self.name,
            account_id=account_id,
            what=what,
            detail=detail,
            hints={
                400: "the FHIR server rejected the request; check identifier_system and that "
                "the server supports updates of this resource",
                401: f"the FHIR server refused the credentials; renew 'token' (or [oauth]) of "
                f"[connectors.{self.name}]",
                403: "the credentials lack write scope (system/Practitioner.write, "
                "system/PractitionerRole.write); grant it to the client",
                404: "the resource does not exist on the FHIR server (deleted there?); re-run "
                "correlation or unlink the account",
                410: "the resource was deleted on the FHIR server; unlink the account",
                422: "the FHIR server refused the resource as invalid (profile rules)",
            },
            classes={404: _NotFound, 410: _NotFound, 405: _ReadOnly, 501: _ReadOnly},
        )

    async def _read(self, path: str, *, what: str, account_id: str | None) -> dict[str, Any]:
        response = await self._call("GET", path, what=what, account_id=account_id)
        return self._body(response, what=what, account_id=account_id)

    def _body(
        self, response: httpx.Response, *, what: str, account_id: str | None
    ) -> dict[str, Any]:
        return json_object(
            response, connector=self.name, account_id=account_id, what=what, hint="check base_url"
        )

    async def _search(
        self, resource_type: str, params: Mapping[str, str], *, what: str, account_id: str | None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every match of a search, following the Bundle's ``next`` links."""
        url: str | None = f"/{resource_type}"
        query: Mapping[str, str | int] | None = {**params, "_count": self.page_size}
        for _ in range(MAX_PAGES):
            if url is None:
                return
            response = await self._call("GET", url, what=what, account_id=account_id, params=query)
            bundle = self._body(response, what=what, account_id=account_id)
            for entry in bundle.get("entry") or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if (
                    isinstance(resource, dict)
                    and resource.get("resourceType") == resource_type
                    and resource.get("id")
                    and (entry.get("search") or {}).get("mode", "match") == "match"
                ):
                    yield resource
            url = next(
                (
                    str(link["url"])
                    for link in bundle.get("link") or []
                    if isinstance(link, dict) and link.get("relation") == "next"
                ),
                None,
            )
            query = None  # the next link carries the query
            if url is not None and not _same_origin(url, self.base_url):
                raise PermanentConnectorError(
                    f"{what}: the server's next link leaves {self.base_url}; refusing to send "
                    "the token elsewhere",
                    connector=self.name,
                    account_id=account_id,
                )
        raise PermanentConnectorError(
            f"{what}: more than {MAX_PAGES} pages", connector=self.name, account_id=account_id
        )

    async def _update(
        self, resource: dict[str, Any], *, what: str, account_id: str
    ) -> httpx.Response:
        """PUT the whole resource back, conditional on the version it was read at."""
        version = (resource.get("meta") or {}).get("versionId")
        path = (
            f"/{resource['resourceType']}/{path_segment(str(resource['id']), connector=self.name)}"
        )
        return await self._call(
            "PUT",
            path,
            what=what,
            account_id=account_id,
            body=resource,
            if_match=f'W/"{version}"' if version else None,
        )

    # ----------------------------------------------------------------- correlation

    def _identifier_value(self, worker: Worker) -> str | None:
        value = {"worker_id": worker.worker_id, "email": worker.email, "upn": worker.upn}[
            self.identifier_from
        ]
        return value or None

    async def find_account(self, worker: Worker) -> Account | None:
        value = self._identifier_value(worker)
        if value is None:
            return None
        token = f"{_escape(self.identifier_system)}|{_escape(value)}"
        hits = {
            str(p["id"]): p
            async for p in self._search(
                "Practitioner",
                {"identifier": token},
                what="searching practitioners",
                account_id=worker.worker_id,
            )
            if self._has_identifier(p, value)
        }
        found = only_match(
            hits,
            connector=self.name,
            worker_id=worker.worker_id,
            matching=f"Practitioners carry identifier {self.identifier_system}|<worker>",
            fix="merge or retire the duplicate",
        )
        return None if found is None else self._account(*found, worker.worker_id)

    def _has_identifier(self, practitioner: Mapping[str, Any], value: str) -> bool:
        return any(
            isinstance(i, dict)
            and i.get("system") == self.identifier_system
            and i.get("value") == value
            for i in practitioner.get("identifier") or []
        )

    def _account(
        self, practitioner_id: str, practitioner: Mapping[str, Any], worker_id: str | None
    ) -> Account:
        own = next(
            (
                str(i.get("value"))
                for i in practitioner.get("identifier") or []
                if isinstance(i, dict) and i.get("system") == self.identifier_system
            ),
            None,
        )
        return Account(
            self.name,
            practitioner_id,
            login=_telecom_email(practitioner),
            worker_id=worker_id or own,
        )

    # ----------------------------------------------------------------- roles

    async def _roles(self, practitioner_id: str) -> list[dict[str, Any]]:
        return [
            role
            async for role in self._search(
                "PractitionerRole",
                {"practitioner": f"Practitioner/{practitioner_id}"},
                what="searching practitioner roles",
                account_id=practitioner_id,
            )
            if ((role.get("practitioner") or {}).get("reference") or "").endswith(
                f"Practitioner/{practitioner_id}"
            )
        ]

    # ----------------------------------------------------------------- the contract

    async def read_state(self, account: Account) -> AccountState:
        practitioner = await self._practitioner(account, "reading the practitioner back")
        roles = await self._roles(account.account_id)
        return AccountState(
            account=self._account(account.account_id, practitioner, account.worker_id),
            enabled=practitioner.get("active") is not False,
            read_at=utcnow(),
            entitlements=frozenset(_role_name(r) for r in roles if r.get("active") is not False),
            sign_in_tracked=False,
        )

    async def _practitioner(self, account: Account, what: str) -> dict[str, Any]:
        return await self._read(
            f"/Practitioner/{path_segment(account.account_id, connector=self.name)}",
            what=what,
            account_id=account.account_id,
        )

    async def disable(self, account: Account) -> ActionResult:
        return await self._set_active(account, active=False)

    async def enable(self, account: Account) -> ActionResult:
        return await self._set_active(account, active=True)

    async def _set_active(self, account: Account, *, active: bool) -> ActionResult:
        """``Practitioner.active`` to the value wanted (conditional PUT), then read back."""

        async def read(what: str) -> dict[str, Any]:
            return await self._practitioner(account, what)

        async def write(practitioner: dict[str, Any], what: str) -> httpx.Response:
            practitioner["active"] = active
            return await self._update(practitioner, what=what, account_id=account.account_id)

        return await switch_account(
            account,
            enable=active,
            connector=self.name,
            read=read,
            enabled=lambda practitioner: practitioner.get("active") is not False,
            write=write,
            field=f"Practitioner.active={str(active).lower()}",
            hint="check the server stores Practitioner.active",
        )

    async def revoke_sessions(self, account: Account) -> ActionResult:
        """FHIR defines no sessions; the practitioner is still read so a vanished one shows."""
        started = utcnow()
        await self._practitioner(account, "checking the practitioner for session revocation")
        return action_result(
            "revoke_sessions",
            account,
            started,
            Outcome.NOT_APPLICABLE,
            detail={"reason": "FHIR defines no sessions; the EHR's own login is not exposed"},
        )

    async def remove_access(self, account: Account) -> ActionResult:
        """Set ``active=false`` on every active PractitionerRole, then read back."""
        started = utcnow()
        await self._practitioner(account, "reading the practitioner")
        bodies: list[bytes] = []
        vendor_id: str | None = None
        removed: list[str] = []
        read_only: dict[str, str] = {}
        for role in await self._roles(account.account_id):
            if role.get("active") is False:
                continue
            if not self.update_roles:
                read_only[_role_name(role)] = (
                    "PractitionerRole is read-only on this server (update_roles = false); "
                    "Practitioner.active=false ends the access"
                )
                continue
            role["active"] = False
            try:
                response = await self._update(
                    role,
                    what=f"deactivating PractitionerRole/{role['id']}",
                    account_id=account.account_id,
                )
            except _NotFound:
                continue  # deleted meanwhile: the read-back below tells the truth either way
            except _ReadOnly:
                read_only[_role_name(role)] = (
                    "the server refuses PractitionerRole updates (HTTP 405/501); set "
                    f"update_roles = false in [connectors.{self.name}]; Practitioner.active=false "
                    "ends the access"
                )
                continue
            bodies.append(response.content)
            vendor_id = vendor_id or request_id(response)
            removed.append(_role_name(role))
        state = await self.read_state(account)
        skipped = tuple(
            SkippedItem(item, read_only.get(item, "still active when read back after deactivation"))
            for item in sorted(state.entitlements)
        )
        gone = sorted(set(removed) - state.entitlements)
        outcome = change_outcome(bool(gone), bool(skipped))
        return action_result(
            "remove_access",
            account,
            started,
            outcome,
            vendor_request_id=vendor_id,
            response_sha256=digest(bodies) if bodies else None,
            removed=tuple(gone),
            skipped=skipped,
        )

    async def restore_access(self, account: Account, snapshot: Sequence[str]) -> ActionResult:
        """Set ``active=true`` again on the practitioner's inactive roles the snapshot names,
        then read back. Entitlements are role codes, so every inactive role carrying a code of
        the snapshot comes back; a code no role carries any more is reported as skipped."""
        started = utcnow()
        await self._practitioner(account, "reading the practitioner")
        roles = await self._roles(account.account_id)
        skipped: list[SkippedItem] = []
        bodies: list[bytes] = []
        for name in sorted(set(snapshot)):
            carrying = [r for r in roles if _role_name(r) == name]
            if not carrying:
                skipped.append(
                    SkippedItem(name, "no PractitionerRole of this practitioner carries it now")
                )
                continue
            for role in (r for r in carrying if r.get("active") is False):
                refusal = await self._reactivate(role, account.account_id)
                if isinstance(refusal, str):
                    skipped.append(SkippedItem(name, refusal))
                else:
                    bodies.append(refusal.content)
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

    async def _reactivate(self, role: dict[str, Any], account_id: str) -> httpx.Response | str:
        """PUT the role back with ``active=true``: the response, or why it could not be."""
        if not self.update_roles:
            return "PractitionerRole is read-only on this server (update_roles = false)"
        role["active"] = True
        try:
            return await self._update(
                role, what=f"reactivating PractitionerRole/{role['id']}", account_id=account_id
            )
        except _NotFound:
            return "the PractitionerRole was deleted meanwhile"
        except _ReadOnly:
            return "the server refuses PractitionerRole updates (HTTP 405/501)"


def _escape(value: str) -> str:
    """Escape a token search value (FHIR R4 search §2.1.1.0: ``\\``, ``,``, ``|``, ``$``)."""
    for char in ("\\", ",", "|", "$"):
        value = value.replace(char, "\\" + char)
    return value


def _role_name(role: Mapping[str, Any]) -> str:
    for concept in role.get("code") or []:
        for coding in (concept or {}).get("coding") or []:
            if isinstance(coding, dict) and coding.get("code"):
                return str(coding["code"])
    return f"PractitionerRole/{role.get('id')}"


def _telecom_email(resource: Mapping[str, Any]) -> str | None:
    for telecom in resource.get("telecom") or []:
        if isinstance(telecom, dict) and telecom.get("system") == "email" and telecom.get("value"):
            return str(telecom["value"])
    return None


def _outcome_text(response: httpx.Response) -> str:
    """The diagnostics of an OperationOutcome body, if the server sent one."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return response.reason_phrase
    texts = []
    for issue in body.get("issue") or []:
        if isinstance(issue, dict):
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
            code = issue.get("code")
            texts.append(f"{code}: {text}" if code and text else str(text or code or ""))
    return short("; ".join(t for t in texts if t)) or response.reason_phrase


def _same_origin(url: str, base_url: str) -> bool:
    """A paging link may only lead back to the configured server (scheme, host and port)."""
    link, base = urlsplit(url), urlsplit(base_url)
    if not link.scheme and not link.netloc:
        return True  # relative: resolved against base_url
    return (link.scheme, link.netloc) == (base.scheme, base.netloc)
