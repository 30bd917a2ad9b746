"""Console sign-in: an API token is exchanged for a session cookie.

The cookie holds a random session id; the store keeps only its SHA-256, the SHA-256 of the token
it was exchanged for, the session's CSRF token and when it was last seen. Every request looks
the token up again, so revoking (or the expiry of) the token ends the session at once; a
session idle for longer than ``[console] session_idle_minutes`` ends too. The cookie is
HttpOnly and SameSite=Strict, and Secure whenever the request came over TLS.

A form before sign-in (the sign-in form itself) carries a CSRF token that must equal the value
of a short-lived pre-session cookie (double submit), so another site cannot sign a browser in
with the attacker's token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio.to_thread
from fastapi import Request, Response

from lifecycle.auth import Principal, Role, token_hash
from lifecycle.domain import ConsoleSession
from lifecycle.services.tokens import live_token
from lifecycle.store.ports import ConsoleSessions, Tokens

COOKIE = "lifecycle_session"
PRE_COOKIE = "lifecycle_presession"
CSRF_FIELD = "csrf_token"
PATH = "/console"


class SignInRequired(Exception):
    """No live console session: the browser is sent to the sign-in page."""


class Refused(Exception):
    """The console refuses this request: the role (403), a missing or wrong CSRF token (403),
    or a form it cannot take (422)."""

    def __init__(self, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    principal: Principal
    csrf_token: str
    session_sha256: str

    @property
    def is_admin(self) -> bool:
        return self.principal.role is Role.ADMIN

    @property
    def is_auditor(self) -> bool:
        return self.principal.role is Role.AUDITOR


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class Sessions:
    """Sign-in, the session of a request, sign-out and the CSRF check of one console."""

    def __init__(
        self,
        store: ConsoleSessions,
        tokens: Tokens,
        *,
        idle: timedelta,
        trust_forwarded_proto: bool,
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._tokens = tokens
        self.idle = idle
        self._trust_forwarded_proto = trust_forwarded_proto
        self._clock = clock

    def _now(self) -> datetime:
        return self._clock()

    def is_tls(self, request: Request) -> bool:
        if request.url.scheme == "https":
            return True
        if self._trust_forwarded_proto:
            forwarded = request.headers.get("x-forwarded-proto", "")
            return forwarded.split(",")[0].strip().lower() == "https"
        return False

    def _set_cookie(self, request: Request, response: Response, name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            path=PATH,
            httponly=True,
            samesite="strict",
            secure=self.is_tls(request),
        )

    # ------------------------------------------------------------------ before sign-in

    @staticmethod
    def pre_session_token(request: Request) -> str:
        """The CSRF token of the sign-in form (kept in a cookie of its own until sign-in)."""
        return request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(32)

    def set_pre_session(self, request: Request, response: Response, token: str) -> None:
        self._set_cookie(request, response, PRE_COOKIE, token)

    def check_pre_session(self, request: Request, submitted: str | None) -> None:
        expected = request.cookies.get(PRE_COOKIE)
        if not expected or not submitted or not hmac.compare_digest(expected, submitted):
            raise Refused("the form's CSRF token is missing or does not match; reload the page")

    async def sign_in(self, request: Request, response: Response, token: str) -> Principal | None:
        """Exchange ``token`` for a session cookie; None when the token is unknown, revoked or
        expired."""
        token_sha256 = token_hash(token.strip())
        now = self._now()
        found = await anyio.to_thread.run_sync(live_token, self._tokens, token_sha256, now)
        if found is None:
            return None
        session_id = secrets.token_urlsafe(32)
        session = ConsoleSession(
            id_sha256=_sha(session_id),
            token_sha256=token_sha256,
            csrf_token=secrets.token_urlsafe(32),
            created_at=now,
            last_seen_at=now,
        )
        await anyio.to_thread.run_sync(self._store.add_console_session, session, self.idle)
        self._set_cookie(request, response, COOKIE, session_id)
        response.delete_cookie(PRE_COOKIE, path=PATH, httponly=True, samesite="strict")
        return Principal(found.name, Role(found.role))

    # ------------------------------------------------------------------ signed in

    async def user(self, request: Request) -> ConsoleUser:
        """The signed-in user of ``request``; raises SignInRequired."""
        session_id = request.cookies.get(COOKIE)
        if not session_id:
            raise SignInRequired()
        id_sha256 = _sha(session_id)
        now = self._now()
        session = await anyio.to_thread.run_sync(
            self._store.touch_console_session, id_sha256, now, self.idle
        )
        if session is None:
            raise SignInRequired()
        token = await anyio.to_thread.run_sync(live_token, self._tokens, session.token_sha256, now)
        if token is None:
            # The token was revoked or has expired: the session dies with it.
            await anyio.to_thread.run_sync(self._store.end_console_session, id_sha256)
            raise SignInRequired()
        return ConsoleUser(Principal(token.name, Role(token.role)), session.csrf_token, id_sha256)

    async def sign_out(self, user: ConsoleUser, response: Response) -> None:
        await anyio.to_thread.run_sync(self._store.end_console_session, user.session_sha256)
        response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="strict")

    @staticmethod
    def check_csrf(user: ConsoleUser, submitted: str | None) -> None:
        if not submitted or not hmac.compare_digest(user.csrf_token, submitted):
            raise Refused("the form's CSRF token is missing or does not match; reload the page")

    @staticmethod
    def require_admin(user: ConsoleUser) -> None:
        if not user.is_admin:
            raise Refused(f"role {user.principal.role.value!r} may not do this; needs admin")
