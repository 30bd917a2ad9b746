"""RingCentral phone system (REST API v1.0 / v2), for the phone half of a termination.

Auth is the JWT bearer flow (RFC 7523): ``POST /restapi/oauth/token`` with
``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` and the JWT credential as
``assertion``, the app authenticating with HTTP Basic (client id and secret). The token is cached
until shortly before ``expires_in`` and fetched again after a 401.

Deprovisioning an extension, as RingCentral's admin guidance describes it:

- ``disable``: ``PUT .../extension/{id}`` ``{"status": "Disabled", "statusInfo": {...}}``; the
  extension, its number history and its voicemail stay (never deleted on termination).
- ``revoke_sessions``: RingCentral offers no per-user session revocation to an app; what a
  departed worker could still use is the voicemail PIN (dial-in to the mailbox), so it is reset
  to a random value nobody is told (``ivrPin``). Disabling already blocks app sign-in.
- ``remove_access``: leave every call queue (``PUT .../extension/{id}/call-queues`` with no
  records is RingCentral's "full update" that removes the agent everywhere), unassign every
  device with its line (``DELETE /restapi/v2/accounts/~/devices/{id}`` with
  ``keepAssetsInInventory: true`` moves the device to unassigned devices and its number to the
  number inventory), delete forwarding numbers, then read back. A direct number left without a
  device has no inventory API: it is reported as skipped, with what to do.

The undo: ``enable`` sets ``status`` back to Enabled; ``restore_access`` puts the agent back
into the snapshot's call queues (one full update of the agent's queues) and reports devices,
their numbers and forwarding numbers as not restorable, with what an administrator does
instead (RingCentral's API cannot give an inventory device back to an extension).

Retries: none here; 429 and 5xx go to the service's executor with ``retry_after``. The token is
refreshed once on a 401 (protocol-level, ``connectors._http.send``).

Entitlements are named ``call-queue:<id>``, ``device:<id>``, ``forwarding-number:<id>`` and
``phone-number:<id>``. 429 answers carry ``Retry-After`` (RingCentral's penalty interval, usually
60 s) and become ``TransientConnectorError(retry_after=...)``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr

from connectors._config import parse_options
from connectors._http import (
    BearerAuth,
    OAuthTokenSource,
    RestClient,
    RestOptions,
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
    ConnectorConfigError,
    ConnectorContext,
    ConnectorError,
    Outcome,
    PermanentConnectorError,
    SkippedItem,
    Worker,
    action_result,
    change_outcome,
    restore_result,
    utcnow,
)

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MAX_PAGES = 1000


class RingCentralOptions(RestOptions):
    kind: Literal["ringcentral"] = "ringcentral"
    server_url: str = "https://platform.ringcentral.com"
    client_id: str
    client_secret: str
    """``env:NAME`` or ``file:/path``."""
    jwt: str
    """The JWT credential of the service user, ``env:NAME`` or ``file:/path``."""
    account_id: str = "~"
    per_page: int = Field(default=100, ge=1, le=1000)
    pin_digits: int = Field(default=8, ge=4, le=12)
    disable_comment: str = Field(default="Access ended by lifecycle", max_length=200)


class RingCentralConnector(Connector):
    """One RingCentral account; workers are correlated to User extensions by contact email."""

    kind = "ringcentral"
    capabilities = OFFBOARDING | REVERSAL

    def __init__(
        self,
        name: str,
        *,
        server_url: str,
        client: httpx.AsyncClient,
        tokens: OAuthTokenSource,
        account_id: str = "~",
        per_page: int = 100,
        pin_digits: int = 8,
        disable_comment: str = "Access ended by lifecycle",
        owns_client: bool = True,
    ) -> None:
        super().__init__(name)
        self.rest = RestClient(
            name, server_url, client, BearerAuth(source=tokens), owns_client=owns_client
        )
        self.server_url = self.rest.base_url
        self.v1 = f"/restapi/v1.0/account/{quote(account_id, safe='~')}"
        self.v2 = f"/restapi/v2/accounts/{quote(account_id, safe='~')}"
        self.per_page = per_page
        self.pin_digits = pin_digits
        self.disable_comment = disable_comment

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], context: ConnectorContext) -> Self:
        opts = parse_options(RingCentralOptions, name, options)
        if not opts.server_url.startswith("https://"):
            raise ConnectorConfigError(
                f"[connectors.{name}]: server_url must be https://", connector=name
            )
        secret = context.secret(name, "client_secret", opts.client_secret)
        jwt = context.secret(name, "jwt", opts.jwt)
        client = http_client(opts.timeout_seconds)
        return cls(
            name,
            server_url=opts.server_url,
            client=client,
            tokens=jwt_token_source(
                client,
                connector=name,
                server_url=opts.server_url,
                client_id=opts.client_id,
                client_secret=secret,
                jwt=jwt,
            ),
            account_id=opts.account_id,
            per_page=opts.per_page,
            pin_digits=opts.pin_digits,
            disable_comment=opts.disable_comment,
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
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str | int | list[str]] | None = None,
    ) -> httpx.Response:
        response = await self.rest.send(
            method, path, what=what, account_id=account_id, params=params, json_body=json_body
        )
        if response.is_success:
            return response
        raise self._error(response, what=what, account_id=account_id)

    def _error(
        self, response: httpx.Response, *, what: str, account_id: str | None
    ) -> ConnectorError:
        code, message = _rc_error(response)
        detail = f"{code} {message}".strip()
        return status_error(
            response,
            connector=self.name,
            account_id=account_id,
            what=what,
            detail=detail,
            hints={
                400: "RingCentral rejected the request; check the extension type and the "
                "connector options",
                401: f"RingCentral refused the token; check client_id, client_secret and jwt of "
                f"[connectors.{self.name}] (the JWT credential may be expired or revoked)",
                403: "the app or its JWT user lacks a permission (EditExtensions, EditAccounts, "
                "ReadAccounts); grant it in the developer console and to the user's role",
                404: "the extension (or item) does not exist in RingCentral (deleted there?); "
                "re-run correlation or unlink the account",
            },
            classes={404: _NotFound},
        )

    async def _json(
        self, response: httpx.Response, what: str, account_id: str | None
    ) -> dict[str, Any]:
        return json_object(
            response, connector=self.name, account_id=account_id, what=what, hint="check server_url"
        )

    async def _records(
        self,
        path: str,
        *,
        what: str,
        account_id: str | None,
        params: Mapping[str, str | int | list[str]] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every record of a paged list (``page``/``perPage``, ``paging.totalPages``)."""
        page = 1
        for _ in range(MAX_PAGES):
            query: dict[str, str | int | list[str]] = {
                **(params or {}),
                "page": page,
                "perPage": self.per_page,
            }
            response = await self._call("GET", path, what=what, account_id=account_id, params=query)
            body = await self._json(response, what, account_id)
            records = body.get("records") or []
            for record in records:
                if isinstance(record, dict) and record.get("id") is not None:
                    yield record  # every list we read is of identified objects
            paging = body.get("paging") or {}
            total_pages = paging.get("totalPages")
            has_next = bool((body.get("navigation") or {}).get("nextPage"))
            if not records or (
                (isinstance(total_pages, int) and page >= total_pages)
                or (total_pages is None and not has_next)
            ):
                return
            page += 1
        raise PermanentConnectorError(
            f"{what}: more than {MAX_PAGES} pages; raise per_page", connector=self.name
        )

    def _ext(self, account_id: str) -> str:
        return f"{self.v1}/extension/{path_segment(account_id, connector=self.name)}"

    async def _extension(self, account_id: str, what: str) -> dict[str, Any]:
        response = await self._call("GET", self._ext(account_id), what=what, account_id=account_id)
        return await self._json(response, what, account_id)

    # ----------------------------------------------------------------- correlation

    async def find_account(self, worker: Worker) -> Account | None:
        emails = sorted({e.casefold() for e in (worker.email, worker.upn) if e and "@" in e})
        if not emails:
            return None
        hits: dict[str, dict[str, Any]] = {}
        # ``email`` is a query parameter, not a filter language; the match is re-checked here.
        async for record in self._records(
            f"{self.v1}/extension",
            what="searching extensions",
            account_id=worker.worker_id,
            params={"email": emails, "type": ["User"]},
        ):
            email = str((record.get("contact") or {}).get("email") or "").casefold()
            if email in emails:
                hits[str(record["id"])] = record
        found = only_match(
            hits,
            connector=self.name,
            worker_id=worker.worker_id,
            matching=f"RingCentral extensions match worker {worker.worker_id}",
            fix="fix the duplicate contact email",
        )
        return None if found is None else self._account(found[1], found[0], worker.worker_id)

    def _account(
        self, record: Mapping[str, Any], account_id: str, worker_id: str | None
    ) -> Account:
        contact = record.get("contact") or {}
        login = contact.get("email") or record.get("extensionNumber")
        return Account(
            self.name, account_id, login=str(login) if login else None, worker_id=worker_id
        )

    # ----------------------------------------------------------------- what the extension holds

    async def _holdings(self, account_id: str) -> dict[str, str]:
        """Entitlement name -> description of everything assigned to the extension."""
        base = self._ext(account_id)
        held: dict[str, str] = {}
        response = await self._call(
            "GET", f"{base}/call-queue-presence", what="reading call queues", account_id=account_id
        )
        for record in (await self._json(response, "reading call queues", account_id)).get(
            "records"
        ) or []:
            queue = record.get("callQueue") if isinstance(record, dict) else None
            if isinstance(queue, dict) and queue.get("id"):
                held[f"call-queue:{queue['id']}"] = str(queue.get("name") or "")
        async for device in self._records(
            f"{base}/device", what="reading devices", account_id=account_id
        ):
            held[f"device:{device['id']}"] = str(device.get("type") or "")
        async for number in self._records(
            f"{base}/forwarding-number", what="reading forwarding numbers", account_id=account_id
        ):
            held[f"forwarding-number:{number['id']}"] = str(number.get("type") or "")
        async for number in self._records(
            f"{base}/phone-number",
            what="reading phone numbers",
            account_id=account_id,
            params={"usageType": ["DirectNumber"]},
        ):
            if number.get("usageType", "DirectNumber") == "DirectNumber":
                held[f"phone-number:{number['id']}"] = "DirectNumber"
        return held

    # ----------------------------------------------------------------- the contract

    async def read_state(self, account: Account) -> AccountState:
        record = await self._extension(account.account_id, "reading the extension back")
        status = str(record.get("status") or "")
        held = await self._holdings(account.account_id)
        return AccountState(
            account=self._account(record, account.account_id, account.worker_id),
            enabled=status != "Disabled",
            read_at=utcnow(),
            locked=status == "Frozen",
            entitlements=frozenset(held),
            sign_in_tracked=False,
        )

    async def disable(self, account: Account) -> ActionResult:
        return await self._set_status(
            account,
            {
                "status": "Disabled",
                "statusInfo": {"reason": "Involuntarily", "comment": self.disable_comment},
            },
        )

    async def enable(self, account: Account) -> ActionResult:
        return await self._set_status(account, {"status": "Enabled"})

    async def _set_status(self, account: Account, body: Mapping[str, Any]) -> ActionResult:
        """``status`` Disabled or Enabled (``PUT .../extension/{id}``), then read back."""

        async def read(what: str) -> dict[str, Any]:
            return await self._extension(account.account_id, what)

        async def write(_: dict[str, Any], what: str) -> httpx.Response:
            return await self._call(
                "PUT",
                self._ext(account.account_id),
                what=what,
                account_id=account.account_id,
                json_body=body,
            )

        return await switch_account(
            account,
            enable=body["status"] != "Disabled",
            connector=self.name,
            read=read,
            enabled=lambda record: record.get("status") != "Disabled",
            write=write,
            field=f"status={body['status']}",
            hint="check that the extension type can change status",
        )

    async def revoke_sessions(self, account: Account) -> ActionResult:
        """Reset the voicemail PIN to a random value that is never stored, logged or returned."""
        started = utcnow()
        pin = "".join(secrets.choice("0123456789") for _ in range(self.pin_digits))
        response = await self._call(
            "PUT",
            self._ext(account.account_id),
            what="resetting the voicemail PIN",
            account_id=account.account_id,
            json_body={"ivrPin": pin},
        )
        del pin
        return action_result(
            "revoke_sessions",
            account,
            started,
            Outcome.DONE,
            vendor_request_id=request_id(response),
            response_sha256=digest([response.content]),
            detail={"credential": "voicemail PIN reset to an unknown random value"},
        )

    async def remove_access(self, account: Account) -> ActionResult:
        started = utcnow()
        account_id = account.account_id
        base = self._ext(account_id)
        before = await self._holdings(account_id)
        bodies: list[bytes] = []
        vendor_id: str | None = None
        removed: list[str] = []

        def note(response: httpx.Response | None) -> None:
            nonlocal vendor_id
            if response is not None:
                bodies.append(response.content)
                vendor_id = vendor_id or request_id(response)

        queues = [k for k in before if k.startswith("call-queue:")]
        if queues:
            note(
                await self._call(
                    "PUT",
                    f"{base}/call-queues",
                    what="removing the agent from call queues",
                    account_id=account_id,
                    json_body={"records": []},
                )
            )
            removed.extend(queues)
        for item in (k for k in before if k.startswith("device:")):
            device_id = item.split(":", 1)[1]
            note(
                await self._gone_ok(
                    "DELETE",
                    f"{self.v2}/devices/{quote(device_id, safe='')}",
                    what=f"unassigning device {device_id} to inventory",
                    account_id=account_id,
                    json_body={"keepAssetsInInventory": True},
                )
            )
            removed.append(item)
        # Devices take their own phone-line forwarding entries with them: list again, in full
        # before deleting, since deleting while paging would shift later pages under us.
        remaining = [
            number
            async for number in self._records(
                f"{base}/forwarding-number",
                what="reading forwarding numbers",
                account_id=account_id,
            )
        ]
        for number in remaining:
            note(
                await self._gone_ok(
                    "DELETE",
                    f"{base}/forwarding-number/{quote(str(number['id']), safe='')}",
                    what="deleting a forwarding number",
                    account_id=account_id,
                )
            )
            removed.append(f"forwarding-number:{number['id']}")
        removed.extend(k for k in before if k.startswith("forwarding-number:"))

        after = await self._holdings(account_id)
        skipped = tuple(
            SkippedItem(
                item,
                "direct number without a device: move it to the number inventory in the "
                "Admin Portal (no API does this)"
                if item.startswith("phone-number:")
                else "still assigned when read back after removal",
            )
            for item in sorted(after)
        )
        removed.extend(k for k in before if k.startswith("phone-number:") and k not in after)
        gone = sorted(set(removed) - set(after))
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
        """Rejoin the snapshot's call queues (one full update of the agent's queues, ``PUT
        .../extension/{id}/call-queues``), then read back. Devices, their numbers and
        forwarding numbers are reported as skipped with what to do: RingCentral's API offers no
        way to give an inventory device or number back to an extension, and deleted forwarding
        numbers are not kept (they are personal phone numbers)."""
        started = utcnow()
        account_id = account.account_id
        held = await self._holdings(account_id)
        queues = {i.split(":", 1)[1] for i in snapshot if i.startswith("call-queue:")}
        skipped = [
            SkippedItem(item, _NOT_RESTORABLE.get(item.split(":", 1)[0], _NOT_OURS))
            for item in sorted(set(snapshot))
            if not item.startswith("call-queue:")
        ]
        missing = {q for q in queues if f"call-queue:{q}" not in held}
        gone = {q for q in missing if not await self._queue_exists(q, account_id)}
        skipped += [SkippedItem(f"call-queue:{q}", "the call queue no longer exists") for q in gone]
        response: httpx.Response | None = None
        if missing - gone:
            current = {k.split(":", 1)[1] for k in held if k.startswith("call-queue:")}
            response = await self._call(
                "PUT",
                f"{self._ext(account_id)}/call-queues",
                what="adding the agent back to call queues",
                account_id=account_id,
                json_body={"records": [{"id": q} for q in sorted(current | (missing - gone))]},
            )
        after = await self._holdings(account_id)
        return restore_result(
            account,
            started,
            snapshot,
            set(after),
            skipped,
            changed=response is not None,
            vendor_request_id=request_id(response) if response is not None else None,
            response_sha256=digest([response.content]) if response is not None else None,
        )

    async def _queue_exists(self, queue_id: str, account_id: str) -> bool:
        try:
            await self._call(
                "GET",
                f"{self.v1}/call-queues/{path_segment(queue_id, connector=self.name)}",
                what="reading a call queue",
                account_id=account_id,
            )
        except _NotFound:
            return False
        return True

    async def _gone_ok(
        self,
        method: str,
        path: str,
        *,
        what: str,
        account_id: str,
        json_body: Mapping[str, Any] | None = None,
    ) -> httpx.Response | None:
        """A removal where 404 means someone else already removed it: that is success."""
        try:
            return await self._call(
                method, path, what=what, account_id=account_id, json_body=json_body
            )
        except _NotFound:
            return None


