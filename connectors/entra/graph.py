"""Microsoft Graph transport for the Entra connector: msal tokens, httpx requests, ``$batch``.

Why a module of its own: the connector (``connectors.entra.connector``) speaks in accounts and
entitlements; this module owns everything about *talking* to Graph, so that throttling, token
refresh and error translation live in one place and every Graph call gets them:

- one ``msal.ConfidentialClientApplication`` per ``GraphClient`` (one per connector, so one per
  process), built lazily in a worker thread because its constructor already performs tenant
  discovery over the network, and kept for its token cache;
- msal is blocking, so every msal call runs in ``anyio.to_thread.run_sync``;
- msal gets an httpx-based ``http_client`` (``MsalHttpxClient``, msal's documented extension
  point, ``ClientApplication(http_client=...)``): the token endpoint then goes through httpx like
  Graph itself, so one tool (respx) mocks both in tests and no code of ours is patched;
- one ``httpx.AsyncClient`` shared by every call of the connector, with an ``anyio.Semaphore``
  bounding requests in flight, so a burst of terminations cannot trip Graph's throttling alone;
- no request is retried here: 429 and 503 become ``GraphThrottledError`` with ``retry_after``
  from Graph's ``Retry-After``, other 5xx, 408 and timeouts ``TransientConnectorError``, and the
  service's executor retries the step, once, in one place;
- protocol-level handling stays: 401 refreshes the token once (cached access tokens are evicted
  from msal's cache), then is permanent; 403 names the Graph permission the call needs;
  ``$batch`` sends at most 20 requests per envelope, checks each item's status and re-sends
  only the throttled items within the batch (Graph throttles items of an accepted batch one
  by one), waiting their ``Retry-After`` when it is short (``inline_retry_after_max``) and
  otherwise raising ``GraphThrottledError(retry_after=...)`` so that the executor reschedules
  the step instead of a connector sleeping for minutes.

Errors raised here, all ``connectors.base`` classes or local subclasses of them::

    TransientConnectorError
     └── GraphThrottledError      429 / 503 (``retry_after`` from Retry-After); not executed
    PermanentConnectorError
     ├── GraphNotFoundError       404
     ├── GraphBadRequestError     400 (``graph_message`` is Graph's code and message)
     └── GraphTokenError          msal returned an error (``msal_error``, ``aadsts``)

Secrets: the client secret lives in a ``SecretStr`` until it is handed to msal; access tokens live
only in msal's cache and in the Authorization header of outgoing requests. Neither is logged nor
put in an exception message (msal's ``error_description`` is not copied either: only the error
code, the AADSTS numbers and the correlation id are).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx
import msal
from pydantic import SecretStr

from connectors.base import (
    ConnectorError,
    PermanentConnectorError,
    TransientConnectorError,
    parse_retry_after,
    sha256_hex,
)

log = logging.getLogger("connectors.entra")

GRAPH_SCOPE_SUFFIX = "/.default"
BATCH_LIMIT = 20
"""Graph refuses a ``$batch`` with more than 20 requests."""

#: msal error codes that a later attempt may get past; every other one needs a person to act.
_TRANSIENT_TOKEN_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


class GraphNotFoundError(PermanentConnectorError):
    """Microsoft Graph says the object does not exist (404)."""


class GraphTokenError(PermanentConnectorError):
    """msal could not get a Graph token; ``msal_error`` is msal's error code."""

    def __init__(
        self,
        message: str,
        *,
        connector: str,
        account_id: str | None,
        msal_error: str,
        aadsts: tuple[str, ...],
    ) -> None:
        self.msal_error = msal_error
        self.aadsts = aadsts
        super().__init__(message, connector=connector, account_id=account_id)


class GraphThrottledError(TransientConnectorError):
    """Microsoft Graph throttled the request (429, or 503 with Retry-After); it was not run."""


class GraphBadRequestError(PermanentConnectorError):
    """Microsoft Graph refused the request as invalid (400); ``graph_message`` says why."""

    def __init__(
        self, message: str, *, connector: str, account_id: str | None, graph_message: str
    ) -> None:
        self.graph_message = graph_message
        super().__init__(message, connector=connector, account_id=account_id)


