"""HTTP plumbing shared by the REST connectors (SCIM, RingCentral, FHIR; Retry-After for Graph).

What every REST connector needs and should not copy: one way to open its ``httpx.AsyncClient``,
turning an httpx transport failure into a ``TransientConnectorError``, mapping an HTTP status to
transient (with ``Retry-After``) or permanent with a message that says what to fix, reading a
JSON object body, and the authorization: a static bearer token or an OAuth access token (client
credentials or JWT bearer) cached until shortly before it expires and refreshed once on a 401.
Vendor-specific error bodies are decoded by the caller and passed in as ``detail``; this module
never puts a secret or a response body in a message. Nothing here retries a request: the
service's executor does that, once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeVar
from urllib.parse import quote, urlsplit

import anyio
import httpx
from pydantic import BaseModel, Field, SecretStr, model_validator

from connectors._config import ConnectorOptions
from connectors.base import (
    Account,
    ActionResult,
    ConnectorConfigError,
    ConnectorContext,
    ConnectorError,
    Outcome,
    PermanentConnectorError,
    TransientConnectorError,
    action_result,
    parse_retry_after,
    utcnow,
)

#: How much of a vendor's error detail goes into an exception message.
DETAIL_LIMIT = 200

#: Headers vendors put their request id in, most specific first.
REQUEST_ID_HEADERS = (
    "x-request-id",
    "request-id",
    "rcrequestid",
    "x-correlation-id",
    "x-ms-request-id",
)

R = TypeVar("R")

#: Refresh a cached token this many seconds before the server says it expires.
TOKEN_SKEW_SECONDS = 60.0


def short(text: str | None) -> str:
    """A vendor detail, trimmed so that an error message stays one readable line."""
    if not text:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_LIMIT else text[: DETAIL_LIMIT - 1] + "…"


def http_client(timeout_seconds: float, *, verify: bool = True) -> httpx.AsyncClient:
    """The client a REST connector owns: one per connector, shared by all its calls, never
    following redirects (a bearer token must not travel to wherever a 3xx points)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_seconds), verify=verify, follow_redirects=False
    )


def json_object(
    response: httpx.Response, *, connector: str, account_id: str | None, what: str, hint: str
) -> dict[str, Any]:
    """The response body as a JSON object; ``hint`` says what to check when it is not one."""
    try:
        body = response.json()
    except ValueError as exc:
        raise PermanentConnectorError(
            f"{what}: the service answered HTTP {response.status_code} without JSON; {hint}",
            connector=connector,
            account_id=account_id,
        ) from exc
    if not isinstance(body, dict):
        raise PermanentConnectorError(
            f"{what}: expected a JSON object", connector=connector, account_id=account_id
        )
    return body


def request_id(response: httpx.Response) -> str | None:
    """The vendor's id for this request, for the evidence record."""
    for header in REQUEST_ID_HEADERS:
        if value := response.headers.get(header):
            return str(value)
    return None


def digest(bodies: Sequence[bytes]) -> str:
    """SHA-256 of one response body, or of the per-body hashes when an action made several."""
    if len(bodies) == 1:
        return hashlib.sha256(bodies[0]).hexdigest()
    combined = hashlib.sha256()
    for body in bodies:
        combined.update(hashlib.sha256(body).digest())
    return combined.hexdigest()