class _NotFound(PermanentConnectorError):
    """RingCentral answered 404 for the object."""


_NOT_OURS = "not an entitlement this connector removes"
#: Why what remove_access took, other than call queues, cannot be put back through the API.
_NOT_RESTORABLE = {
    "device": "the device was moved to the inventory with its number: assign it back to the "
    "extension in the Admin Portal (the API has no call for this)",
    "phone-number": "the direct number went to the number inventory: assign it back to the "
    "extension in the Admin Portal (the API has no call for this)",
    "forwarding-number": "forwarding numbers are deleted and their phone numbers not kept "
    "(personal data): the worker adds them again",
}


def jwt_token_source(
    client: httpx.AsyncClient,
    *,
    connector: str,
    server_url: str,
    client_id: str,
    client_secret: SecretStr,
    jwt: SecretStr,
) -> OAuthTokenSource:
    """RingCentral's JWT bearer grant at ``/restapi/oauth/token`` (client_secret_basic)."""
    return OAuthTokenSource(
        client,
        connector=connector,
        token_url=server_url.rstrip("/") + "/restapi/oauth/token",
        client_id=client_id,
        client_secret=client_secret,
        form={"grant_type": JWT_GRANT, "assertion": jwt},
    )


def _rc_error(response: httpx.Response) -> tuple[str, str]:
    """``(errorCode, message)`` of a RingCentral error body (``ApiErrorResponseModel``)."""
    try:
        body = response.json()
    except ValueError:
        return "", response.reason_phrase
    if not isinstance(body, dict):
        return "", response.reason_phrase
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = str(body.get("errorCode") or first.get("errorCode") or "")
    message = str(body.get("message") or first.get("message") or response.reason_phrase)
    return code, short(message)