class MsalHttpxClient:
    """msal's ``http_client`` interface (``post``/``get`` returning a response) over httpx.

    Why: ``ClientApplication(http_client=...)`` is msal's documented way to bring your own HTTP
    stack (``msal.oauth2cli.http.HttpClient``: ``post``/``get`` returning an object with
    ``status_code``, ``text``, ``headers`` and ``raise_for_status``, which ``httpx.Response``
    has). Going through it, rather than letting msal use ``requests``, means one HTTP library
    for Graph and for the token endpoint, the same timeouts, and one test seam: respx intercepts
    the token endpoint exactly as it intercepts Graph, so tests run msal unmodified and nothing
    of ours (or msal's) is patched. msal calls it from the worker thread it runs in, hence a
    *sync* ``httpx.Client``. It sends no credentials of its own; msal puts the client secret in
    the form body of the token request, which httpx never logs.
    """

    def __init__(self, timeout: httpx.Timeout) -> None:
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)

    def post(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        data: Mapping[str, str] | str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        **_: Any,
    ) -> httpx.Response:
        if isinstance(data, str | bytes):
            return self._client.post(url, params=params, content=data, headers=headers)
        return self._client.post(url, params=params, data=data, headers=headers)

    def get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        **_: Any,
    ) -> httpx.Response:
        return self._client.get(url, params=params, headers=headers)

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True, slots=True)
class GraphResponse:
    """One Graph response (a whole HTTP response, or one item of a ``$batch``)."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    request_id: str | None = None

    def json(self) -> Any:
        if not self.content:
            return None
        try:
            return json.loads(self.content)
        except ValueError:
            # A proxy's or captive portal's HTML page: not Graph. No vendor error escapes.
            raise PermanentConnectorError(
                f"Microsoft Graph answered HTTP {self.status} without JSON "
                f"(request id {self.request_id or 'none'}); check graph_base_url and any proxy"
            ) from None

    @property
    def sha256(self) -> str:
        return sha256_hex(self.content)


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One request inside a ``$batch``; ``url`` is relative to the Graph version root."""

    id: str
    method: str
    url: str
    op: str
    """What the call is for, in words, for error messages."""
    permission: str
    """The least-privileged application permission the call needs, named on a 403."""
    body: Any = None

    def to_json(self) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.id, "method": self.method, "url": self.url}
        if self.body is not None:
            item["body"] = self.body
            item["headers"] = {"Content-Type": "application/json"}
        return item


@dataclass
class GraphSettings:
    """What ``GraphClient`` needs from the connector's options."""

    tenant_id: str
    client_id: str
    client_secret: SecretStr
    authority_host: str = "https://login.microsoftonline.com"
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 10.0
    max_concurrency: int = 8
    batch_attempts: int = 4
    """Sends of a ``$batch`` whose items Graph throttled, the first one included."""
    batch_initial_seconds: float = 0.5
    """Wait before re-sending throttled items that came without Retry-After (doubling)."""
    inline_retry_after_max: float = 10.0
    """A throttled item's wait up to this many seconds is waited for here; longer goes to the
    executor as ``retry_after``."""


def graph_error(body: Any) -> tuple[str, str]:
    """Graph's ``{"error": {"code", "message"}}`` as (code, message), tolerating other bodies."""
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            return str(err.get("code") or "unknown"), str(err.get("message") or "")[:300]
    return "unknown", ""