def transport_error(
    exc: httpx.HTTPError, *, connector: str, account_id: str | None, what: str
) -> TransientConnectorError:
    """A timeout or connection failure: the system may answer next time."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    return TransientConnectorError(
        f"{what} {kind} ({type(exc).__name__}); the service is unreachable or slow, will retry",
        connector=connector,
        account_id=account_id,
    )


def status_error(
    response: httpx.Response,
    *,
    connector: str,
    account_id: str | None,
    what: str,
    detail: str = "",
    hints: Mapping[int, str] | None = None,
    classes: Mapping[int, type[PermanentConnectorError]] | None = None,
) -> ConnectorError:
    """Map an unsuccessful HTTP response to the error the engine should act on.

    429 and 5xx (except 501) are transient (429 carries ``retry_after`` from the header);
    everything else is permanent, with ``hints[status]`` (or a default) saying what to fix,
    raised as ``classes[status]`` when the caller wants to tell one status apart (e.g. 404).
    """
    status = response.status_code
    suffix = f": {short(detail)}" if detail else ""
    if status == 429:
        return TransientConnectorError(
            f"{what} was rate limited (HTTP 429){suffix}; retry after the server's Retry-After",
            connector=connector,
            account_id=account_id,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status >= 500 and status != 501:
        return TransientConnectorError(
            f"{what} failed with HTTP {status}{suffix}; the service reported an internal "
            "error, will retry",
            connector=connector,
            account_id=account_id,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    defaults = {
        400: "the request was rejected as invalid; check the connector options",
        401: f"authentication failed; check the credentials of [connectors.{connector}]",
        403: "the credentials lack permission for this call; grant the integration write access",
        404: "the object does not exist (deleted or renamed in the system?)",
        409: "the change conflicts with an existing object",
        412: "a precondition failed",
        501: "the service does not implement this operation",
    }
    hint = (hints or {}).get(status) or defaults.get(status, "the service refused the call")
    cls = (classes or {}).get(status, PermanentConnectorError)
    return cls(
        f"{what} failed with HTTP {status}{suffix}; {hint}",
        connector=connector,
        account_id=account_id,
    )


@dataclass
class _Token:
    value: str
    expires_at: float


class OAuthTokenSource:
    """Fetch and cache an OAuth 2.0 access token from a token endpoint (RFC 6749 §4.4, RFC 7523).

    The grant form (client credentials, or JWT bearer with an ``assertion``) is given by the
    caller; client authentication is HTTP Basic (``client_secret_basic``). One fetch at a time:
    concurrent callers wait on a lock instead of stampeding the token endpoint.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        connector: str,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        form: Mapping[str, SecretStr | str],
    ) -> None:
        self._client = client
        self._connector = connector
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._form = form
        self._token: _Token | None = None
        self._lock = anyio.Lock()

    def invalidate(self) -> None:
        """Forget the cached token (after the API answered 401 to it)."""
        self._token = None

    async def token(self) -> str:
        async with self._lock:
            now = time.monotonic()
            if self._token is not None and now < self._token.expires_at:
                return self._token.value
            self._token = await self._fetch(now)
            return self._token.value

    async def _fetch(self, now: float) -> _Token:
        what = "OAuth token request"
        data = {
            key: value.get_secret_value() if isinstance(value, SecretStr) else value
            for key, value in self._form.items()
        }
        try:
            response = await self._client.post(
                self._token_url,
                data=data,
                auth=(self._client_id, self._client_secret.get_secret_value()),
                headers={"Accept": "application/json"},
            )
        except httpx.HTTPError as exc:
            raise transport_error(
                exc, connector=self._connector, account_id=None, what=what
            ) from exc
        if response.status_code != 200:
            error = ""
            try:
                body = response.json()
                if isinstance(body, dict):
                    error = str(body.get("error") or body.get("errorCode") or "")
            except ValueError:
                pass
            raise status_error(
                response,
                connector=self._connector,
                account_id=None,
                what=what,
                detail=error,
                hints={
                    400: f"the token endpoint refused the grant; check client_id, the secret "
                    f"and the grant of [connectors.{self._connector}]",
                    401: f"the token endpoint refused the client credentials; check client_id "
                    f"and the secret of [connectors.{self._connector}]",
                },
            )
        try:
            body = response.json()
            value = str(body["access_token"])
            lifetime = float(body.get("expires_in") or 3600)
        except (ValueError, KeyError, TypeError) as exc:
            raise PermanentConnectorError(
                f"{what} answered 200 without an access_token; check token_url of "
                f"[connectors.{self._connector}]",
                connector=self._connector,
            ) from exc
        return _Token(value, now + max(lifetime - TOKEN_SKEW_SECONDS, lifetime / 2))


# --------------------------------------------------------------------------- service auth


def secure_url(url: str) -> bool:
    """https anywhere; http only on loopback (tests, a local sidecar)."""
    parsed = urlsplit(url)
    if parsed.scheme == "https" and parsed.hostname:
        return True
    return parsed.scheme == "http" and parsed.hostname in ("127.0.0.1", "localhost", "::1")


class OAuthOptions(BaseModel):
    """OAuth 2.0 client credentials (RFC 6749 §4.4) instead of a static bearer token."""

    model_config = ConnectorOptions.model_config

    token_url: str
    client_id: str
    client_secret: str
    """``env:NAME`` or ``file:/path``."""
    scope: str | None = None

    @model_validator(mode="after")
    def _secure_token_url(self) -> Self:
        if not secure_url(self.token_url):
            raise ValueError(
                "'token_url' must be https:// (plain http:// only to 127.0.0.1 or localhost, "
                "since the client secret would travel in clear)"
            )
        return self


class RestOptions(ConnectorOptions):
    """Options of every REST connector."""

    timeout_seconds: float = Field(default=15.0, gt=0)


class BearerOrOAuthOptions(RestOptions):
    """Options of a REST service reached with a bearer token or with client credentials."""

    base_url: str
    token: str | None = None
    """Static bearer token reference, ``env:NAME`` or ``file:/path``."""
    oauth: OAuthOptions | None = None

    @model_validator(mode="after")
    def _one_auth(self) -> Self:
        if (self.token is None) == (self.oauth is None):
            raise ValueError("set exactly one of 'token' (bearer) or [oauth] (client credentials)")
        if not secure_url(self.base_url):
            raise ValueError(
                "'base_url' must be https:// (plain http:// only to 127.0.0.1 or localhost, "
                "since the bearer token would travel in clear)"
            )
        return self


@dataclass(frozen=True, slots=True)
class BearerAuth:
    """The Authorization of a REST connector: a static bearer token, or an OAuth token source
    whose cached token is refreshed once when the server answers 401."""

    token: SecretStr | None = None
    source: OAuthTokenSource | None = None

    @classmethod
    def of(
        cls, connector: str, token: SecretStr | None, source: OAuthTokenSource | None
    ) -> BearerAuth:
        """Exactly one of the two, or ConnectorConfigError."""
        if (token is None) == (source is None):
            raise ConnectorConfigError(
                f"[connectors.{connector}]: give exactly one of token or oauth",
                connector=connector,
            )
        return cls(token, source)

    async def header(self) -> str:
        if self.source is not None:
            return f"Bearer {await self.source.token()}"
        assert self.token is not None  # ``of`` guarantees one of the two
        return f"Bearer {self.token.get_secret_value()}"

    def refresh(self) -> bool:
        """Forget the cached token; True when a retry can use a fresh one."""
        if self.source is None:
            return False
        self.source.invalidate()
        return True


@dataclass(frozen=True, slots=True)
class ServiceCredentials:
    """The secrets of ``BearerOrOAuthOptions``, resolved before any client is opened, so a
    missing one fails the configuration and not the first termination."""

    token: SecretStr | None
    oauth_secret: SecretStr | None

    @classmethod
    def resolve(
        cls, name: str, opts: BearerOrOAuthOptions, context: ConnectorContext
    ) -> ServiceCredentials:
        if opts.token is not None:
            return cls(context.secret(name, "token", opts.token), None)
        assert opts.oauth is not None  # the options validator guarantees one of the two
        return cls(None, context.secret(name, "oauth.client_secret", opts.oauth.client_secret))

    def oauth_source(
        self, client: httpx.AsyncClient, name: str, opts: BearerOrOAuthOptions
    ) -> OAuthTokenSource | None:
        """Client credentials at ``[oauth] token_url``; ``None`` for a static token."""
        if opts.oauth is None or self.oauth_secret is None:
            return None
        form: dict[str, SecretStr | str] = {"grant_type": "client_credentials"}
        if opts.oauth.scope:
            form["scope"] = opts.oauth.scope
        return OAuthTokenSource(
            client,
            connector=name,
            token_url=opts.oauth.token_url,
            client_id=opts.oauth.client_id,
            client_secret=self.oauth_secret,
            form=form,
        )


def only_match(
    hits: Mapping[str, R], *, connector: str, worker_id: str, matching: str, fix: str
) -> tuple[str, R] | None:
    """The one (id, resource) a correlation search found, ``None`` for none; two or more are a
    PermanentConnectorError (``"{n} {matching} ({ids}); {fix}"``): never guess which is theirs."""
    if not hits:
        return None
    if len(hits) > 1:
        raise PermanentConnectorError(
            f"{len(hits)} {matching} ({', '.join(sorted(hits))}); {fix}",
            connector=connector,
            account_id=worker_id,
        )
    return next(iter(hits.items()))