def first_connector_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to raise for concurrent calls that failed: permanent beats transient, so that
    a missing permission is escalated rather than retried."""
    errors: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        else:
            errors.append(current)
    for kind in (PermanentConnectorError, TransientConnectorError):
        for exc in errors:
            if isinstance(exc, kind):
                return exc
    return errors[0] if errors else group


def _json_or_none(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


class GraphClient:
    """Authenticated, throttling-aware access to Microsoft Graph for one connector."""

    def __init__(
        self,
        connector: str,
        settings: GraphSettings,
        *,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.connector = connector
        self.settings = settings
        timeout = httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds)
        self._own_http = http is None
        self.http = http or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._limit = anyio.Semaphore(settings.max_concurrency)
        self._msal_http = MsalHttpxClient(timeout)
        self._app: Any = None
        self._app_lock = anyio.Lock()
        self._token_lock = anyio.Lock()
        """One token acquisition at a time: a burst on a cold cache asks the IdP once."""
        base = urlsplit(settings.graph_base_url)
        self._origin = f"{base.scheme}://{base.netloc}"
        self.scope = f"{self._origin}{GRAPH_SCOPE_SUFFIX}"

    # ------------------------------------------------------------------ tokens

    def _error(
        self, transient: bool, message: str, account_id: str | None, retry_after: float | None
    ) -> ConnectorError:
        if transient:
            return TransientConnectorError(
                message, connector=self.connector, account_id=account_id, retry_after=retry_after
            )
        return PermanentConnectorError(message, connector=self.connector, account_id=account_id)

    async def _application(self) -> Any:
        """The process's one msal application, built on first use (tenant discovery is I/O)."""
        async with self._app_lock:
            if self._app is None:
                self._app = await anyio.to_thread.run_sync(self._build_application)
            return self._app

    def _build_application(self) -> Any:
        authority = f"{self.settings.authority_host.rstrip('/')}/{self.settings.tenant_id}"
        try:
            return msal.ConfidentialClientApplication(
                self.settings.client_id,
                authority=authority,
                client_credential=self.settings.client_secret.get_secret_value(),
                http_client=self._msal_http,
                token_cache=msal.TokenCache(),
                # Client-credential tokens have no refresh tokens to look up under authority
                # aliases, so msal's instance discovery (a call to the global endpoint on every
                # token error) buys nothing; the tenant is still validated by its OpenID
                # configuration, and national-cloud authority hosts work unchanged.
                instance_discovery=False,
            )
        except ValueError as exc:
            # msal raises ValueError when the tenant's OpenID configuration is not found (4xx).
            raise PermanentConnectorError(
                f"tenant {self.settings.tenant_id!r} not found at {self.settings.authority_host}; "
                "check tenant_id (and authority_host for national clouds)",
                connector=self.connector,
            ) from exc
        except (httpx.HTTPError, msal.exceptions.MsalServiceError) as exc:
            raise TransientConnectorError(
                f"tenant discovery at {self.settings.authority_host} failed: {type(exc).__name__}",
                connector=self.connector,
            ) from exc

    def _evict_access_tokens(self, app: Any) -> None:
        cache = app.token_cache
        for item in list(cache.search(cache.CredentialType.ACCESS_TOKEN, target=[self.scope])):
            cache.remove_at(item)

    async def token(self, *, refresh: bool = False, account_id: str | None = None) -> str:
        """An access token for Graph from msal's cache, or a fresh one when ``refresh``."""
        app = await self._application()

        def acquire() -> Mapping[str, Any]:
            if refresh:
                self._evict_access_tokens(app)
            result: Mapping[str, Any] = app.acquire_token_for_client(scopes=[self.scope])
            return result

        try:
            async with self._token_lock:
                result = await anyio.to_thread.run_sync(acquire)
        except httpx.HTTPError as exc:
            raise TransientConnectorError(
                f"token endpoint unreachable or failing: {type(exc).__name__}",
                connector=self.connector,
                account_id=account_id,
            ) from exc
        except msal.exceptions.MsalServiceError as exc:
            # msal's throttling wrapper raises this for a (cached) 5xx/429 of the token endpoint.
            raise TransientConnectorError(
                "token endpoint failed with a server error",
                connector=self.connector,
                account_id=account_id,
            ) from exc
        token = result.get("access_token")
        if isinstance(token, str) and token:
            return token
        code = str(result.get("error") or "unknown_error")
        aadsts = tuple(
            f"AADSTS{n}" for n in result.get("error_codes") or () if isinstance(n, int)
        ) or tuple(sorted(set(re.findall(r"AADSTS\d+", str(result.get("error_description"))))))
        correlation = result.get("correlation_id")
        detail = code + (f" ({', '.join(aadsts)})" if aadsts else "")
        detail += f", correlation id {correlation}" if correlation else ""
        message = f"msal could not get a Graph token: {detail}"
        # msal's error_description is not copied: only codes and the correlation id leave here.
        if code in _TRANSIENT_TOKEN_ERRORS:
            raise TransientConnectorError(
                message, connector=self.connector, account_id=account_id
            ) from None
        raise GraphTokenError(
            message + "; check tenant_id, client_id and client_secret (expired or wrong secret) "
            "and admin consent for the app",
            connector=self.connector,
            account_id=account_id,
            msal_error=code,
            aadsts=aadsts,
        ) from None

    # ------------------------------------------------------------------ single requests

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else self.settings.graph_base_url + path

    def _check_link(self, link: str, account_id: str | None) -> str:
        """Follow only links back to Graph: a bearer token must never go anywhere else."""
        parts = urlsplit(link)
        if f"{parts.scheme}://{parts.netloc}" != self._origin:
            raise PermanentConnectorError(
                f"Graph returned a next link to another host ({parts.netloc}); refusing to follow",
                connector=self.connector,
                account_id=account_id,
            )
        return link

    def failure(
        self,
        status: int,
        headers: Mapping[str, str],
        body: Any,
        *,
        op: str,
        permission: str,
        account_id: str | None,
    ) -> ConnectorError:
        """The exception for a failed Graph call (also used for ``$batch`` items)."""
        code, message = graph_error(body)
        what = f"{op}: Graph answered {status} {code}"
        retry_after = parse_retry_after(headers.get("retry-after") or headers.get("Retry-After"))
        if status in (429, 503):
            return GraphThrottledError(
                f"{what} (throttled)",
                connector=self.connector,
                account_id=account_id,
                retry_after=retry_after,
            )
        if status >= 500 or status == 408:
            return self._error(True, f"{what}: {message}", account_id, retry_after)
        if status == 403:
            return PermanentConnectorError(
                f"{what}: the app registration lacks the application permission {permission} "
                "(grant it in Entra admin center > App registrations > API permissions, then "
                "grant admin consent)",
                connector=self.connector,
                account_id=account_id,
            )
        if status == 404:
            return GraphNotFoundError(
                f"{what}: the object does not exist",
                connector=self.connector,
                account_id=account_id,
            )
        if status == 401:
            return PermanentConnectorError(
                f"{what}: Graph rejected a freshly issued token; check that the app registration "
                f"belongs to tenant {self.settings.tenant_id} and has consented permissions",
                connector=self.connector,
                account_id=account_id,
            )
        if status == 400:
            return GraphBadRequestError(
                f"{what}: {message}",
                connector=self.connector,
                account_id=account_id,
                graph_message=f"{code}: {message}",
            )
        return PermanentConnectorError(
            f"{what}: {message}", connector=self.connector, account_id=account_id
        )

    async def _send(
        self,
        method: str,
        url: str,
        *,
        op: str,
        permission: str,
        account_id: str | None,
        json_body: Any,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
    ) -> GraphResponse:
        refreshed = False
        while True:
            token = await self.token(refresh=refreshed, account_id=account_id)
            send_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            send_headers.update(headers or {})
            try:
                async with self._limit:
                    response = await self.http.request(
                        method, url, json=json_body, params=params, headers=send_headers
                    )
            except httpx.TimeoutException as exc:
                raise TransientConnectorError(
                    f"{op}: Graph timed out ({type(exc).__name__})",
                    connector=self.connector,
                    account_id=account_id,
                ) from exc
            except httpx.HTTPError as exc:
                raise TransientConnectorError(
                    f"{op}: Graph unreachable ({type(exc).__name__})",
                    connector=self.connector,
                    account_id=account_id,
                ) from exc
            if response.status_code == 401 and not refreshed:
                log.info(
                    "Graph answered 401, refreshing the token once",
                    extra={"connector": self.connector, "account_id": account_id, "op": op},
                )
                refreshed = True
                continue
            result = GraphResponse(
                status=response.status_code,
                headers=response.headers,
                content=response.content,
                request_id=response.headers.get("request-id"),
            )
            if response.is_success:
                return result
            raise self.failure(
                response.status_code,
                response.headers,
                _json_or_none(response.content),
                op=op,
                permission=permission,
                account_id=account_id,
            )

    async def request(
        self,
        method: str,
        path: str,
        *,
        op: str,
        permission: str,
        account_id: str | None = None,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> GraphResponse:
        """One Graph call (no retries here); raises ConnectorError subclasses only."""
        return await self._send(
            method,
            self.url(path),
            op=op,
            permission=permission,
            account_id=account_id,
            json_body=json_body,
            params=params,
            headers=headers,
        )

    async def get_json(self, path: str, **kwargs: Any) -> Any:
        return (await self.request("GET", path, **kwargs)).json()

    async def pages(
        self,
        path: str,
        *,
        op: str,
        permission: str,
        account_id: str | None = None,
        params: Mapping[str, str] | None = None,
        first: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a collection, following ``@odata.nextLink`` (which carries the query).

        ``first`` is an already fetched first page (e.g. from a ``$batch``).
        """
        page: Any = first
        if page is None:
            page = await self.get_json(
                path, op=op, permission=permission, account_id=account_id, params=params
            )
        while True:
            for item in (page or {}).get("value", []):
                yield item
            link = (page or {}).get("@odata.nextLink")
            if not link:
                return
            page = await self.get_json(
                self._check_link(str(link), account_id),
                op=op,
                permission=permission,
                account_id=account_id,
            )

    # ------------------------------------------------------------------ $batch

    async def batch(
        self, requests: Sequence[BatchRequest], *, account_id: str | None = None
    ) -> dict[str, GraphResponse]:
        """Run independent requests through ``$batch`` (20 per envelope, envelopes concurrent).

        Returns every item's response by id, failed ones included: the caller decides what a
        failure means (``failure()`` builds the exception). Throttled items (429, 503) are
        re-sent on their own, honouring their Retry-After (protocol-level: the other items of
        the batch already ran), up to ``batch_attempts`` sends; then, or when the wait asked
        for is longer than ``inline_retry_after_max``, GraphThrottledError is raised with
        ``retry_after`` for the executor.
        """
        results: dict[str, GraphResponse] = {}
        chunks = [requests[i : i + BATCH_LIMIT] for i in range(0, len(requests), BATCH_LIMIT)]

        async def run_chunk(chunk: Sequence[BatchRequest]) -> None:
            results.update(await self._batch_chunk(chunk, account_id))

        if len(chunks) == 1:
            await run_chunk(chunks[0])
            return results
        try:
            async with anyio.create_task_group() as group:
                for chunk in chunks:
                    group.start_soon(run_chunk, chunk)
        except BaseExceptionGroup as group_error:
            raise first_connector_error(group_error) from None
        return results

    async def _batch_chunk(
        self, chunk: Sequence[BatchRequest], account_id: str | None
    ) -> dict[str, GraphResponse]:
        pending = {item.id: item for item in chunk}
        done: dict[str, GraphResponse] = {}
        settings = self.settings
        attempt = 0
        while pending:
            attempt += 1
            envelope = await self.request(
                "POST",
                "/$batch",
                op="batch",
                permission="(see the batched calls)",
                account_id=account_id,
                json_body={"requests": [item.to_json() for item in pending.values()]},
            )
            throttled: dict[str, float | None] = {}
            for raw in (envelope.json() or {}).get("responses", []):
                item_id = str(raw.get("id"))
                if item_id not in pending:
                    continue
                status = int(raw.get("status", 0))
                headers = {str(k).lower(): str(v) for k, v in (raw.get("headers") or {}).items()}
                body = raw.get("body")
                content = b"" if body is None else json.dumps(body, sort_keys=True).encode()
                response = GraphResponse(status, headers, content, envelope.request_id)
                if status in (429, 503):
                    throttled[item_id] = parse_retry_after(headers.get("retry-after"))
                    done[item_id] = response
                else:
                    done[item_id] = response
                    del pending[item_id]
            missing = [i for i in pending if i not in throttled]
            if missing:
                raise TransientConnectorError(
                    f"$batch answer lacks items {', '.join(sorted(missing))}",
                    connector=self.connector,
                    account_id=account_id,
                )
            if not pending:
                break
            waits = [w for w in throttled.values() if w is not None]
            wait = max(waits) if waits else settings.batch_initial_seconds * 2 ** (attempt - 1)
            if attempt >= settings.batch_attempts or wait > settings.inline_retry_after_max:
                raise GraphThrottledError(
                    f"{len(pending)} batched Graph calls still throttled after {attempt} attempts "
                    f"({', '.join(sorted({pending[i].op for i in pending}))})",
                    connector=self.connector,
                    account_id=account_id,
                    retry_after=wait,
                )
            log.warning(
                "batched Graph calls throttled, re-sending them alone",
                extra={
                    "connector": self.connector,
                    "account_id": account_id,
                    "attempt": attempt,
                    "items": len(pending),
                    "wait_seconds": round(wait, 3),
                },
            )
            await anyio.sleep(wait)
        return done

    def raise_for_item(
        self, request: BatchRequest, response: GraphResponse, *, account_id: str | None
    ) -> None:
        if 200 <= response.status < 300:
            return
        raise self.failure(
            response.status,
            response.headers,
            response.json(),
            op=request.op,
            permission=request.permission,
            account_id=account_id,
        )

    async def aclose(self) -> None:
        if self._own_http:
            await self.http.aclose()
        self._msal_http.close()