def path_segment(value: str, *, connector: str) -> str:
    """A resource id as exactly one URL path segment. Ids are opaque, but ``.`` and ``..``
    would be folded away by the HTTP client and address the collection or its parent."""
    if value in ("", ".", ".."):
        raise PermanentConnectorError(
            f"{value!r} is not a resource id", connector=connector, account_id=value or None
        )
    return quote(value, safe="")


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    auth: BearerAuth,
    headers: Mapping[str, str],
    connector: str,
    account_id: str | None,
    what: str,
    **request: Any,
) -> httpx.Response:
    """One authenticated request. A cached OAuth token can be revoked early, so a 401 fetches
    a fresh one once. Transport failures become connector errors; any HTTP status is returned
    for the connector to classify."""
    for attempt in (1, 2):
        try:
            response = await client.request(
                method, url, headers={**headers, "Authorization": await auth.header()}, **request
            )
        except httpx.HTTPError as exc:
            raise transport_error(
                exc, connector=connector, account_id=account_id, what=what
            ) from exc
        if response.status_code == 401 and attempt == 1 and auth.refresh():
            continue
        return response
    raise AssertionError("unreachable")  # pragma: no cover


class RestClient:
    """A REST service as a connector reaches it: base URL, the connector's own
    ``httpx.AsyncClient``, the authorization and the media type of its bodies."""

    def __init__(
        self,
        connector: str,
        base_url: str,
        client: httpx.AsyncClient,
        auth: BearerAuth,
        *,
        media_type: str = "application/json",
        owns_client: bool = True,
    ) -> None:
        self.connector = connector
        self.base_url = base_url.rstrip("/")
        self.client = client
        self.auth = auth
        self.media_type = media_type
        self._owns_client = owns_client

    async def send(
        self,
        method: str,
        path: str,
        *,
        what: str,
        account_id: str | None,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        if_match: str | None = None,
    ) -> httpx.Response:
        """One request (``path`` relative to ``base_url``, or a full URL the caller checked),
        sent once; any HTTP status is returned for the connector to classify."""
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        headers = {"Accept": self.media_type}
        if json_body is not None:
            headers["Content-Type"] = self.media_type
        if if_match:
            headers["If-Match"] = if_match
        return await send(
            self.client,
            method,
            url,
            auth=self.auth,
            headers=headers,
            connector=self.connector,
            account_id=account_id,
            what=what,
            params=params,
            json=json_body,
        )

    async def aclose(self) -> None:
        if self._owns_client and not self.client.is_closed:
            await self.client.aclose()


async def switch_account(
    account: Account,
    *,
    enable: bool,
    connector: str,
    read: Callable[[str], Awaitable[R]],
    enabled: Callable[[R], bool],
    write: Callable[[R, str], Awaitable[httpx.Response]],
    field: str,
    hint: str,
) -> ActionResult:
    """``disable`` or ``enable`` over REST, the one way: read; ``ALREADY`` when the account
    already is as wanted; write ``field``; read back (a 2xx is never taken on trust); the result
    with the vendor's request id and the hash of its answer.

    ``read(what)`` fetches the account, ``enabled`` judges it, ``write(resource, what)`` sends
    the change. Raises PermanentConnectorError when the read-back contradicts the write
    (``hint`` says what to check), and whatever the calls raise.
    """
    action = "enable" if enable else "disable"
    started = utcnow()
    resource = await read(f"reading the account to {action} it")
    if enabled(resource) is enable:
        return action_result(action, account, started, Outcome.ALREADY)
    response = await write(resource, f"{'enabling' if enable else 'disabling'} the account")
    if enabled(await read(f"verifying the {action}")) is not enable:
        raise PermanentConnectorError(
            f"the service accepted {field} but the account still reads "
            f"{'inactive' if enable else 'active'}; {hint}",
            connector=connector,
            account_id=account.account_id,
        )
    return action_result(
        action,
        account,
        started,
        Outcome.DONE,
        vendor_request_id=request_id(response),
        response_sha256=digest([response.content]),
        detail={"method": response.request.method},
    )
